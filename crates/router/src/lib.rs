//! sallyport-router: the signalling server between clients and gateways.
//!
//! It authenticates both sides with tokens, forwards a client's sealed message to the gateway's
//! WebSocket and waits for the reply, and routes the gateway's streamed messages to the client
//! WebSocket subscribed to that conversation. Payloads are sealed end to end; the router sees
//! only the envelope (conversation id, resource name, kind).

pub mod audit;
pub mod config;
mod conn;
mod fleet;
#[doc(hidden)]
pub mod fuzzing;
mod metrics;
pub mod reports;
pub mod sso;
mod ws;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http_body_util::BodyExt;
use sallyport_protocol::{
    AnnouncedResource, ClientMessage, ClientReply, ClientWsEvent, Code, ErrorBody, GatewayOutcome,
    MessageKind, ResourceInfo, ResourceList, RouterToGateway, PROTOCOL_VERSION,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use audit::{events, Audit, AuditRecord};
pub use config::RouterConfig;
pub use conn::{descriptor_limit, raise_descriptor_limit};
use metrics::Metrics;
use sallyport_ops::tls::ServerTls;

/// The address a request came from, put in its extensions by the accept loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub IpAddr);

pub(crate) fn source_of(addr: Option<Extension<ClientAddr>>) -> Option<IpAddr> {
    addr.map(|Extension(ClientAddr(ip))| ip)
}

/// The router's error type; every variant has a stable code and an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("missing or unknown token")]
    Unauthorized,
    /// An OpenID token refused (sso.rs), with its own code.
    #[error("{}", .0.message)]
    Sso(sso::Refusal),
    #[error("{0}")]
    Forbidden(String),
    #[error("unknown gateway {0:?}")]
    UnknownGateway(String),
    #[error("{0}")]
    UnknownResource(String),
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("no such endpoint")]
    NoSuchEndpoint,
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    #[error("no byte of the request body arrived within {0} s")]
    RequestTimeout(u64),
    #[error("protocol version {0} is not supported (this router speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u16),
    #[error("gateway {0:?} is not connected")]
    ControllerDown(String),
    #[error("gateway {0:?} did not answer within {1} ms")]
    Timeout(String, u64),
    /// The fleet's Redis did not answer (only with `redis_url`).
    #[error("the routers' shared store is unavailable: {0}")]
    FleetUnavailable(String),
    #[error("this router keeps no launch reports")]
    ReportsDisabled,
    #[error("the launch report store failed: {0}")]
    Store(String),
    /// An error the gateway itself returned, relayed with its code.
    #[error("gateway: {message}")]
    Gateway { code: Code, message: String },
}

impl RouterError {
    pub fn code(&self) -> Code {
        match self {
            RouterError::Config(_) => Code::ConfigInvalid,
            RouterError::Bind(..) => Code::Internal,
            RouterError::Unauthorized => Code::Unauthorized,
            RouterError::Sso(refusal) => refusal.code,
            RouterError::Forbidden(_) => Code::Forbidden,
            RouterError::UnknownGateway(_) => Code::UnknownGateway,
            RouterError::UnknownResource(_) => Code::UnknownResource,
            RouterError::Malformed(_) => Code::Malformed,
            RouterError::NoSuchEndpoint => Code::NotFound,
            RouterError::TooLarge(_) => Code::TooLarge,
            RouterError::RequestTimeout(_) => Code::RequestTimeout,
            RouterError::UnsupportedVersion(_) => Code::UnsupportedVersion,
            RouterError::ControllerDown(_) => Code::ControllerDown,
            RouterError::Timeout(..) => Code::RrcTimeout,
            RouterError::FleetUnavailable(_) => Code::FleetUnavailable,
            RouterError::ReportsDisabled => Code::ReportsDisabled,
            RouterError::Store(_) => Code::Internal,
            RouterError::Gateway { code, .. } => *code,
        }
    }

    /// The status is the code's, decided once in the registry.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code().http_status()).unwrap_or(StatusCode::BAD_GATEWAY)
    }
}

impl IntoResponse for RouterError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code(),
            message: self.to_string(),
        };
        // These answer a request whose body was not (all) read: the connection cannot carry
        // another request, so say so, or a client's pool would reuse it and fail.
        let body_unread = matches!(
            self,
            RouterError::Unauthorized
                | RouterError::Sso(_)
                | RouterError::TooLarge(_)
                | RouterError::RequestTimeout(_)
                | RouterError::ReportsDisabled
        );
        let mut response = (self.status(), Json(body)).into_response();
        if body_unread {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

/// A connected gateway.
struct GatewayLink {
    /// Distinguishes this connection from a later one of the same gateway.
    connection: u64,
    /// The gateway's own number for this connection (its `hello`'s `epoch`): in a fleet,
    /// which of two sockets of one gateway on two routers is the newer.
    epoch: Option<u64>,
    outbound: mpsc::Sender<RouterToGateway>,
    pending: Mutex<HashMap<u64, oneshot::Sender<GatewayOutcome>>>,
    /// Woken when a newer connection of the same gateway takes over.
    replaced: Arc<tokio::sync::Notify>,
}

/// Removes a forwarded request's waiter when its handler ends, whichever way it ends.
struct PendingGuard<'a> {
    link: &'a GatewayLink,
    request_id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.link.pending.lock().unwrap().remove(&self.request_id);
    }
}

/// A client's claim on a conversation id and, once subscribed, where its messages go.
struct Conversation {
    client: String,
    gateway: Option<String>,
    subscriber: Option<(u64, mpsc::Sender<ClientWsEvent>)>,
    /// Gateway messages that arrived before the client subscribed (delivered on subscribe).
    backlog: Vec<ClientWsEvent>,
    touched: Instant,
}

const MAX_BACKLOG: usize = 64;
const CONVERSATION_IDLE_TTL: Duration = Duration::from_secs(600);

pub(crate) struct Shared {
    config: RouterConfig,
    /// The certificate in force, when the router serves TLS.
    tls: Option<Arc<ServerTls>>,
    audit: Audit,
    limits: conn::Limits,
    connections: Arc<conn::Connections>,
    gateways: Mutex<HashMap<String, Arc<GatewayLink>>>,
    /// Last resources each gateway announced, kept while it is offline.
    announced: Mutex<HashMap<String, Vec<AnnouncedResource>>>,
    conversations: Mutex<HashMap<String, Conversation>>,
    next_id: AtomicU64,
    metrics: Metrics,
    reports: reports::Reports,
    /// Turns true when the router shuts down; every WebSocket then closes (1001).
    shutdown: sallyport_kit::Shutdown,
    /// With `redis_url`: the other routers, through Redis (fleet.rs). `None`: this router is
    /// the only one, and everything lives in the maps above.
    fleet: Option<Arc<fleet::Fleet>>,
    /// OpenID tokens' checks, when `[sso]` is configured.
    sso: Option<sso::Sso>,
}

impl Shared {
    fn new(config: RouterConfig, shutdown: sallyport_kit::Shutdown) -> Self {
        let declared = config
            .gateways
            .iter()
            .filter(|g| !g.resources.is_empty())
            .map(|g| (g.id.clone(), g.resources.clone()))
            .collect();
        let sso = config.sso.clone().map(sso::Sso::new);
        Self {
            limits: conn::Limits::from_config(&config),
            reports: reports::Reports::open_or_off(&config.reports),
            config,
            tls: None,
            audit: Audit::disabled(),
            connections: Arc::default(),
            gateways: Mutex::new(HashMap::new()),
            announced: Mutex::new(declared),
            conversations: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            metrics: Metrics::default(),
            shutdown,
            fleet: None,
            sso,
        }
    }

    /// Everything about a client's message that needs no gateway: its JSON, version, ids, and
    /// whether this client may send it to `gateway_id`.
    fn check_message(
        &self,
        client: &config::ClientEntry,
        gateway_id: &str,
        body: &[u8],
    ) -> Result<ClientMessage, RouterError> {
        let message: ClientMessage =
            serde_json::from_slice(body).map_err(|e| RouterError::Malformed(e.to_string()))?;
        if message.v != PROTOCOL_VERSION {
            return Err(RouterError::UnsupportedVersion(message.v));
        }
        if !sallyport_protocol::valid_conversation_id(&message.conversation_id) {
            return Err(RouterError::Malformed(format!(
                "conversation_id {}",
                sallyport_protocol::CONVERSATION_ID_RULE
            )));
        }
        if !sallyport_protocol::valid_resource_name(&message.resource) {
            return Err(RouterError::Malformed(format!(
                "resource {}",
                sallyport_protocol::RESOURCE_NAME_RULE
            )));
        }
        if !Shared::may_launch(client, &message.resource) {
            return Err(RouterError::Forbidden(format!(
                "client {:?} may not launch resource {:?}",
                client.name, message.resource
            )));
        }
        if !self.config.gateways.iter().any(|g| g.id == gateway_id) {
            return Err(RouterError::UnknownGateway(gateway_id.to_owned()));
        }
        Ok(message)
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The client a request's token names: a static `[[clients]]` token, or an OpenID token
    /// of the `[sso]` issuer (sso.rs), which stands for a client named by its user claim.
    async fn client_for_token(
        &self,
        headers: &HeaderMap,
    ) -> Result<std::borrow::Cow<'_, config::ClientEntry>, RouterError> {
        let token = bearer(headers).ok_or(RouterError::Unauthorized)?;
        if let Some(client) = self
            .config
            .clients
            .iter()
            .find(|c| constant_time_eq(c.token.as_bytes(), token.as_bytes()))
        {
            return Ok(std::borrow::Cow::Borrowed(client));
        }
        match &self.sso {
            Some(sso) if sso::Sso::looks_like_jwt(token) => {
                let client = sso.client(token).await.map_err(RouterError::Sso)?;
                // Names own conversations and reports: a user who bears a static client's
                // name (an automation job's) must not act as it.
                if self.config.clients.iter().any(|c| c.name == client.name) {
                    return Err(RouterError::Sso(sso::Refusal::new(
                        Code::Unauthorized,
                        format!(
                            "user {:?} has the name of a static client of this router",
                            client.name
                        ),
                    )));
                }
                Ok(std::borrow::Cow::Owned(client))
            }
            _ => Err(RouterError::Unauthorized),
        }
    }

    fn gateway_for_token(&self, headers: &HeaderMap) -> Option<&config::GatewayEntry> {
        let token = bearer(headers)?;
        self.config
            .gateways
            .iter()
            .find(|g| constant_time_eq(g.token.as_bytes(), token.as_bytes()))
    }

    fn may_launch(client: &config::ClientEntry, resource: &str) -> bool {
        client
            .resources
            .iter()
            .any(|p| config::pattern_matches(p, resource))
    }

    fn fail(&self, err: RouterError) -> RouterError {
        self.metrics.failure(err.code());
        err
    }

    /// A request without a valid token: counted, and written to the audit trail with the
    /// refusal's code (`unauthorized`, or an OpenID token's: `token_expired`, ...).
    fn unauthorized(&self, source: Option<IpAddr>, refusal: RouterError) -> RouterError {
        self.fail(self.refused_sign_in(source, refusal))
    }

    /// Write a refused token to the audit trail (not counted: the caller counts its failure).
    fn refused_sign_in(&self, source: Option<IpAddr>, refusal: RouterError) -> RouterError {
        self.audit.record(&AuditRecord {
            code: Some(refusal.code().to_string()),
            ..AuditRecord::new(events::SIGN_IN_REFUSED).source(source)
        });
        refusal
    }

    /// Claim `conversation_id` for `client`, or refuse if another client holds it.
    fn claim(&self, conversation_id: &str, client: &str) -> Result<(), RouterError> {
        let mut conversations = self.conversations.lock().unwrap();
        let entry = conversations
            .entry(conversation_id.to_owned())
            .or_insert_with(|| Conversation {
                client: client.to_owned(),
                gateway: None,
                subscriber: None,
                backlog: Vec::new(),
                touched: Instant::now(),
            });
        if entry.client != client {
            return Err(RouterError::Forbidden(
                "conversation belongs to another client".into(),
            ));
        }
        entry.touched = Instant::now();
        Ok(())
    }

    /// Deliver a gateway's streamed message to the conversation's subscriber, or keep it until
    /// the client subscribes. Only the gateway the conversation was sent to may stream into it.
    fn route_stream(&self, gateway_id: &str, event: ClientWsEvent, conversation_id: &str) {
        if let Some(fleet) = &self.fleet {
            // In a fleet the subscriber may be on another router, or move to one: every
            // message goes through the conversation's list in Redis, so none overtakes
            // another, wherever the subscriber is (a shortcut for a subscriber here could
            // pass a message still on its way to the list).
            fleet.stream(gateway_id, conversation_id, &event);
            return;
        }
        let mut conversations = self.conversations.lock().unwrap();
        let Some(conversation) = conversations.get_mut(conversation_id) else {
            self.metrics.failure(Code::UnknownConversation);
            return;
        };
        if conversation.gateway.as_deref() != Some(gateway_id) {
            self.metrics.failure(Code::Forbidden);
            return;
        }
        conversation.touched = Instant::now();
        if let Some((_, tx)) = &conversation.subscriber {
            if tx.try_send(event).is_ok() {
                self.metrics.streamed.fetch_add(1, Ordering::Relaxed);
            } else {
                self.metrics.failure(Code::ClientSlow);
            }
        } else if conversation.backlog.len() < MAX_BACKLOG {
            conversation.backlog.push(event);
        }
    }

    /// Tell the subscriber of every conversation bound to `gateway_id` that it is gone.
    fn gateway_lost(&self, gateway_id: &str) {
        let conversations = self.conversations.lock().unwrap();
        for (id, conversation) in conversations.iter() {
            if conversation.gateway.as_deref() != Some(gateway_id) {
                continue;
            }
            if let Some((_, tx)) = &conversation.subscriber {
                let _ = tx.try_send(ClientWsEvent::GatewayLost {
                    conversation_id: id.clone(),
                    gateway: gateway_id.to_owned(),
                });
            }
        }
    }

    /// Messages for `conversation_id` that came through the fleet: to its subscriber here.
    pub(crate) fn deliver(&self, conversation_id: &str, events: Vec<ClientWsEvent>) {
        let conversations = self.conversations.lock().unwrap();
        let Some((_, tx)) = conversations
            .get(conversation_id)
            .and_then(|c| c.subscriber.as_ref())
        else {
            return;
        };
        for event in events {
            if tx.try_send(event).is_ok() {
                self.metrics.streamed.fetch_add(1, Ordering::Relaxed);
            } else {
                self.metrics.failure(Code::ClientSlow);
            }
        }
    }

    /// Whether a socket here is subscribed to `conversation_id`.
    pub(crate) fn subscribed_here(&self, conversation_id: &str) -> bool {
        self.conversations
            .lock()
            .unwrap()
            .get(conversation_id)
            .is_some_and(|c| c.subscriber.is_some())
    }

    /// The conversations a socket here is subscribed to.
    pub(crate) fn subscribed_conversations(&self) -> Vec<String> {
        self.conversations
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, c)| c.subscriber.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Tell the subscriber of one conversation that its gateway is gone.
    pub(crate) fn notify_gateway_lost(&self, conversation_id: &str, gateway_id: &str) {
        let conversations = self.conversations.lock().unwrap();
        if let Some((_, tx)) = conversations
            .get(conversation_id)
            .and_then(|c| c.subscriber.as_ref())
        {
            let _ = tx.try_send(ClientWsEvent::GatewayLost {
                conversation_id: conversation_id.to_owned(),
                gateway: gateway_id.to_owned(),
            });
        }
    }

    /// The gateway connected to another router of the fleet, on its connection `epoch`
    /// (unknown from an earlier version): a socket of it here is an old one, close it as
    /// replaced; unless its own epoch is larger (the announcement came late), when this
    /// returns false and nothing changes.
    pub(crate) fn replace_gateway(&self, gateway_id: &str, epoch: Option<u64>) -> bool {
        let previous = {
            let mut gateways = self.gateways.lock().unwrap();
            match (gateways.get(gateway_id).and_then(|l| l.epoch), epoch) {
                (Some(here), Some(there)) if here > there => return false,
                _ => gateways.remove(gateway_id),
            }
        };
        if let Some(previous) = previous {
            // Its presence is the other router's to refresh now, not this one's.
            if let Some(fleet) = &self.fleet {
                fleet.gateway_closed(gateway_id, previous.connection);
            }
            previous.replaced.notify_one();
            previous.pending.lock().unwrap().clear();
        }
        true
    }

    /// Send `forward` to a gateway connected here and wait for its reply: `controller_down`
    /// if it is not (or goes away meanwhile), `rrc_timeout` after `timeout_ms`.
    pub(crate) async fn forward_local(
        &self,
        gateway_id: &str,
        timeout_ms: u64,
        mut forward: RouterToGateway,
    ) -> Result<GatewayOutcome, RouterError> {
        let link = self
            .gateways
            .lock()
            .unwrap()
            .get(gateway_id)
            .cloned()
            .ok_or_else(|| RouterError::ControllerDown(gateway_id.to_owned()))?;
        let request_id = self.next_id();
        if let RouterToGateway::Forward { request_id: id, .. } = &mut forward {
            *id = request_id;
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        link.pending.lock().unwrap().insert(request_id, reply_tx);
        // However this ends (reply, timeout, the client hanging up), forget the waiter.
        let _pending = PendingGuard {
            link: &link,
            request_id,
        };
        if link.outbound.try_send(forward).is_err() {
            return Err(RouterError::ControllerDown(gateway_id.to_owned()));
        }
        self.metrics.forwarded.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(Duration::from_millis(timeout_ms), reply_rx).await {
            Ok(Ok(outcome)) => Ok(outcome),
            // The gateway went away while we waited.
            Ok(Err(_)) => Err(RouterError::ControllerDown(gateway_id.to_owned())),
            Err(_) => Err(RouterError::Timeout(gateway_id.to_owned(), timeout_ms)),
        }
    }

    /// A handle on the router's stop; holding it holds the stop open.
    pub(crate) fn shutdown(&self) -> sallyport_kit::Shutdown {
        self.shutdown.clone()
    }

    /// Resolves once the router is shutting down.
    pub(crate) async fn closing(&self) {
        self.shutdown().recv().await
    }

    fn sweep_idle_conversations(&self) {
        let now = Instant::now();
        self.conversations.lock().unwrap().retain(|_, c| {
            c.subscriber.is_some() || now.duration_since(c.touched) < CONVERSATION_IDLE_TTL
        });
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then_some(token)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A running router.
pub struct RouterHandle {
    pub addr: SocketAddr,
    stopper: sallyport_kit::Stopper,
    /// For `url` and `reload`; dropped before the stop waits (it holds a `Shutdown` too).
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl RouterHandle {
    /// `https://ADDR` (or `http://ADDR` with `plain_http`), the base URL clients and gateways
    /// use.
    pub fn url(&self) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// What SIGHUP does: read the certificate and key again (new connections get them;
    /// connections already open, gateways' included, are kept) and reopen the audit log (after
    /// a rotation). On an error the old certificate and log stay in use.
    pub fn reload(&self) -> Result<(), RouterError> {
        let mut problems = Vec::new();
        if let Some(tls) = &self.shared.tls {
            if let Err(e) = tls.reload() {
                problems.push(e.to_string());
            }
        }
        if let Err(e) = self.shared.audit.reopen() {
            problems.push(format!("audit_log: cannot reopen: {e}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(RouterError::Config(problems.join("; ")))
        }
    }

    /// Stop accepting, close every WebSocket (gateways then reconnect elsewhere or later),
    /// finish in-flight requests, and return once every connection and socket has let go.
    pub async fn shutdown(self) {
        let RouterHandle {
            stopper,
            shared,
            task,
            ..
        } = self;
        drop(shared);
        stopper.stop().await;
        let _ = task.await;
    }
}

/// Check `config`, bind `config.listen` and serve in the background.
pub async fn spawn(config: RouterConfig) -> Result<RouterHandle, RouterError> {
    config.validate()?;
    // A report store that cannot be opened is a configuration error, named, before serving.
    drop(reports::Reports::open(&config.reports)?);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| RouterError::Bind(config.listen, e))?;
    spawn_on(listener, config)
}

/// Serve on an already bound listener in the background: the configuration's certificate and
/// audit log are loaded first.
pub fn spawn_on(listener: TcpListener, config: RouterConfig) -> Result<RouterHandle, RouterError> {
    config.validate()?;
    let tls = config
        .tls
        .as_ref()
        .map(|files| ServerTls::load(&files.cert_file, &files.key_file))
        .transpose()
        .map_err(|e| RouterError::Config(e.to_string()))?;
    let audit = Audit::open(config.audit_log.as_deref())?;
    if !audit.enabled() {
        tracing::warn!("no audit_log in the configuration: launches are not audited");
    }
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    // Everything that holds the router's state holds a Shutdown through it: the stop returns
    // once the last connection and socket let go of it.
    let stopper = sallyport_kit::Stopper::new();
    let mut shared = Shared::new(config, stopper.shutdown());
    shared.tls = tls.map(Arc::new);
    shared.audit = audit;
    let fleet_writes = match &shared.config.redis_url {
        Some(url) => {
            let (fleet, writes) = fleet::Fleet::new(
                url,
                shared.config.redis_ca_file.as_deref(),
                shared.config.router_id(),
                shared.config.fleet_prefix.clone(),
            )?;
            shared.fleet = Some(fleet);
            Some(writes)
        }
        None => None,
    };
    let shared = Arc::new(shared);
    if let (Some(fleet), Some(writes)) = (&shared.fleet, fleet_writes) {
        tracing::info!(router = %fleet.router_id, "router joins the fleet");
        tokio::spawn(fleet::run(
            Arc::downgrade(&shared),
            fleet.clone(),
            writes,
            stopper.shutdown(),
        ));
    }
    let sweeper = {
        let shared = Arc::downgrade(&shared);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                match shared.upgrade() {
                    Some(shared) => {
                        shared.sweep_idle_conversations();
                        shared.audit.sweep();
                    }
                    None => break,
                }
            }
        })
    };
    let app = app(shared.clone());
    let limits = shared.limits;
    let tls = shared.tls.is_some();
    let serving = shared.clone();
    let task = tokio::spawn(async move {
        conn::serve(listener, app, serving).await;
        sweeper.abort();
    });
    tracing::info!(
        %addr,
        tls,
        max_connections = limits.max_total,
        max_connections_per_source = limits.max_per_source,
        "router listening"
    );
    Ok(RouterHandle {
        addr,
        stopper,
        shared,
        task,
    })
}

fn app(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/v1/resources", get(list_resources))
        .route("/v1/gateways/{id}/messages", post(forward_message))
        .route("/v1/ws/client", get(ws::client_socket))
        .route("/v1/ws/gateway", get(ws::gateway_socket))
        .merge(reports::routes())
        .fallback(|| async { RouterError::NoSuchEndpoint })
        .with_state(shared)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "version": PROTOCOL_VERSION }))
}

async fn metrics_text(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let mut gateways = shared.gateways.lock().unwrap().len();
    // In a fleet, the gateways connected to any router (this one's own count if Redis is down).
    if let Some(fleet) = &shared.fleet {
        if let Ok((online, _)) = fleet_gateways(&shared, fleet).await {
            gateways = online.len();
        }
    }
    let conversations = shared.conversations.lock().unwrap().len();
    let connections = shared.connections.open();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        shared.metrics.render(gateways, conversations, connections),
    )
}

/// The fleet's view of the configured gateways: which are connected to any router, and what
/// each announced last (the configuration's declared resources for one that never did).
async fn fleet_gateways(
    shared: &Shared,
    fleet: &fleet::Fleet,
) -> Result<(Vec<String>, HashMap<String, Vec<AnnouncedResource>>), RouterError> {
    let ids: Vec<String> = shared
        .config
        .gateways
        .iter()
        .map(|g| g.id.clone())
        .collect();
    let states = fleet.gateways(&ids).await?;
    let declared = shared.announced.lock().unwrap().clone();
    let mut online = Vec::new();
    let mut announced = HashMap::new();
    for (id, (router, resources)) in ids.into_iter().zip(states) {
        if router.is_some() {
            online.push(id.clone());
        }
        if let Some(list) = resources.or_else(|| declared.get(&id).cloned()) {
            announced.insert(id, list);
        }
    }
    Ok((online, announced))
}

async fn list_resources(
    State(shared): State<Arc<Shared>>,
    addr: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
) -> Result<Json<ResourceList>, RouterError> {
    let source = source_of(addr);
    let client = match shared.client_for_token(&headers).await {
        Ok(client) => client,
        Err(refusal) => return Err(shared.unauthorized(source, refusal)),
    };
    let client = client.as_ref();
    shared.audit.signed_in(&client.name, source);
    let (online, announced) = match &shared.fleet {
        None => (
            shared.gateways.lock().unwrap().keys().cloned().collect(),
            shared.announced.lock().unwrap().clone(),
        ),
        Some(fleet) => fleet_gateways(&shared, fleet).await?,
    };
    let mut resources: Vec<ResourceInfo> = announced
        .iter()
        .flat_map(|(gateway, list)| {
            let is_online = online.contains(gateway);
            // For display only: clients pin keys themselves and never trust this one unasked.
            let key = shared
                .config
                .gateways
                .iter()
                .find(|g| &g.id == gateway)
                .map(|g| g.public_key.clone());
            list.iter().map(move |r| ResourceInfo {
                name: r.name.clone(),
                protocol: r.protocol.clone(),
                gateway: gateway.clone(),
                online: is_online,
                gateway_key: key.clone(),
            })
        })
        .filter(|r| Shared::may_launch(client, &r.name))
        .collect();
    resources.sort_by(|a, b| a.name.cmp(&b.name).then(a.gateway.cmp(&b.gateway)));
    Ok(Json(ResourceList { resources }))
}

async fn forward_message(
    State(shared): State<Arc<Shared>>,
    Path(gateway_id): Path<String>,
    addr: Option<Extension<ClientAddr>>,
    request: Request,
) -> Result<Json<ClientReply>, RouterError> {
    let source = source_of(addr);
    let mut launch = None;
    let result = forward(&shared, gateway_id, request, source, &mut launch).await;
    if let (Some(launch), Err(e)) = (launch, &result) {
        shared.audit.record(&AuditRecord {
            code: Some(e.code().to_string()),
            event: events::LAUNCH_REFUSED.into(),
            source: None,
            ..launch
        });
    }
    match result {
        Err(e @ (RouterError::Unauthorized | RouterError::Sso(_))) => {
            Err(shared.unauthorized(source, e))
        }
        result => result.map_err(|e| shared.fail(e)),
    }
}

/// Read a request body of at most `max` bytes, each part within `idle` of the last. Called
/// only once the token is known good, so an unauthenticated peer is never waited for.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    idle: Duration,
) -> Result<Vec<u8>, RouterError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(RouterError::TooLarge(max));
    }
    let mut body = body;
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0) as usize);
    loop {
        let frame = tokio::time::timeout(idle, body.frame())
            .await
            .map_err(|_| RouterError::RequestTimeout(idle.as_secs()))?;
        let Some(frame) = frame else {
            return Ok(bytes);
        };
        let frame = frame.map_err(|e| RouterError::Malformed(format!("unreadable body: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if bytes.len() + data.len() > max {
                return Err(RouterError::TooLarge(max));
            }
            bytes.extend_from_slice(data);
        }
    }
}

/// The audit record of a launch as far as it is known: a `start` whose ids are valid. What
/// else a refused request held is not written down.
fn launch_record(
    client: &config::ClientEntry,
    gateway_id: &str,
    body: &[u8],
    source: Option<IpAddr>,
) -> Option<AuditRecord> {
    // Owned strings: a borrowed one would fail on escapes, and an escaped id must not slip
    // past the audit trail.
    #[derive(serde::Deserialize)]
    struct Envelope {
        conversation_id: String,
        resource: String,
        kind: MessageKind,
    }
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    let valid = envelope.kind == MessageKind::Start
        && sallyport_protocol::valid_conversation_id(&envelope.conversation_id)
        && sallyport_protocol::valid_resource_name(&envelope.resource)
        && sallyport_protocol::valid_resource_name(gateway_id);
    valid.then(|| {
        AuditRecord::new(events::LAUNCH_REQUESTED)
            .launch(
                &client.name,
                &envelope.resource,
                gateway_id,
                &envelope.conversation_id,
            )
            .source(source)
    })
}

async fn forward(
    shared: &Arc<Shared>,
    gateway_id: String,
    request: Request,
    source: Option<IpAddr>,
    launch: &mut Option<AuditRecord>,
) -> Result<Json<ClientReply>, RouterError> {
    let (parts, body) = request.into_parts();
    let client = shared.client_for_token(&parts.headers).await?;
    let client = client.as_ref();
    let body = read_body(
        &parts.headers,
        body,
        shared.config.max_body_bytes,
        shared.limits.idle,
    )
    .await?;
    if shared.audit.enabled() {
        *launch = launch_record(client, &gateway_id, &body, source);
        if let Some(record) = launch {
            shared.audit.record(record);
        }
    }
    let message = shared.check_message(client, &gateway_id, &body)?;
    let here = shared.gateways.lock().unwrap().contains_key(&gateway_id);
    // In a fleet, a gateway not connected here may be on another router.
    // Where it is and what it serves, in one read of Redis.
    let elsewhere = match (&shared.fleet, here) {
        (Some(fleet), false) => {
            let (router, resources) = fleet
                .gateways(std::slice::from_ref(&gateway_id))
                .await?
                .remove(0);
            match router {
                Some(router) if router != fleet.router_id => {
                    Some((fleet.clone(), router, resources))
                }
                _ => None,
            }
        }
        _ => None,
    };
    if !here && elsewhere.is_none() {
        return Err(RouterError::ControllerDown(gateway_id));
    }
    let serves_resource = match &elsewhere {
        None => shared
            .announced
            .lock()
            .unwrap()
            .get(&gateway_id)
            .is_some_and(|list| list.iter().any(|r| r.name == message.resource)),
        Some((_, _, resources)) => resources
            .as_ref()
            .is_some_and(|list| list.iter().any(|r| r.name == message.resource)),
    };
    if !serves_resource {
        return Err(RouterError::UnknownResource(format!(
            "gateway {gateway_id:?} does not serve resource {:?}",
            message.resource
        )));
    }

    // The fleet's claim first: a refused one must leave no owner behind here.
    if let Some(fleet) = &shared.fleet {
        fleet
            .claim(
                &message.conversation_id,
                &client.name,
                Some(&gateway_id),
                false,
            )
            .await?;
    }
    shared.claim(&message.conversation_id, &client.name)?;
    if let Some(c) = shared
        .conversations
        .lock()
        .unwrap()
        .get_mut(&message.conversation_id)
    {
        c.gateway = Some(gateway_id.clone());
    }

    let timeout_ms = message
        .timeout_ms
        .unwrap_or(shared.config.default_timeout_ms)
        .clamp(1, shared.config.max_timeout_ms);
    let forward = RouterToGateway::Forward {
        // Set by whichever router sends it on the gateway's socket.
        request_id: 0,
        conversation_id: message.conversation_id.clone(),
        resource: message.resource.clone(),
        kind: message.kind,
        stream_response: message.stream_response,
        payload: message.payload,
    };
    let outcome = match elsewhere {
        None => {
            shared
                .forward_local(&gateway_id, timeout_ms, forward)
                .await?
        }
        Some((fleet, router, _)) => {
            let request_id = shared.next_id();
            let reply = fleet
                .forward_remote(&router, &gateway_id, request_id, timeout_ms, forward)
                .await?;
            let waited = tokio::time::timeout(Duration::from_millis(timeout_ms), reply).await;
            fleet.forget_remote(request_id);
            match waited {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => return Err(RouterError::ControllerDown(gateway_id)),
                Err(_) => return Err(RouterError::Timeout(gateway_id, timeout_ms)),
            }
        }
    };
    match outcome {
        GatewayOutcome::Ok { payload } => {
            if message.kind == MessageKind::Start {
                shared.audit.launched(
                    &client.name,
                    &message.resource,
                    &gateway_id,
                    &message.conversation_id,
                );
            }
            // Alone, the gateway's `closed` message was delivered before its reply. In a fleet
            // it may still be on its way through Redis: the conversation stays for it, until
            // the client unsubscribes or it expires.
            if message.kind == MessageKind::Close && shared.fleet.is_none() {
                shared
                    .conversations
                    .lock()
                    .unwrap()
                    .remove(&message.conversation_id);
            }
            Ok(Json(ClientReply {
                conversation_id: message.conversation_id,
                payload,
            }))
        }
        GatewayOutcome::Error { code, message } => Err(RouterError::Gateway { code, message }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_error_is_answered_with_its_code_s_status() {
        let relayed = |code| RouterError::Gateway {
            code,
            message: "m".into(),
        };
        assert_eq!(relayed(Code::BadState).status(), 502);
        assert_eq!(relayed(Code::SessionLimit).status(), 429);
        assert_eq!(relayed(Code::Unrecognized).status(), 502);
        assert_eq!(RouterError::Timeout("g".into(), 1).status(), 504);
        assert_eq!(RouterError::ControllerDown("g".into()).status(), 503);
    }

    #[test]
    fn bearer_parsing() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }
}
