//! sallyport-gateway: connects out to the router, answers offers with a WebRTC answerer and
//! bridges each data channel to the one target its configuration names for the resource.

pub mod config;
mod conversation;
mod record;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sallyport_kit::{ConnectError, Shutdown, Stopper};
use sallyport_protocol::{
    AnnouncedResource, CloseReason, Code, GatewayKeyPair, GatewayOutcome, GatewayToRouter,
    MessageKind, RouterToGateway, SealedPayload, PROTOCOL_VERSION,
};
use tokio::sync::{mpsc, watch, Mutex};
use tokio_tungstenite::tungstenite::Message;
use tracing::Instrument;

pub use config::{GatewayConfig, ResourceConfig};
use conversation::Conversation;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("gateway key: {0}")]
    Key(String),
    #[error("router connection: {0}")]
    Router(String),
    #[error("router refused the gateway: {code}: {message}")]
    Refused { code: Code, message: String },
}

impl GatewayError {
    pub fn code(&self) -> Code {
        match self {
            GatewayError::Config(_) => Code::ConfigInvalid,
            GatewayError::Key(_) => Code::InvalidKey,
            GatewayError::Router(_) => Code::RouterUnreachable,
            GatewayError::Refused { .. } => Code::RouterRefused,
        }
    }
}

/// Read the gateway's secret key from `path`.
pub fn load_key(path: &std::path::Path) -> Result<GatewayKeyPair, GatewayError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| GatewayError::Key(format!("cannot read {}: {e}", path.display())))?;
    GatewayKeyPair::from_base64(&text)
        .map_err(|e| GatewayError::Key(format!("{}: {e}", path.display())))
}

/// Write a fresh secret key to `path` (mode 0600) and return the pair.
pub fn generate_key(path: &std::path::Path) -> Result<GatewayKeyPair, GatewayError> {
    let pair = GatewayKeyPair::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    options
        .open(path)
        .and_then(|mut f| writeln!(f, "{}", pair.secret_to_base64()))
        .map_err(|e| GatewayError::Key(format!("cannot write {}: {e}", path.display())))?;
    Ok(pair)
}

/// State shared by the router link and every conversation.
pub(crate) struct Gateway {
    pub config: GatewayConfig,
    pub key: GatewayKeyPair,
    /// How the router's certificate is checked (`None` for a plain `http://` router).
    pub tls: Option<Arc<sallyport_ops::rustls::ClientConfig>>,
    /// `connection_log`, if configured.
    pub connection_log: Option<sallyport_ops::jsonl::JsonLines>,
    /// Reports for the router's audit trail; locked before `outbound`.
    pub reports: std::sync::Mutex<record::Reports>,
    /// Each conversation's slot, claimed under the lock and filled outside it.
    pub conversations: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Arc<Conversation>>>>>,
    /// Outbound frames to the router, replaced on every reconnect.
    pub outbound: std::sync::Mutex<Option<mpsc::Sender<GatewayToRouter>>>,
    /// The next connection's epoch: the start time in milliseconds, then one more for each
    /// connection, so that a restarted gateway's come after its earlier ones too.
    pub epochs: std::sync::atomic::AtomicU64,
    /// The connected router forwards `opened` streams (its `welcome` said so).
    pub router_forwards_opened: std::sync::atomic::AtomicBool,
}

impl Gateway {
    pub fn send(&self, message: GatewayToRouter) {
        let sender = self.outbound.lock().unwrap().clone();
        if let Some(sender) = sender {
            if sender.try_send(message).is_err() {
                tracing::warn!("router link is congested or down; dropped a message");
            }
        }
    }

    pub async fn forget(&self, conversation_id: &str) {
        self.conversations.lock().await.remove(conversation_id);
    }

    /// The conversation, once it exists (not while its peer is still being built).
    pub async fn conversation(&self, conversation_id: &str) -> Option<Arc<Conversation>> {
        self.conversations
            .lock()
            .await
            .get(conversation_id)
            .and_then(|slot| slot.get().cloned())
    }
}

/// A running gateway.
pub struct GatewayHandle {
    stopper: Stopper,
    task: tokio::task::JoinHandle<()>,
    online: watch::Receiver<bool>,
    last_error: watch::Receiver<Option<String>>,
    pub public_key: sallyport_protocol::GatewayPublicKey,
}

impl GatewayHandle {
    /// Why the last attempt to connect to the router failed, if it did (cleared once
    /// connected).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.borrow().clone()
    }

    /// Whether a router has welcomed this gateway, now and as it changes.
    pub fn online(&self) -> watch::Receiver<bool> {
        self.online.clone()
    }

    /// Wait until the router has welcomed this gateway.
    pub async fn wait_online(&self, timeout: Duration) -> bool {
        let mut online = self.online.clone();
        tokio::time::timeout(timeout, online.wait_for(|o| *o))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Close every tube (telling clients why) and disconnect; returns once all has stopped.
    pub async fn shutdown(self) {
        self.stopper.stop().await;
        let _ = self.task.await;
    }
}

/// Start the gateway in the background: it connects to the router and keeps reconnecting.
/// Fails at once on what a retry cannot mend: a CA file that does not load, no system roots
/// for an `https` router, a connection log that cannot be opened.
pub fn spawn(config: GatewayConfig, key: GatewayKeyPair) -> Result<GatewayHandle, GatewayError> {
    config.validate().map_err(GatewayError::Config)?;
    let tls = if config.routers().iter().any(|url| url.starts_with("https:")) {
        let tls = sallyport_ops::tls::client_config("ca_file", config.ca_file.as_deref())
            .map_err(|e| GatewayError::Config(e.to_string()))?;
        Some(Arc::new(tls))
    } else {
        None
    };
    let connection_log = config
        .connection_log
        .as_deref()
        .map(|path| {
            sallyport_ops::jsonl::JsonLines::open(path).map_err(|e| {
                GatewayError::Config(format!(
                    "connection_log {}: cannot open: {e}",
                    path.display()
                ))
            })
        })
        .transpose()?;
    let stopper = Stopper::new();
    let (online_tx, online_rx) = watch::channel(false);
    let (error_tx, error_rx) = watch::channel(None);
    let public_key = key.public();
    let gateway = Arc::new(Gateway {
        config,
        key,
        tls,
        connection_log,
        reports: Default::default(),
        conversations: Mutex::new(HashMap::new()),
        outbound: std::sync::Mutex::new(None),
        router_forwards_opened: std::sync::atomic::AtomicBool::new(false),
        epochs: std::sync::atomic::AtomicU64::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        ),
    });
    let task = tokio::spawn(run(gateway, stopper.shutdown(), online_tx, error_tx));
    Ok(GatewayHandle {
        stopper,
        task,
        online: online_rx,
        last_error: error_rx,
        public_key,
    })
}

async fn run(
    gateway: Arc<Gateway>,
    mut shutdown: Shutdown,
    online: watch::Sender<bool>,
    last_error: watch::Sender<Option<String>>,
) {
    let mut backoff = Duration::from_millis(200);
    // The routers of the fleet, in turn: a router that fails or goes away is followed by the
    // next one, at once; the backoff grows only once all of them failed.
    let routers: Vec<String> = gateway
        .config
        .routers()
        .iter()
        .map(|r| r.to_string())
        .collect();
    let mut at = 0;
    loop {
        if shutdown.is_shutdown() {
            break;
        }
        // connect_once watches the shutdown itself, so it can say goodbye while connected.
        let result = connect_once(&gateway, &routers[at], &online, &mut shutdown).await;
        if shutdown.is_shutdown() {
            break;
        }
        online.send_replace(false);
        *gateway.outbound.lock().unwrap() = None;
        last_error.send_replace(result.as_ref().err().map(|e| e.to_string()));
        let failed = result.is_err();
        match result {
            Ok(()) => {
                tracing::warn!("router connection closed; reconnecting");
                backoff = Duration::from_millis(200);
            }
            Err(e @ GatewayError::Refused { .. }) => {
                tracing::error!(error = %e, retry_in = ?backoff, "the router refused this gateway; check its id, token and key against the router's configuration")
            }
            Err(e) => tracing::warn!(error = %e, retry_in = ?backoff, "router connection failed"),
        }
        at = (at + 1) % routers.len();
        let wait = if routers.len() > 1 && at != 0 {
            Duration::from_millis(50)
        } else {
            backoff
        };
        tokio::select! {
            _ = tokio::time::sleep(jitter(wait)) => {}
            _ = shutdown.recv() => break,
        }
        if failed && at == 0 {
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
    // Whatever is left (shut down while disconnected) still gets its peers closed.
    close_all(&gateway).await;
}

/// Tell every client why its tube ends, and tear the tubes down.
async fn close_all(gateway: &Gateway) {
    let slots: Vec<_> = gateway.conversations.lock().await.drain().collect();
    // All at once: each waits (briefly) for its client to acknowledge the reason.
    let closing = slots
        .iter()
        .filter_map(|(_, slot)| slot.get())
        .map(|conversation| conversation.close(CloseReason::GatewayShutdown));
    futures_util::future::join_all(closing).await;
}

fn jitter(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

/// One connection to the router, from hello to close.
async fn connect_once(
    gateway: &Arc<Gateway>,
    router_url: &str,
    online: &watch::Sender<bool>,
    shutdown: &mut Shutdown,
) -> Result<(), GatewayError> {
    let connected = sallyport_kit::connect(
        router_url,
        sallyport_protocol::GATEWAY_WS_PATH,
        &gateway.config.token,
        gateway.tls.clone(),
    )
    .await;
    let socket = match connected {
        Ok(socket) => socket,
        Err(ConnectError::Token) => {
            return Err(GatewayError::Config(
                "token contains invalid characters".into(),
            ))
        }
        Err(e) => return Err(GatewayError::Router(format!("{router_url}: {e}"))),
    };
    let (mut sink, mut stream) = socket.split();

    // The router speaks first: a challenge, answered in the hello by a proof that this gateway
    // holds the key the router has configured for it (docs/PROTOCOL.md 4.2).
    let (nonce, epk) = match next_frame(&mut stream).await? {
        RouterToGateway::Challenge { nonce, epk, .. } => (nonce, epk),
        RouterToGateway::Error { code, message } => {
            return Err(GatewayError::Refused { code, message })
        }
        _ => return Err(GatewayError::Router("expected a challenge".into())),
    };
    let proof = gateway
        .key
        .prove(&gateway.config.gateway_id, &nonce, &epk)
        .map_err(|e| GatewayError::Router(format!("unusable challenge: {e}")))?;
    let hello = GatewayToRouter::Hello {
        v: PROTOCOL_VERSION,
        gateway_id: gateway.config.gateway_id.clone(),
        resources: gateway
            .config
            .resources
            .iter()
            .map(|r| AnnouncedResource {
                name: r.name.clone(),
                protocol: r.protocol.clone(),
            })
            .collect(),
        proof: Some(proof),
        epoch: Some(
            gateway
                .epochs
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst),
        ),
    };
    sink.send(text(&hello))
        .await
        .map_err(|e| GatewayError::Router(e.to_string()))?;
    let accepts_reports = match next_frame(&mut stream).await? {
        RouterToGateway::Welcome {
            reports, opened, ..
        } => {
            gateway
                .router_forwards_opened
                .store(opened, std::sync::atomic::Ordering::Relaxed);
            reports
        }
        RouterToGateway::Error { code, message } => {
            return Err(GatewayError::Refused { code, message })
        }
        _ => return Err(GatewayError::Router("expected a welcome".into())),
    };
    tracing::info!(gateway = %gateway.config.gateway_id, "connected to router");

    let (tx, mut rx) = mpsc::channel::<GatewayToRouter>(1024);
    {
        // Reports kept while disconnected go first, in order, before any newer one.
        let mut reports = gateway.reports.lock().unwrap();
        reports.accepted = accepts_reports;
        for report in std::mem::take(&mut reports.unsent) {
            if accepts_reports {
                let _ = tx.try_send(GatewayToRouter::Report(report));
            }
        }
        *gateway.outbound.lock().unwrap() = Some(tx);
    }
    online.send_replace(true);

    // A router that died without a reset (its host down, its network cut) sends nothing ever
    // again: ping it, and leave for the next router after a silence of three pings.
    let mut ping = tokio::time::interval(ROUTER_PING);
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if heard.elapsed() > ROUTER_PING * 3 {
                    return Err(GatewayError::Router(format!(
                        "{router_url}: silent for {} s",
                        heard.elapsed().as_secs()
                    )));
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return Ok(());
                }
            }
            _ = shutdown.recv() => {
                // Close the tubes while the router can still relay each `closed`, then flush.
                close_all(gateway).await;
                *gateway.outbound.lock().unwrap() = None;
                while let Ok(message) = rx.try_recv() {
                    if sink.send(text(&message)).await.is_err() {
                        break;
                    }
                }
                let _ = sink.send(Message::Close(None)).await;
                return Ok(());
            }
            Some(message) = rx.recv() => {
                if sink.send(text(&message)).await.is_err() {
                    return Ok(());
                }
            }
            frame = stream.next() => match frame.inspect(|_| heard = tokio::time::Instant::now()) {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<RouterToGateway>(&t) {
                    Ok(RouterToGateway::Forward { request_id, conversation_id, resource, kind, stream_response, payload }) => {
                        let gateway = gateway.clone();
                        let span = tracing::info_span!("conversation", id = %conversation_id, %resource, kind = kind.as_str());
                        tokio::spawn(async move {
                            let outcome = handle(&gateway, &conversation_id, &resource, kind, stream_response, &payload).await;
                            gateway.send(GatewayToRouter::Reply { request_id, outcome });
                        }.instrument(span));
                    }
                    Ok(RouterToGateway::Error { code, message }) => {
                        tracing::warn!(%code, %message, "router reported an error");
                    }
                    Ok(RouterToGateway::Welcome { .. } | RouterToGateway::Challenge { .. }) => {}
                    Err(e) => tracing::warn!(error = %e, "unreadable frame from router; ignored"),
                },
                Some(Ok(_)) => {}
            },
        }
    }
}

/// How often the gateway pings its router (the router answers with a pong).
const ROUTER_PING: Duration = Duration::from_secs(15);

/// The router's next frame during the handshake, within the 10 s the router allows too.
async fn next_frame<S>(stream: &mut S) -> Result<RouterToGateway, GatewayError>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str(&t)
            .map_err(|e| GatewayError::Router(format!("unreadable frame from the router: {e}"))),
        Ok(Some(Ok(Message::Close(frame)))) => Err(GatewayError::Router(format!(
            "the router closed the connection{}",
            frame.map(|f| format!(": {}", f.reason)).unwrap_or_default()
        ))),
        Ok(Some(Ok(_))) => Err(GatewayError::Router(
            "unexpected frame from the router".into(),
        )),
        Ok(Some(Err(e))) => Err(GatewayError::Router(e.to_string())),
        Ok(None) => Err(GatewayError::Router(
            "the router closed the connection".into(),
        )),
        Err(_) => Err(GatewayError::Router(
            "no answer from the router within 10 s".into(),
        )),
    }
}

fn text(message: &GatewayToRouter) -> Message {
    Message::Text(
        serde_json::to_string(message)
            .expect("protocol types serialize")
            .into(),
    )
}

fn error(code: Code, message: impl Into<String>) -> GatewayOutcome {
    GatewayOutcome::Error {
        code,
        message: message.into(),
    }
}

/// Answer one forwarded client message.
async fn handle(
    gateway: &Arc<Gateway>,
    conversation_id: &str,
    resource: &str,
    kind: MessageKind,
    stream_response: bool,
    payload: &SealedPayload,
) -> GatewayOutcome {
    match kind {
        MessageKind::Start => {
            conversation::start(gateway, conversation_id, resource, stream_response, payload).await
        }
        MessageKind::Candidates => {
            let existing = gateway.conversation(conversation_id).await;
            match existing {
                Some(c) => c.add_candidates(payload).await,
                None => error(Code::BadState, "no such conversation at this gateway"),
            }
        }
        MessageKind::Close => {
            let existing = gateway.conversation(conversation_id).await;
            match existing {
                Some(c) => {
                    if let Err(e) = c.open_close(payload) {
                        return error(e.code(), e.to_string());
                    }
                    gateway.forget(conversation_id).await;
                    c.close(CloseReason::ClientClosed).await;
                    GatewayOutcome::Ok { payload: None }
                }
                // Closing twice is fine.
                None => GatewayOutcome::Ok { payload: None },
            }
        }
        MessageKind::Restart => match gateway.conversation(conversation_id).await {
            Some(c) => c.restart(payload).await,
            None => error(Code::BadState, "no such conversation at this gateway"),
        },
    }
}
