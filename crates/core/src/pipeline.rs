//! The launch pipeline: every phase of a launch, in order, each emitting its checkpoint.
//!
//!  1. resolve the resource and its gateway      `resource_resolved` | `launch_cache_hit`
//!  2. start the router WebSocket early          `websocket_listener_started_early`
//!  3. create the tube (peer + offer)            `create_tube_ok`
//!  4. wait for the router's registration        `websocket_registered` | `websocket_ready_backend_delay_done`
//!  5. optional pre-offer sleep                  `pre_offer_sleep_done`
//!  6. send the offer, with retry                `gateway_offer_http_attempt_N`, `..._catchup_delay_start/_done`, `gateway_offer_http_done`
//!  7. the answer arrives and is applied         `answer_received`
//!  8. the data plane, layer by layer            `ice_connected`, `dtls_connected`, `sctp_connected`, `channel_open`, `webrtc_data_plane_connected`
//!  9. local listener, target, native client     `local_listener_ready`, `target_connected`, `client_spawned`
//!     summary                                   `ready`
//!
//! `fast` sends its offer at once and takes phase 4 after phase 7 (`offer_at_once`): the reply
//! carries the answer, and the router keeps what the gateway streams until the socket has
//! subscribed, so waiting for the registration first would only add its round trips.
//!
//! [`Launcher::run`] reads as this list: one function per phase, each doing its own work and
//! then emitting its own checkpoint, so a slow phase is charged to its own name.

use std::sync::Arc;
use std::time::Duration;

use sallyport_protocol::{
    AnswerBody, CandidatesBody, ClientMessage, Code, ConversationKeys, GatewayPublicKey,
    IceCandidate, MessageKind, OpenedBody, ResourceInfo, SealedPayload, SessionDescription,
    StartBody, StreamKind, FIRST_CONNECTION, PROTOCOL_VERSION,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::cache::ResourceCache;
use crate::checkpoint::{names, Checkpoint, CheckpointBus, Observer, Recorder};
use crate::error::{CoreError, Result};
use crate::native_client::{self, ClientChoice};
use crate::profile::{ClientProfile, StickyPorts};
use crate::router_api::{RouterApi, SendFailure, SignalEvent};
use crate::session::{Session, SessionParts};
use crate::tube::{ClientTube, Connection, Milestone, TubeConfig};
use crate::tunables::Tunables;

/// How long the router may take to answer one offer attempt.
const OFFER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the gateway may take to reach the target (its own connect timeout is 5 s).
const TARGET_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an offer that goes out without trickle waits for every local candidate.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a resource listing stays fresh in the cache.
pub const CACHE_TTL: Duration = Duration::from_secs(300);

/// What to launch and how.
#[derive(Debug, Clone)]
pub struct LaunchRequest {
    pub resource: String,
    /// Explicit local port (0: any free port, not remembered); otherwise the sticky port of
    /// the resource, else any free port (remembered).
    pub port: Option<u16>,
    pub client: ClientChoice,
    pub tunables: Tunables,
    /// Trickle ICE: stream the answer and candidates over the WebSocket. When false, the
    /// offer carries every candidate and the answer comes inline in the HTTP reply.
    pub trickle: bool,
    /// The launch id to use (so a caller can follow its checkpoints); random when absent.
    pub launch_id: Option<String>,
}

impl LaunchRequest {
    pub fn new(resource: &str, tunables: Tunables) -> Self {
        Self {
            resource: resource.to_owned(),
            port: None,
            client: ClientChoice::Default,
            tunables,
            trickle: true,
            launch_id: None,
        }
    }
}

/// One launch's outcome and every checkpoint it recorded (the last is `ready` or `failed`).
pub struct Launched {
    pub launch_id: String,
    pub result: Result<Session>,
    pub checkpoints: Vec<Checkpoint>,
}

/// Everything launches share: the router API, the profile, the cache, the checkpoint stream.
pub struct Launcher {
    api: RouterApi,
    profile: ClientProfile,
    cache: Arc<ResourceCache>,
    bus: CheckpointBus,
    ports: StickyPorts,
    tube_config: TubeConfig,
    state_dir: std::path::PathBuf,
}

impl Launcher {
    pub fn new(profile: ClientProfile, token: &str, ports: StickyPorts) -> Result<Self> {
        profile.validate()?;
        Ok(Self {
            api: RouterApi::for_profile(&profile, token)?,
            tube_config: profile.tube_config(),
            profile,
            cache: Arc::new(ResourceCache::new(CACHE_TTL)),
            bus: CheckpointBus::new(),
            ports,
            state_dir: crate::profile::home_dir(),
        })
    }

    /// Tube settings other than the profile's (the bench's relayed paths, fixed packet sizes).
    pub fn with_tube_config(mut self, config: TubeConfig) -> Self {
        self.tube_config = config;
        self
    }

    pub fn with_state_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.state_dir = dir;
        self
    }

    pub fn checkpoints(&self) -> &CheckpointBus {
        &self.bus
    }

    /// The router's HTTP API for this launcher's token.
    pub fn api(&self) -> &RouterApi {
        &self.api
    }

    /// The token the launcher's requests carry (a refreshed sign-in replaces it in place).
    pub fn shared_token(&self) -> crate::router_api::SharedToken {
        self.api.shared_token()
    }

    /// The profile launches use (its pins, its router).
    pub fn profile(&self) -> &ClientProfile {
        &self.profile
    }

    pub fn cache(&self) -> &ResourceCache {
        &self.cache
    }

    /// The resources this token may launch, refreshing the cache.
    pub async fn resources(&self) -> Result<Vec<ResourceInfo>> {
        let list = self.api.resources().await?;
        self.cache.store_all(&list);
        Ok(list)
    }

    /// Run one launch. On failure the `failed` checkpoint carries the error's code and message,
    /// and the cache entry the launch used is dropped.
    pub async fn launch(&self, request: LaunchRequest) -> Result<Session> {
        self.launch_observed(request, None).await.result
    }

    /// Run one launch, handing each checkpoint to `observer` as it is recorded; the launch's
    /// checkpoints come back whether it succeeded or not.
    pub async fn launch_observed(
        &self,
        request: LaunchRequest,
        observer: Option<Observer>,
    ) -> Launched {
        let launch_id = request
            .launch_id
            .clone()
            .unwrap_or_else(crate::new_launch_id);
        let recorder = Recorder::new(
            self.bus.clone(),
            &launch_id,
            &request.resource,
            request.tunables.connect_timing,
        )
        .with_observer(observer);
        let span = tracing::info_span!("launch", id = %launch_id, resource = %request.resource, profile = %request.tunables.profile);
        let result = self.run(&request, &recorder).instrument(span).await;
        if let Err(e) = &result {
            self.cache.drop_entry(&request.resource);
            recorder.mark_failed(e.code(), e.to_string());
        }
        Launched {
            launch_id,
            result,
            checkpoints: recorder.checkpoints(),
        }
    }

    /// The launch as a story: one call per phase, each emitting its own checkpoint after its
    /// own work. Once the tube exists, a failure closes it and tells the gateway.
    async fn run(&self, request: &LaunchRequest, recorder: &Recorder) -> Result<Session> {
        let plan = self.resolve(request, recorder).await?;
        let conversation = Conversation::new(
            self.api.clone(),
            &plan,
            &self.tube_config,
            &request.tunables,
        );
        let early = self.listen_early(request, &conversation, recorder);
        let (tube, offer) = self.create_tube(request, recorder).await?;
        let signal = self.listen_late(early, &conversation, recorder);
        let launched = self
            .connect(request, plan, &conversation, &tube, offer, signal, recorder)
            .await;
        if launched.is_err() {
            conversation.abandon(&tube).await;
        }
        let session = launched?;
        recorder.mark(names::READY);
        Ok(session)
    }

    /// Everything from registration to a running session.
    #[allow(clippy::too_many_arguments)]
    async fn connect(
        &self,
        request: &LaunchRequest,
        plan: Plan,
        conversation: &Conversation,
        tube: &Arc<ClientTube>,
        offer: SessionDescription,
        mut signal: Signal,
        recorder: &Recorder,
    ) -> Result<Session> {
        let tunables = &request.tunables;
        let trickle = if tunables.offer_at_once {
            request.trickle
        } else {
            self.register(request, &mut signal, recorder).await?
        };
        let offer = self
            .pre_offer(tube, offer, trickle, tunables, recorder)
            .await?;
        let sent = offer.clone();
        let reply = self
            .send_offer(conversation, offer, trickle, tunables, recorder)
            .await?;
        let first = self
            .receive_answer(conversation, tube, reply, trickle, &mut signal, recorder)
            .await?;
        let mut background = trickle_out(conversation, tube, trickle);
        // ICE is under way in the tube; the socket is still needed for the gateway's later
        // candidates and its word that the conversation ended.
        let lost = if tunables.offer_at_once {
            let socket = self.register(request, &mut signal, recorder).await?;
            !socket && trickle
        } else {
            false
        };
        watch_signal(conversation, tube.clone(), signal, &mut background);
        if lost {
            background.spawn(conversation.clone().gathered_inline(tube.clone(), sent));
        }
        self.connect_data_plane(tube, tunables, recorder).await?;
        let port = self.local_listener_ready(&plan.listener, recorder)?;
        let first = self.connect_target(tube, first, tunables, recorder).await?;
        self.start_session(plan, conversation, tube, port, first, background, recorder)
    }

    /// Phase 1: the resource and its gateway (from the cache or the router), the gateway's
    /// pinned key, the native client, and the local port (bound now, so that a taken port
    /// fails before any tunnel exists).
    async fn resolve(&self, request: &LaunchRequest, recorder: &Recorder) -> Result<Plan> {
        let (resource, checkpoint) = self.find_resource(&request.resource).await?;
        let gateway_key = self
            .profile
            .trusted_gateway_key(&resource.gateway, resource.gateway_key.as_deref())?;
        let client = native_client::prepare(&request.client, &resource.protocol, &resource.name)?;
        let listener = self.bind_local(&resource.name, request.port).await?;
        recorder.mark_with(checkpoint, None, Some(resource.gateway.clone()));
        Ok(Plan {
            resource,
            gateway_key,
            client,
            listener,
        })
    }

    /// Phase 2: the router WebSocket, started before the tube so that its handshake and
    /// registration run while the peer connection is built. The legacy profile starts it
    /// after the tube instead ([`listen_late`](Self::listen_late)).
    fn listen_early(
        &self,
        request: &LaunchRequest,
        conversation: &Conversation,
        recorder: &Recorder,
    ) -> Option<Signal> {
        if !request.tunables.listener_early {
            return None;
        }
        let signal = Signal::new(self.api.listen(&conversation.id));
        recorder.mark(names::WEBSOCKET_LISTENER_STARTED_EARLY);
        Some(signal)
    }

    fn listen_late(
        &self,
        early: Option<Signal>,
        conversation: &Conversation,
        recorder: &Recorder,
    ) -> Signal {
        early.unwrap_or_else(|| {
            let signal = Signal::new(self.api.listen(&conversation.id));
            recorder.mark(names::WEBSOCKET_LISTENER_STARTED);
            signal
        })
    }

    /// Phase 3: the peer connection and its offer. An offer that goes out without trickle
    /// carries every candidate, so gathering finishes here.
    async fn create_tube(
        &self,
        request: &LaunchRequest,
        recorder: &Recorder,
    ) -> Result<(Arc<ClientTube>, SessionDescription)> {
        let (tube, mut offer) = ClientTube::create(&self.tube_config).await?;
        if !request.trickle {
            offer = tube.complete_offer(GATHER_TIMEOUT).await?;
        }
        recorder.mark(names::CREATE_TUBE_OK);
        Ok((Arc::new(tube), offer))
    }

    /// Phase 4: until the router has registered the conversation (its ack, or the fixed
    /// window). Returns whether the answer can be streamed: without a WebSocket it cannot.
    /// With `offer_at_once` this runs after the answer, which came inline: the wait then
    /// overlaps the offer's round trip and ICE instead of preceding them.
    async fn register(
        &self,
        request: &LaunchRequest,
        signal: &mut Signal,
        recorder: &Recorder,
    ) -> Result<bool> {
        let tunables = &request.tunables;
        if !tunables.use_ack {
            tokio::time::sleep(tunables.websocket_backend_delay).await;
            recorder.mark(names::WEBSOCKET_READY_BACKEND_DELAY_DONE);
            return Ok(request.trickle);
        }
        match signal.registered(tunables.websocket_backend_delay).await {
            Registration::Acknowledged => {
                recorder.mark(names::WEBSOCKET_REGISTERED);
                Ok(request.trickle)
            }
            Registration::TimedOut => {
                // No ack within the window: the window itself was the fallback sleep.
                recorder.mark_with(
                    names::WEBSOCKET_READY_BACKEND_DELAY_DONE,
                    None,
                    Some("no ack from the router".into()),
                );
                Ok(request.trickle)
            }
            Registration::Lost => {
                // The session subscribes again in the background, as after any drop of its
                // socket (for the gateway's later candidates and its word of an end).
                signal
                    .early
                    .push(SignalEvent::Lost("lost before it registered".into()));
                let next = if tunables.offer_at_once {
                    "subscribing again and asking for the gateway's candidates inline"
                } else {
                    "asking for an inline answer"
                };
                recorder.mark_with(
                    names::WEBSOCKET_READY_BACKEND_DELAY_DONE,
                    None,
                    Some(format!("router websocket lost; {next}")),
                );
                Ok(false)
            }
            Registration::Refused { code, message } => Err(CoreError::Router {
                status: 0,
                code,
                message: format!("the router refused the subscription: {message}"),
            }),
        }
    }

    /// Phase 5: the optional pre-offer sleep. An offer that can no longer trickle (the
    /// socket was lost) is completed here too.
    async fn pre_offer(
        &self,
        tube: &ClientTube,
        offer: SessionDescription,
        trickle: bool,
        tunables: &Tunables,
        recorder: &Recorder,
    ) -> Result<SessionDescription> {
        if !tunables.pre_offer.is_zero() {
            tokio::time::sleep(tunables.pre_offer).await;
        }
        let offer = if trickle || offer.sdp.contains("a=end-of-candidates") {
            offer
        } else {
            tube.complete_offer(GATHER_TIMEOUT).await?
        };
        recorder.mark(names::PRE_OFFER_SLEEP_DONE);
        Ok(offer)
    }

    /// Phase 6: the offer, with retry after a transient failure.
    async fn send_offer(
        &self,
        conversation: &Conversation,
        offer: SessionDescription,
        trickle: bool,
        tunables: &Tunables,
        recorder: &Recorder,
    ) -> Result<sallyport_protocol::ClientReply> {
        let start = conversation.start_message(offer, trickle);
        let resource = &conversation.resource;
        let attempt = || async {
            let reply = self
                .api
                .send(
                    &resource.gateway,
                    &start,
                    OFFER_TIMEOUT + Duration::from_secs(2),
                )
                .await?;
            // A non-streamed start must carry the answer: an empty reply is an error.
            if !start.stream_response && reply.payload.is_none() {
                return Err(SendFailure::EmptyReply);
            }
            Ok(reply)
        };
        offer_with_retry(tunables, recorder, attempt)
            .await
            .map_err(|(failure, attempts)| CoreError::OfferFailed {
                gateway: resource.gateway.clone(),
                resource: resource.name.clone(),
                code: failure.code(),
                message: failure.message(),
                attempts,
            })
    }

    /// Phase 7: the answer, applied: inline in the reply when the gateway put it there (it
    /// always does; a streamed start's answer is streamed too), else streamed on the socket.
    async fn receive_answer(
        &self,
        conversation: &Conversation,
        tube: &ClientTube,
        reply: sallyport_protocol::ClientReply,
        trickle: bool,
        signal: &mut Signal,
        recorder: &Recorder,
    ) -> Result<Option<Connection>> {
        let (answer, open_first) = match reply.payload {
            Some(payload) => {
                let body = open_answer_body(&conversation.keys, &payload)?;
                (body.answer, body.open_first)
            }
            None if !trickle => {
                return Err(CoreError::Router {
                    status: 200,
                    code: Code::EmptyReply,
                    message: "the gateway's reply carried no answer".into(),
                })
            }
            _ => (
                signal.answer(&conversation.keys, OFFER_TIMEOUT).await?,
                false,
            ),
        };
        // Before the answer is applied: the gateway may say connection 1 is open as soon as
        // the channel is, and through the router before that.
        let first = match open_first && conversation.open_first {
            true => Some(tube.adopt_first().await?),
            false => None,
        };
        tube.apply_answer(&answer).await?;
        recorder.mark(names::ANSWER_RECEIVED);
        Ok(first)
    }

    /// Phase 8: ICE, DTLS, SCTP and the channel, each stamped when its layer came up;
    /// event-driven, or polled as the legacy design did.
    async fn connect_data_plane(
        &self,
        tube: &ClientTube,
        tunables: &Tunables,
        recorder: &Recorder,
    ) -> Result<()> {
        for (milestone, name) in [
            (Milestone::IceConnected, names::ICE_CONNECTED),
            (Milestone::DtlsConnected, names::DTLS_CONNECTED),
            (Milestone::SctpConnected, names::SCTP_CONNECTED),
            (Milestone::ChannelOpen, names::CHANNEL_OPEN),
        ] {
            let at = if tunables.poll_state {
                tube.poll_reached(
                    milestone,
                    tunables.webrtc_connect_timeout,
                    tunables.webrtc_poll,
                )
                .await?
            } else {
                tube.reached(milestone, tunables.webrtc_connect_timeout)
                    .await?
            };
            recorder.mark_at(name, at);
        }
        // Which candidate pair carries the tube (host, srflx, prflx or relay on each side).
        recorder.mark_with(names::WEBRTC_DATA_PLANE_CONNECTED, None, tube.status().path);
        Ok(())
    }

    /// Phase 9a: the local listener (bound in phase 1) is ready for the client.
    fn local_listener_ready(&self, listener: &TcpListener, recorder: &Recorder) -> Result<u16> {
        let port = listener.local_addr()?.port();
        recorder.mark_with(
            names::LOCAL_LISTENER_READY,
            None,
            Some(format!("127.0.0.1:{port}")),
        );
        Ok(port)
    }

    /// Phase 9b: a first connection through the tube, which proves the target reachable and
    /// is handed to the client's first connection. With `open_first` the gateway opened it
    /// at `start`, and usually said so through the router before the channel opened.
    async fn connect_target(
        &self,
        tube: &ClientTube,
        opened_at_start: Option<Connection>,
        tunables: &Tunables,
        recorder: &Recorder,
    ) -> Result<Connection> {
        if !tunables.open_connection_delay.is_zero() {
            tokio::time::sleep(tunables.open_connection_delay).await;
        }
        let first = match opened_at_start {
            Some(first) => tube.until_opened(first, TARGET_TIMEOUT).await?,
            None => tube.open_connection(TARGET_TIMEOUT).await?,
        };
        recorder.mark(names::TARGET_CONNECTED);
        Ok(first)
    }

    /// Phase 9c: the session, and the native client started against its port.
    #[allow(clippy::too_many_arguments)]
    fn start_session(
        &self,
        plan: Plan,
        conversation: &Conversation,
        tube: &Arc<ClientTube>,
        port: u16,
        first: Connection,
        background: tokio::task::JoinSet<()>,
        recorder: &Recorder,
    ) -> Result<Session> {
        let resource = &plan.resource;
        let kubeconfig = if resource.protocol == "kubernetes" {
            Some(native_client::write_kubeconfig(
                &self.state_dir,
                &resource.name,
                port,
            )?)
        } else {
            None
        };
        let command = plan
            .client
            .as_ref()
            .map(|(template, program)| {
                native_client::expand(
                    template,
                    program,
                    port,
                    &resource.name,
                    kubeconfig.as_deref(),
                )
            })
            .transpose()?;
        let session = Session::start(SessionParts {
            launch_id: recorder.launch_id().to_owned(),
            resource: resource.clone(),
            conversation_id: conversation.id.clone(),
            keys: conversation.keys.clone(),
            api: self.api.clone(),
            tube: tube.clone(),
            listener: plan.listener,
            first_connection: first,
            first_connection_at: std::time::Instant::now(),
            command,
            background,
            recorder: recorder.clone(),
        })?;
        if let Some(command) = session.client_command() {
            recorder.mark_with(names::CLIENT_SPAWNED, None, Some(command.to_owned()));
        }
        Ok(session)
    }

    /// The resource from the cache (refreshed in the background) or from the router, and
    /// which checkpoint says so.
    async fn find_resource(&self, name: &str) -> Result<(ResourceInfo, &'static str)> {
        if let Some(info) = self.cache.get_fresh(name) {
            let api = self.api.clone();
            let cache = self.cache.clone();
            tokio::spawn(async move {
                if let Ok(list) = api.resources().await {
                    cache.store_all(&list);
                }
            });
            return Ok((info, names::LAUNCH_CACHE_HIT));
        }
        let list = self.api.resources().await?;
        self.cache.store_all(&list);
        let info = list
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| CoreError::UnknownResource(name.to_owned()))?;
        Ok((info, names::RESOURCE_RESOLVED))
    }

    async fn bind_local(&self, resource: &str, explicit: Option<u16>) -> Result<TcpListener> {
        // Port 0: any free port, this once (not remembered).
        if explicit == Some(0) {
            return Ok(TcpListener::bind(("127.0.0.1", 0)).await?);
        }
        if let Some(port) = explicit {
            let listener =
                TcpListener::bind(("127.0.0.1", port))
                    .await
                    .map_err(|e| CoreError::PortTaken {
                        port,
                        message: e.to_string(),
                    })?;
            let _ = self.ports.remember(resource, port);
            return Ok(listener);
        }
        if let Some(port) = self.ports.get(resource) {
            // The sticky port; taken means a clear error, never a silent other port.
            return TcpListener::bind(("127.0.0.1", port))
                .await
                .map_err(|e| CoreError::PortTaken {
                    port,
                    message: format!("{e} (it is this resource's remembered port; pass --port to choose another)"),
                });
        }
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let _ = self.ports.remember(resource, port);
        Ok(listener)
    }
}

/// Phase 6's loop: attempt; after a transient failure, wait the catch-up delay and attempt
/// again, up to the profile's number of attempts. Each attempt and wait is a checkpoint.
async fn offer_with_retry<T, F, Fut>(
    tunables: &Tunables,
    recorder: &Recorder,
    mut attempt_once: F,
) -> std::result::Result<T, (SendFailure, u32)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, SendFailure>>,
{
    let mut attempt = 1;
    loop {
        recorder.mark_with(
            &format!("{}{attempt}", names::GATEWAY_OFFER_HTTP_ATTEMPT_PREFIX),
            Some(attempt),
            None,
        );
        let failure = match attempt_once().await {
            Ok(reply) => {
                recorder.mark(names::GATEWAY_OFFER_HTTP_DONE);
                return Ok(reply);
            }
            Err(failure) => failure,
        };
        if !failure.is_transient() || attempt >= tunables.offer_max_attempts {
            return Err((failure, attempt));
        }
        let reason = format!("{}: {}", failure.code(), failure.message());
        tracing::warn!(attempt, %reason, "offer failed transiently; retrying after catch-up");
        recorder.mark_with(
            names::GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_START,
            Some(attempt),
            Some(reason),
        );
        tokio::time::sleep(tunables.retry_catchup()).await;
        recorder.mark_with(
            names::GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_DONE,
            Some(attempt),
            None,
        );
        attempt += 1;
    }
}

/// What every phase after the offer needs to talk to the gateway, and what a failed launch
/// must undo.
#[derive(Clone)]
struct Conversation {
    api: RouterApi,
    id: String,
    keys: ConversationKeys,
    resource: ResourceInfo,
    /// The largest datagram our tube can take, told to the gateway in the offer.
    receive_limit: usize,
    /// Ask the gateway to open connection 1 at `start` ([`Tunables::open_first`]).
    open_first: bool,
}

impl Conversation {
    fn new(api: RouterApi, plan: &Plan, tube: &TubeConfig, tunables: &Tunables) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            keys: ConversationKeys::for_client(&plan.gateway_key, &id),
            api,
            id,
            resource: plan.resource.clone(),
            receive_limit: tube.receive_limit(),
            open_first: tunables.open_first,
        }
    }

    fn message(
        &self,
        kind: MessageKind,
        stream_response: bool,
        timeout: Duration,
        payload: SealedPayload,
    ) -> ClientMessage {
        ClientMessage {
            v: PROTOCOL_VERSION,
            conversation_id: self.id.clone(),
            resource: self.resource.name.clone(),
            kind,
            stream_response,
            timeout_ms: Some(timeout.as_millis() as u64),
            payload,
        }
    }

    fn start_message(&self, offer: SessionDescription, trickle: bool) -> ClientMessage {
        let body = StartBody {
            offer,
            resource: self.resource.name.clone(),
            max_datagram: Some(self.receive_limit as u32),
            open_first: self.open_first,
        };
        let payload = self.keys.seal_to_gateway(&body);
        self.message(MessageKind::Start, trickle, OFFER_TIMEOUT, payload)
    }

    fn open_answer(&self, payload: &SealedPayload) -> Result<SessionDescription> {
        open_answer(&self.keys, payload)
    }

    /// Without a socket the gateway's later candidates cannot reach us: ask it for its answer
    /// again, inline (the same `start`, not streamed: the gateway waits for its gathering and
    /// answers from the peer it has), and check the candidates that answer carries.
    async fn gathered_inline(self, tube: Arc<ClientTube>, offer: SessionDescription) {
        let start = self.start_message(offer, false);
        let answer = match self
            .api
            .send(
                &self.resource.gateway,
                &start,
                OFFER_TIMEOUT + Duration::from_secs(2),
            )
            .await
        {
            Ok(reply) => reply.payload.map(|payload| self.open_answer(&payload)),
            Err(e) => {
                tracing::warn!(code = %e.code(), "could not ask for the gateway's candidates");
                return;
            }
        };
        match answer {
            Some(Ok(answer)) => tube.add_candidates_of(&answer).await,
            Some(Err(e)) => tracing::warn!(error = %e, "the gateway's answer again did not open"),
            None => tracing::warn!("the gateway's answer again was empty"),
        }
    }

    /// Send our candidates to the gateway.
    async fn trickle(&self, candidates: Vec<IceCandidate>) {
        let body = CandidatesBody {
            candidates,
            done: false,
        };
        let payload = self.keys.seal_to_gateway(&body);
        let message = self.message(
            MessageKind::Candidates,
            true,
            Duration::from_secs(5),
            payload,
        );
        if let Err(e) = self
            .api
            .send(&self.resource.gateway, &message, Duration::from_secs(7))
            .await
        {
            tracing::warn!(code = %e.code(), "could not trickle candidates");
        }
    }

    /// Wait `backoff` (then double it) and subscribe to the conversation on a new socket.
    async fn listen_again(&self, backoff: &mut Duration) -> mpsc::UnboundedReceiver<SignalEvent> {
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(RESUBSCRIBE_MAX);
        self.api.listen(&self.id)
    }

    /// Undo a launch that failed after its tube existed: close the tube and tell the gateway,
    /// both at once (telling the gateway is best effort: it may be why the launch failed).
    async fn abandon(&self, tube: &ClientTube) {
        tokio::join!(
            tube.close(),
            self.api.close_conversation(
                &self.resource.gateway,
                &self.resource.name,
                &self.id,
                &self.keys
            ),
        );
    }
}

/// What phase 1 settled for the rest of the launch.
struct Plan {
    resource: ResourceInfo,
    gateway_key: GatewayPublicKey,
    client: Option<(String, std::path::PathBuf)>,
    listener: TcpListener,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Registration {
    Acknowledged,
    /// No acknowledgement within the window.
    TimedOut,
    /// The WebSocket failed before registering.
    Lost,
    /// The router answered the subscription with an error.
    Refused {
        code: Code,
        message: String,
    },
}

/// The router WebSocket of one launch, and what arrived on it before anyone asked.
struct Signal {
    events: mpsc::UnboundedReceiver<SignalEvent>,
    early: Vec<SignalEvent>,
}

impl Signal {
    fn new(events: mpsc::UnboundedReceiver<SignalEvent>) -> Self {
        Self {
            events,
            early: Vec::new(),
        }
    }

    /// Wait for the router's `subscribed`, keeping anything else that arrives meanwhile (and
    /// taking it from what came earlier, while the streamed answer was awaited).
    async fn registered(&mut self, timeout: Duration) -> Registration {
        let settles = |e: &SignalEvent| {
            matches!(
                e,
                SignalEvent::Registered | SignalEvent::Error { .. } | SignalEvent::Lost(_)
            )
        };
        if let Some(i) = self.early.iter().position(settles) {
            return match self.early.remove(i) {
                SignalEvent::Error { code, message } => Registration::Refused { code, message },
                SignalEvent::Lost(_) => Registration::Lost,
                _ => Registration::Acknowledged,
            };
        }
        let wait = async {
            while let Some(event) = self.events.recv().await {
                match event {
                    SignalEvent::Registered => return Registration::Acknowledged,
                    SignalEvent::Error { code, message } => {
                        return Registration::Refused { code, message }
                    }
                    SignalEvent::Lost(reason) => {
                        tracing::warn!(%reason, "router websocket lost before registration");
                        return Registration::Lost;
                    }
                    other => self.early.push(other),
                }
            }
            Registration::Lost
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or(Registration::TimedOut)
    }

    /// Wait for the streamed answer; candidates arriving first are kept for later.
    async fn answer(
        &mut self,
        keys: &ConversationKeys,
        timeout: Duration,
    ) -> Result<SessionDescription> {
        let streamed_answer = |e: &SignalEvent| {
            matches!(
                e,
                SignalEvent::Message {
                    kind: StreamKind::Answer,
                    ..
                }
            )
        };
        if let Some(i) = self.early.iter().position(streamed_answer) {
            if let SignalEvent::Message { payload, .. } = self.early.remove(i) {
                return open_answer(keys, &payload);
            }
        }
        let wait = async {
            while let Some(event) = self.events.recv().await {
                match event {
                    SignalEvent::Message {
                        kind: StreamKind::Answer,
                        payload,
                    } => return open_answer(keys, &payload),
                    SignalEvent::Message {
                        kind: StreamKind::Closed,
                        payload,
                    } => {
                        return Err(
                            match keys.open_from_gateway::<sallyport_protocol::CloseBody>(&payload)
                            {
                                Ok(body) => CoreError::TubeClosed(body.reason),
                                Err(e) => CoreError::Seal(e.to_string()),
                            },
                        )
                    }
                    SignalEvent::Lost(reason) => {
                        return Err(CoreError::RouterUnreachable {
                            url: "websocket".into(),
                            message: reason,
                        })
                    }
                    SignalEvent::Error { code, message } => {
                        return Err(CoreError::Router {
                            status: 0,
                            code,
                            message,
                        })
                    }
                    other => self.early.push(other),
                }
            }
            Err(CoreError::RouterUnreachable {
                url: "websocket".into(),
                message: "closed before the answer".into(),
            })
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| CoreError::Timeout(timeout, "the gateway's answer"))?
    }
}

fn open_answer(keys: &ConversationKeys, payload: &SealedPayload) -> Result<SessionDescription> {
    open_answer_body(keys, payload).map(|b| b.answer)
}

fn open_answer_body(keys: &ConversationKeys, payload: &SealedPayload) -> Result<AnswerBody> {
    keys.open_from_gateway::<AnswerBody>(payload)
        .map_err(|e| CoreError::Seal(e.to_string()))
}

/// How long the gateway has to answer over the tube once the router reports it gone.
const GATEWAY_CHECK: Duration = Duration::from_secs(1);
/// The first wait before subscribing again after the router socket drops; it doubles up to
/// `RESUBSCRIBE_MAX` while the router stays away, and starts over once subscribed.
const RESUBSCRIBE_FIRST: Duration = Duration::from_millis(250);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(5);

/// Our candidates out (when trickling), from the moment the gateway has our offer: they go
/// by HTTP and need no socket. The tasks belong to the session (dropping the set aborts them).
fn trickle_out(
    conversation: &Conversation,
    tube: &ClientTube,
    trickle: bool,
) -> tokio::task::JoinSet<()> {
    let mut tasks = tokio::task::JoinSet::new();
    if let (true, Some(mut local)) = (trickle, tube.take_local_candidates()) {
        // Outbound: batch what is already gathered, then one message per new candidate.
        let outbound = conversation.clone();
        tasks.spawn(async move {
            while let Some(first) = local.recv().await {
                let mut candidates = vec![first];
                while let Ok(more) = local.try_recv() {
                    candidates.push(more);
                }
                outbound.trickle(candidates).await;
            }
        });
    }
    tasks
}

/// The router socket for the rest of the session, in `tasks`: the gateway's candidates in,
/// and the router's word that the gateway is gone (checked over the tube).
fn watch_signal(
    conversation: &Conversation,
    tube: Arc<ClientTube>,
    signal: Signal,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let keys = conversation.keys.clone();
    let resubscribe = conversation.clone();
    let Signal { mut events, early } = signal;
    tasks.spawn(async move {
        let apply = |payload: SealedPayload| {
            let tube = tube.clone();
            let keys = keys.clone();
            async move {
                match keys.open_from_gateway::<CandidatesBody>(&payload) {
                    Ok(body) => tube.add_remote_candidates(&body.candidates).await,
                    Err(e) => tracing::warn!(error = %e, "rejected a gateway candidate message"),
                }
            }
        };
        let mut early = early.into_iter();
        let mut backoff = RESUBSCRIBE_FIRST;
        loop {
            let event = match early.next() {
                Some(event) => event,
                None => match events.recv().await {
                    Some(event) => event,
                    None => break,
                },
            };
            match event {
                SignalEvent::Message {
                    kind: StreamKind::Candidates,
                    payload,
                } => apply(payload).await,
                SignalEvent::Message {
                    kind: StreamKind::Opened,
                    payload,
                } => match keys.open_from_gateway::<OpenedBody>(&payload) {
                    Ok(body) if body.conn == FIRST_CONNECTION => tube.first_heard(body.refused),
                    Ok(body) => tracing::warn!(conn = body.conn, "ignored an opened message"),
                    Err(e) => tracing::warn!(error = %e, "rejected a gateway opened message"),
                },
                SignalEvent::GatewayLost => tube.check_gateway(GATEWAY_CHECK).await,
                // The router socket dropped: the tube does not depend on it, but an ICE
                // restart, the gateway's candidates and `gateway_lost` do. The router keeps
                // the conversation for us; subscribe again, backing off while it is away.
                SignalEvent::Lost(why) => {
                    tracing::warn!(%why, "lost the router websocket; subscribing again");
                    events = resubscribe.listen_again(&mut backoff).await;
                }
                // The gateway ended the conversation (the tube reports why).
                SignalEvent::Message {
                    kind: StreamKind::Closed,
                    ..
                } => break,
                SignalEvent::Registered => backoff = RESUBSCRIBE_FIRST,
                _ => {}
            }
        }
    });
}

/// The pipeline's waits and branches on tokio's paused clock, against in-memory signalling:
/// no socket, no real time, every wait exact.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunables::Profile;
    use sallyport_protocol::{CloseBody, CloseReason, Direction, GatewayKeyPair};
    use tokio::time::Instant;

    fn launcher() -> Launcher {
        let dir =
            std::env::temp_dir().join(format!("sallyport-pipeline-{}", crate::new_launch_id()));
        Launcher::new(
            ClientProfile::new("http://127.0.0.1:9"),
            "token",
            StickyPorts::new(dir.join("ports.json")),
        )
        .unwrap()
    }

    fn recorder() -> Recorder {
        Recorder::new(CheckpointBus::new(), "launch", "res", false)
    }

    fn phases(recorder: &Recorder) -> Vec<String> {
        recorder
            .checkpoints()
            .into_iter()
            .map(|c| c.phase)
            .collect()
    }

    /// A signal fed by hand: the test plays the router's WebSocket.
    fn signal() -> (mpsc::UnboundedSender<SignalEvent>, Signal) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Signal::new(rx))
    }

    fn fast() -> LaunchRequest {
        LaunchRequest::new("res", Tunables::for_profile(Profile::Fast))
    }

    #[tokio::test(start_paused = true)]
    async fn an_acknowledged_registration_ends_the_wait_at_once() {
        let (tx, mut signal) = signal();
        tx.send(SignalEvent::Registered).unwrap();
        let recorder = recorder();
        let started = Instant::now();
        let trickle = launcher()
            .register(&fast(), &mut signal, &recorder)
            .await
            .unwrap();
        assert!(trickle);
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(phases(&recorder), [names::WEBSOCKET_REGISTERED]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_an_ack_the_registration_waits_the_whole_window() {
        let (_tx, mut signal) = signal();
        let request = fast();
        let recorder = recorder();
        let started = Instant::now();
        let trickle = launcher()
            .register(&request, &mut signal, &recorder)
            .await
            .unwrap();
        assert!(trickle, "the answer is still streamed");
        assert_eq!(started.elapsed(), request.tunables.websocket_backend_delay);
        let checkpoint = &recorder.checkpoints()[0];
        assert_eq!(checkpoint.phase, names::WEBSOCKET_READY_BACKEND_DELAY_DONE);
        assert_eq!(checkpoint.detail.as_deref(), Some("no ack from the router"));
    }

    /// `fast` as it was before it sent its offer at once: registration first.
    fn registering_first() -> LaunchRequest {
        let mut request = fast();
        request.tunables.offer_at_once = false;
        request
    }

    #[tokio::test(start_paused = true)]
    async fn a_socket_lost_before_registration_asks_for_an_inline_answer() {
        let (tx, mut signal) = signal();
        tx.send(SignalEvent::Lost("reset".into())).unwrap();
        let recorder = recorder();
        let started = Instant::now();
        let trickle = launcher()
            .register(&registering_first(), &mut signal, &recorder)
            .await
            .unwrap();
        assert!(!trickle, "no socket, no streamed answer");
        assert!(
            matches!(signal.early.as_slice(), [SignalEvent::Lost(_)]),
            "the session subscribes again later"
        );
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "no wait for a lost socket"
        );
        let checkpoint = &recorder.checkpoints()[0];
        assert_eq!(checkpoint.phase, names::WEBSOCKET_READY_BACKEND_DELAY_DONE);
        assert!(checkpoint.detail.as_deref().unwrap().contains("lost"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_socket_lost_after_the_answer_is_no_socket_and_says_what_happens_next() {
        let (tx, mut signal) = signal();
        tx.send(SignalEvent::Lost("reset".into())).unwrap();
        let recorder = recorder();
        let socket = launcher()
            .register(&fast(), &mut signal, &recorder)
            .await
            .unwrap();
        assert!(!socket, "the launch goes on without a socket for now");
        assert!(
            matches!(signal.early.as_slice(), [SignalEvent::Lost(_)]),
            "the session subscribes again later"
        );
        let checkpoint = &recorder.checkpoints()[0];
        assert_eq!(checkpoint.phase, names::WEBSOCKET_READY_BACKEND_DELAY_DONE);
        assert!(checkpoint.detail.as_deref().unwrap().contains("inline"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_registration_that_came_while_the_answer_was_awaited_is_not_waited_for() {
        let (client, gateway) = keys();
        let (tx, mut signal) = signal();
        tx.send(SignalEvent::Registered).unwrap();
        tx.send(answer(&gateway)).unwrap();
        signal.answer(&client, OFFER_TIMEOUT).await.unwrap();
        let started = Instant::now();
        assert_eq!(
            signal.registered(Duration::from_secs(1)).await,
            Registration::Acknowledged
        );
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_subscription_fails_the_launch_with_the_router_s_code() {
        let (tx, mut signal) = signal();
        tx.send(SignalEvent::Error {
            code: Code::Forbidden,
            message: "not yours".into(),
        })
        .unwrap();
        let err = launcher()
            .register(&fast(), &mut signal, &recorder())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Forbidden);
    }

    #[tokio::test(start_paused = true)]
    async fn the_legacy_profile_sleeps_its_window_whatever_the_router_says() {
        let (tx, mut signal) = signal();
        tx.send(SignalEvent::Registered).unwrap();
        let request = LaunchRequest::new("res", Tunables::for_profile(Profile::Legacy));
        let recorder = recorder();
        let started = Instant::now();
        launcher()
            .register(&request, &mut signal, &recorder)
            .await
            .unwrap();
        assert_eq!(started.elapsed(), request.tunables.websocket_backend_delay);
        assert_eq!(
            phases(&recorder),
            [names::WEBSOCKET_READY_BACKEND_DELAY_DONE]
        );
    }

    /// Keys of both ends of one conversation, as a client and its gateway derive them.
    fn keys() -> (ConversationKeys, ConversationKeys) {
        let gateway = GatewayKeyPair::generate();
        let client = ConversationKeys::for_client(&gateway.public(), "conversation-1");
        let start = client.seal(Direction::ClientToGateway, "start", b"{}");
        let at_gateway = ConversationKeys::for_gateway(&gateway, "conversation-1", &start).unwrap();
        (client, at_gateway)
    }

    fn answer(gateway: &ConversationKeys) -> SignalEvent {
        let body = AnswerBody {
            answer: SessionDescription {
                kind: "answer".into(),
                sdp: "v=0".into(),
            },
            open_first: false,
        };
        SignalEvent::Message {
            kind: StreamKind::Answer,
            payload: gateway.seal_to_client(&body),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_that_came_with_the_registration_is_kept() {
        let (client, gateway) = keys();
        let (tx, mut signal) = signal();
        tx.send(answer(&gateway)).unwrap();
        tx.send(SignalEvent::Registered).unwrap();
        assert_eq!(
            signal.registered(Duration::from_secs(1)).await,
            Registration::Acknowledged
        );
        let sdp = signal.answer(&client, OFFER_TIMEOUT).await.unwrap();
        assert_eq!(sdp.sdp, "v=0");
    }

    #[tokio::test(start_paused = true)]
    async fn a_gateway_that_closes_instead_of_answering_says_why() {
        let (client, gateway) = keys();
        let (tx, mut signal) = signal();
        let closed = CloseBody {
            reason: CloseReason::SessionLimit,
        };
        tx.send(SignalEvent::Message {
            kind: StreamKind::Closed,
            payload: gateway.seal_to_client(&closed),
        })
        .unwrap();
        let err = signal.answer(&client, OFFER_TIMEOUT).await.unwrap_err();
        assert_eq!(err.code(), Code::SessionLimit);
    }

    #[tokio::test(start_paused = true)]
    async fn a_socket_lost_while_waiting_for_the_answer_is_the_router_unreachable() {
        let (client, _) = keys();
        let (tx, mut signal) = signal();
        tx.send(SignalEvent::Lost("reset".into())).unwrap();
        let err = signal.answer(&client, OFFER_TIMEOUT).await.unwrap_err();
        assert_eq!(err.code(), Code::RouterUnreachable);
        // A socket that simply ends says the same.
        let (tx, mut signal) = self::signal();
        drop(tx);
        let err = signal.answer(&client, OFFER_TIMEOUT).await.unwrap_err();
        assert_eq!(err.code(), Code::RouterUnreachable);
    }

    #[tokio::test(start_paused = true)]
    async fn no_answer_times_out_after_the_offer_timeout() {
        let (client, _) = keys();
        let (_tx, mut signal) = signal();
        let started = Instant::now();
        let err = signal.answer(&client, OFFER_TIMEOUT).await.unwrap_err();
        assert_eq!(err.code(), Code::Timeout);
        assert_eq!(started.elapsed(), OFFER_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_sealed_with_other_keys_is_refused() {
        let (client, _) = keys();
        let (_, stranger) = keys();
        let (tx, mut signal) = signal();
        tx.send(answer(&stranger)).unwrap();
        let err = signal.answer(&client, OFFER_TIMEOUT).await.unwrap_err();
        assert_eq!(err.code(), Code::SealRejected);
    }

    fn down() -> SendFailure {
        SendFailure::Http {
            status: 503,
            code: Code::ControllerDown,
            message: "gateway \"g\" is not connected".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_waits_the_catch_up_and_tries_again() {
        let tunables = Tunables::for_profile(Profile::Fast);
        let recorder = recorder();
        let mut outcomes = vec![Ok(7), Err(down())];
        let started = Instant::now();
        let reply = offer_with_retry(&tunables, &recorder, || {
            let next = outcomes.pop().unwrap();
            async move { next }
        })
        .await
        .unwrap();
        assert_eq!(reply, 7);
        assert_eq!(started.elapsed(), tunables.retry_catchup());
        assert_eq!(
            phases(&recorder),
            [
                "gateway_offer_http_attempt_1",
                names::GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_START,
                names::GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_DONE,
                "gateway_offer_http_attempt_2",
                names::GATEWAY_OFFER_HTTP_DONE,
            ]
        );
        let wait = &recorder.checkpoints()[1];
        assert_eq!(wait.attempt, Some(1));
        assert!(wait
            .detail
            .as_deref()
            .unwrap()
            .starts_with("controller_down: "));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lasting_failure_is_not_retried() {
        let tunables = Tunables::for_profile(Profile::Fast);
        let recorder = recorder();
        let refused = SendFailure::Http {
            status: 401,
            code: Code::Unauthorized,
            message: "no".into(),
        };
        let started = Instant::now();
        let (failure, attempts) = offer_with_retry(&tunables, &recorder, || {
            let refused = refused.clone();
            async move { Err::<(), _>(refused) }
        })
        .await
        .unwrap_err();
        assert_eq!((failure.code(), attempts), (Code::Unauthorized, 1));
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(phases(&recorder), ["gateway_offer_http_attempt_1"]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_at_the_profile_s_attempts() {
        let tunables = Tunables::for_profile(Profile::Fast);
        let recorder = recorder();
        let (failure, attempts) =
            offer_with_retry(&tunables, &recorder, || async { Err::<(), _>(down()) })
                .await
                .unwrap_err();
        assert_eq!(failure.code(), Code::ControllerDown);
        assert_eq!(attempts, tunables.offer_max_attempts);
        let catchups = phases(&recorder)
            .iter()
            .filter(|p| *p == names::GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_START)
            .count();
        assert_eq!(catchups as u32, tunables.offer_max_attempts - 1);
    }
}
