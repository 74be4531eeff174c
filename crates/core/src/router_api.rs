//! Talking to the router: the HTTP API (resources, messages) and the client WebSocket on
//! which the router acknowledges a subscription and streams the gateway's messages.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sallyport_protocol::report::{
    self, GroupBy, LaunchList, LaunchQuery, LaunchReport, LaunchStats, WhoAmI,
};
use sallyport_protocol::{
    ClientMessage, ClientReply, ClientWsEvent, ClientWsRequest, Code, ErrorBody, ResourceInfo,
    ResourceList, SealedPayload, StreamKind,
};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::error::{CoreError, Result};

/// Why sending a message to a gateway failed, typed so that the retry decision never looks
/// at message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendFailure {
    /// The router answered with an error status and body.
    Http {
        status: u16,
        code: Code,
        message: String,
    },
    /// No HTTP answer within our own deadline.
    Timeout,
    /// The connection to the router failed (refused, reset, DNS).
    Connection(String),
    /// The router's certificate is not acceptable (untrusted, expired, another host name):
    /// a retry cannot mend it.
    Tls(String),
    /// The router answered 200 without the payload a non-streamed start must carry.
    EmptyReply,
}

impl SendFailure {
    pub fn code(&self) -> Code {
        match self {
            SendFailure::Http { code, .. } => *code,
            SendFailure::Timeout => Code::Timeout,
            SendFailure::Connection(_) => Code::ConnectionError,
            SendFailure::Tls(_) => Code::RouterTls,
            SendFailure::EmptyReply => Code::EmptyReply,
        }
    }

    pub fn message(&self) -> String {
        match self {
            SendFailure::Http {
                status, message, ..
            } => format!("HTTP {status}: {message}"),
            SendFailure::Timeout => "no reply from the router in time".into(),
            SendFailure::Connection(m) | SendFailure::Tls(m) => m.clone(),
            SendFailure::EmptyReply => "the router's reply carried no answer".into(),
        }
    }

    /// Transient failures are worth one more attempt after the catch-up delay: the registry
    /// decides per code; a code we cannot read counts as transient on HTTP 502, 503 and 504.
    pub fn is_transient(&self) -> bool {
        match self {
            SendFailure::Http {
                status,
                code: Code::Unrecognized | Code::HttpError,
                ..
            } => matches!(*status, 502..=504),
            other => other.code().is_transient(),
        }
    }
}

/// The routers of a fleet, in the profile's order, and the one in use: after a failure to
/// reach it, the next one (shared by every clone, so the listener follows the HTTP side).
struct Routers {
    urls: Vec<String>,
    current: std::sync::atomic::AtomicUsize,
}

impl Routers {
    fn base(&self) -> String {
        let at = self.current.load(std::sync::atomic::Ordering::Relaxed);
        self.urls[at % self.urls.len()].clone()
    }

    /// `base` could not be reached: use the next router, unless another task moved on already.
    fn fail_over(&self, base: &str) {
        use std::sync::atomic::Ordering;
        let at = self.current.load(Ordering::Relaxed);
        if self.urls.len() > 1 && self.urls[at % self.urls.len()] == base {
            let _ = self.current.compare_exchange(
                at,
                (at + 1) % self.urls.len(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            tracing::warn!(from = base, to = %self.base(), "router unreachable; failing over");
        }
    }
}

/// The bearer token requests carry; replaced in place when a single sign-on token is
/// refreshed (clones of the API share it).
pub type SharedToken = Arc<std::sync::RwLock<String>>;

/// The router's HTTP API for one token.
#[derive(Clone)]
pub struct RouterApi {
    routers: Arc<Routers>,
    token: SharedToken,
    http: reqwest::Client,
    /// How the router's certificate is checked, for the WebSocket as for HTTP (`None` for a
    /// plain `http://` router).
    tls: Option<Arc<sallyport_ops::rustls::ClientConfig>>,
}

impl RouterApi {
    /// A client that trusts the system's root certificates.
    pub fn new(base_url: &str, token: &str) -> Result<Self> {
        Self::with_ca_file(base_url, token, None)
    }

    /// A client for `profile`'s router, trusting its `ca_file` if it names one.
    pub fn for_profile(profile: &crate::ClientProfile, token: &str) -> Result<Self> {
        let mut api = Self::with_ca_file(&profile.router_url, token, profile.ca_file.as_deref())?;
        let urls = std::iter::once(&profile.router_url)
            .chain(&profile.router_urls)
            .map(|url| url.trim_end_matches('/').to_owned())
            .collect();
        api.routers = Arc::new(Routers {
            urls,
            current: Default::default(),
        });
        Ok(api)
    }

    /// A client that trusts the CAs in `ca_file` (the profile's key of that name), or the
    /// system's roots without one.
    pub fn with_ca_file(base_url: &str, token: &str, ca_file: Option<&Path>) -> Result<Self> {
        let base = base_url.trim_end_matches('/').to_owned();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true);
        let tls = if base.starts_with("https:") {
            let config = sallyport_ops::tls::client_config("ca_file", ca_file)
                .map_err(|e| CoreError::Profile(e.to_string()))?;
            builder = builder.tls_backend_preconfigured(config.clone());
            Some(Arc::new(config))
        } else {
            None
        };
        let http = builder
            .build()
            .map_err(|e| CoreError::Profile(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            routers: Arc::new(Routers {
                urls: vec![base],
                current: Default::default(),
            }),
            token: Arc::new(std::sync::RwLock::new(token.to_owned())),
            http,
            tls,
        })
    }

    /// The token, shared: writing a new one makes every later request carry it.
    pub fn shared_token(&self) -> SharedToken {
        self.token.clone()
    }

    fn token(&self) -> String {
        self.token.read().unwrap().clone()
    }

    /// The base URL of the router in use.
    pub fn url(&self) -> String {
        self.routers.base()
    }

    pub async fn resources(&self) -> Result<Vec<ResourceInfo>> {
        let list: ResourceList = self.get("/v1/resources", &[]).await?;
        Ok(list.resources)
    }

    /// GET `path` with `query` and read its JSON reply; a refusal is the router's code.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&'static str, String)],
    ) -> Result<T> {
        // A GET changes nothing: a router that cannot be reached is followed by the next one
        // of the profile at once, each tried once.
        let mut tries = self.routers.urls.len();
        let response = loop {
            let base = self.routers.base();
            let unreachable = |message: String| CoreError::RouterUnreachable {
                url: base.clone(),
                message,
            };
            let url = url::Url::parse_with_params(&format!("{base}{path}"), query)
                .map_err(|e| unreachable(e.to_string()))?;
            let sent = self
                .http
                .get(url)
                .bearer_auth(self.token())
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match sent {
                Ok(response) => break response,
                Err(e) => {
                    self.routers.fail_over(&base);
                    tries -= 1;
                    if tries == 0 {
                        return Err(unreachable(sallyport_ops::tls::explain(&e)));
                    }
                }
            }
        };
        let status = response.status().as_u16();
        if status != 200 {
            let body = response.json::<ErrorBody>().await.ok();
            return Err(CoreError::Router {
                status,
                code: body.as_ref().map_or(Code::HttpError, |b| b.code),
                message: body.map_or(format!("HTTP {status}"), |b| b.message),
            });
        }
        response.json().await.map_err(|e| CoreError::Router {
            status,
            code: Code::Malformed,
            message: format!("unreadable reply to {path}: {e}"),
        })
    }

    /// Who this token is at the router: its client name, roles, and whether the router keeps
    /// launch reports.
    pub async fn whoami(&self) -> Result<WhoAmI> {
        self.get(report::WHOAMI_PATH, &[]).await
    }

    /// Every user's launches matching `query`, newest first (support role).
    pub async fn launches(&self, query: &LaunchQuery, limit: Option<u32>) -> Result<LaunchList> {
        let mut parameters = query.parameters();
        if let Some(limit) = limit {
            parameters.push(("limit", limit.to_string()));
        }
        self.get(report::LAUNCHES_PATH, &parameters).await
    }

    /// Per-phase percentiles of the launches matching `query` (support role).
    pub async fn launch_stats(
        &self,
        query: &LaunchQuery,
        group_by: GroupBy,
    ) -> Result<LaunchStats> {
        let mut parameters = query.parameters();
        parameters.push(("group_by", group_by.as_str().to_owned()));
        self.get(report::LAUNCH_STATS_PATH, &parameters).await
    }

    /// Send a launch report, waiting at most `within`; the router's refusal comes back as its
    /// code (a router that keeps no reports says `reports_disabled`).
    pub async fn report_launch(
        &self,
        report: &LaunchReport,
        within: Duration,
    ) -> Result<(), SendFailure> {
        let base = self.routers.base();
        let response = self
            .http
            .post(format!("{base}{}", report::LAUNCHES_PATH))
            .bearer_auth(self.token())
            .json(report)
            .timeout(within)
            .send()
            .await
            .map_err(|e| self.failure(&base, &e))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body = response.json::<ErrorBody>().await.ok();
        Err(SendFailure::Http {
            status,
            code: body.as_ref().map_or(Code::HttpError, |b| b.code),
            message: body.map_or(format!("HTTP {status}"), |b| b.message),
        })
    }

    /// POST a message to a gateway through the router and return its reply.
    pub async fn send(
        &self,
        gateway: &str,
        message: &ClientMessage,
        deadline: Duration,
    ) -> Result<ClientReply, SendFailure> {
        let base = self.routers.base();
        let response = self
            .http
            .post(format!("{base}/v1/gateways/{gateway}/messages"))
            .bearer_auth(self.token())
            .json(message)
            .timeout(deadline)
            .send()
            .await
            .map_err(|e| self.failure(&base, &e))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.failure(&base, &e))?;
        if status != 200 {
            let body: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
            return Err(SendFailure::Http {
                status,
                code: body.as_ref().map_or(Code::HttpError, |b| b.code),
                message: body.map_or_else(
                    || String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                    |b| b.message,
                ),
            });
        }
        serde_json::from_slice(&bytes).map_err(|_| SendFailure::EmptyReply)
    }

    /// A failed exchange, typed: a timeout, a certificate the client refuses, or another
    /// connection failure; the message names the router.
    /// A connection failure moves on to the next router of the profile, if it has several.
    fn failure(&self, base: &str, e: &reqwest::Error) -> SendFailure {
        if e.is_timeout() {
            // A router that does not even accept the connection (a host gone, packets dropped)
            // is left for the next one too; one that is slow to answer is not.
            if e.is_connect() {
                self.routers.fail_over(base);
            }
            SendFailure::Timeout
        } else if let Some(tls) = sallyport_ops::tls::tls_failure(e) {
            SendFailure::Tls(format!("router {base}: {tls}"))
        } else {
            self.routers.fail_over(base);
            SendFailure::Connection(format!("router {base}: {}", sallyport_ops::tls::explain(e)))
        }
    }

    /// Tell the gateway (best effort, within 3 s) that the client is done with a conversation.
    pub async fn close_conversation(
        &self,
        gateway: &str,
        resource: &str,
        conversation_id: &str,
        keys: &sallyport_protocol::ConversationKeys,
    ) {
        let close = ClientMessage {
            v: sallyport_protocol::PROTOCOL_VERSION,
            conversation_id: conversation_id.to_owned(),
            resource: resource.to_owned(),
            kind: sallyport_protocol::MessageKind::Close,
            stream_response: false,
            timeout_ms: Some(2_000),
            payload: keys.seal_to_gateway(&sallyport_protocol::CloseBody {
                reason: sallyport_protocol::CloseReason::ClientClosed,
            }),
        };
        if let Err(e) = self.send(gateway, &close, Duration::from_secs(3)).await {
            tracing::debug!(code = %e.code(), "gateway not told of the close");
        }
    }

    /// Open the client WebSocket and subscribe to `conversation_id`, in the background.
    /// Events arrive on the returned receiver; dropping it closes the socket.
    pub fn listen(&self, conversation_id: &str) -> mpsc::UnboundedReceiver<SignalEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        let base = self.routers.base();
        let routers = self.routers.clone();
        let token = self.token();
        let conversation_id = conversation_id.to_owned();
        let tls = self.tls.clone();
        tokio::spawn(async move {
            let outcome = tokio::select! {
                r = run_listener(&base, &token, &conversation_id, tls, &tx) => r,
                _ = tx.closed() => Ok(()),
            };
            if let Err(message) = outcome {
                // Subscribing again (the client does) goes to the next router.
                routers.fail_over(&base);
                let _ = tx.send(SignalEvent::Lost(format!("router {base}: {message}")));
            }
        });
        rx
    }
}

/// What the client WebSocket reports.
#[derive(Debug, Clone)]
pub enum SignalEvent {
    /// The router has registered our subscription.
    Registered,
    /// A sealed gateway message for our conversation.
    Message {
        kind: StreamKind,
        payload: SealedPayload,
    },
    /// The router reported an error on the socket.
    Error { code: Code, message: String },
    /// The router lost its link to our conversation's gateway: check the tube.
    GatewayLost,
    /// The socket is gone.
    Lost(String),
}

async fn run_listener(
    base: &str,
    token: &str,
    conversation_id: &str,
    tls: Option<Arc<sallyport_ops::rustls::ClientConfig>>,
    tx: &mpsc::UnboundedSender<SignalEvent>,
) -> std::result::Result<(), String> {
    let socket = sallyport_kit::connect(base, sallyport_protocol::CLIENT_WS_PATH, token, tls)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sink, mut stream) = socket.split();
    let subscribe = ClientWsRequest::Subscribe {
        conversation_id: conversation_id.to_owned(),
    };
    sink.send(Message::Text(
        serde_json::to_string(&subscribe)
            .expect("protocol types serialize")
            .into(),
    ))
    .await
    .map_err(|e| e.to_string())?;
    while let Some(frame) = stream.next().await {
        let text = match frame.map_err(|e| e.to_string())? {
            Message::Text(text) => text,
            Message::Close(_) => break,
            _ => continue,
        };
        let event = match serde_json::from_str::<ClientWsEvent>(&text) {
            Ok(ClientWsEvent::Subscribed { .. }) => SignalEvent::Registered,
            Ok(ClientWsEvent::Message { kind, payload, .. }) => {
                SignalEvent::Message { kind, payload }
            }
            Ok(ClientWsEvent::Error { code, message, .. }) => SignalEvent::Error { code, message },
            Ok(ClientWsEvent::GatewayLost { .. }) => SignalEvent::GatewayLost,
            Err(e) => SignalEvent::Error {
                code: Code::Malformed,
                message: format!("unreadable frame from the router: {e}"),
            },
        };
        if tx.send(event).is_err() {
            break;
        }
    }
    Err("the router closed the websocket".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, code: Code) -> SendFailure {
        SendFailure::Http {
            status,
            code,
            message: "m".into(),
        }
    }

    #[test]
    fn transient_failures_are_classified_by_code_and_status() {
        assert!(http(503, Code::ControllerDown).is_transient());
        assert!(http(504, Code::RrcTimeout).is_transient());
        assert!(http(502, Code::BadState).is_transient());
        assert!(http(502, Code::Unrecognized).is_transient());
        assert!(!http(400, Code::Unrecognized).is_transient());
        assert!(
            http(400, Code::BadState).is_transient(),
            "typed code wins over status"
        );
        assert!(SendFailure::Timeout.is_transient());
        assert!(SendFailure::Connection("refused".into()).is_transient());

        assert!(!http(401, Code::Unauthorized).is_transient());
        assert!(!http(403, Code::Forbidden).is_transient());
        assert!(!http(404, Code::UnknownResource).is_transient());
        assert!(!http(400, Code::SealRejected).is_transient());
        assert!(!http(429, Code::SessionLimit).is_transient());
        assert!(!SendFailure::EmptyReply.is_transient());
        // A message that merely mentions a transient word is not transient.
        let tricky = SendFailure::Http {
            status: 400,
            code: Code::Malformed,
            message: "rrc_timeout controller_down 503".into(),
        };
        assert!(!tricky.is_transient());
    }
}
