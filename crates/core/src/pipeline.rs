//! The launch pipeline: every phase of a launch, in order, each emitting its checkpoint.
//!
//!  1. resolve the resource and its gateway      `resource_resolved` | `launch_cache_hit`
//!  2. start the router WebSocket early          `websocket_listener_started_early`
//!  3. create the tube (peer + offer)            `create_tube_ok`
//!  4. wait for the router's registration        `websocket_registered` | `websocket_ready_backend_delay_done`
//!  5. optional pre-offer sleep                  `pre_offer_sleep_done`
//!  6. send the offer, with retry                `gateway_offer_http_attempt_N`, `..._catchup_delay_start/_done`, `gateway_offer_http_done`
//!  7. the answer arrives                        `answer_received`
//!  8. ICE, DTLS and SCTP complete               `webrtc_data_plane_connected`
//!  9. local listener, target, native client     `local_listener_ready`, `target_connected`, `client_spawned`
//!     summary                                   `ready`

use std::sync::Arc;
use std::time::Duration;

use sallyport_protocol::{
    AnswerBody, CandidatesBody, ClientMessage, ConversationKeys, Direction, MessageKind,
    ResourceInfo, StartBody, StreamKind, PROTOCOL_VERSION,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::cache::ResourceCache;
use crate::checkpoint::{names, CheckpointBus, Recorder};
use crate::error::{CoreError, Result};
use crate::native_client::{self, ClientChoice};
use crate::profile::{ClientProfile, StickyPorts};
use crate::router_api::{RouterApi, SendFailure, SignalEvent};
use crate::session::{Session, SessionParts};
use crate::tube::{ClientTube, Milestone, TubeConfig};
use crate::tunables::Tunables;

/// How long the router may take to answer one offer attempt.
const OFFER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the gateway may take to reach the target (its own connect timeout is 5 s).
const TARGET_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a resource listing stays fresh in the cache.
pub const CACHE_TTL: Duration = Duration::from_secs(300);

/// What to launch and how.
#[derive(Debug, Clone)]
pub struct LaunchRequest {
    pub resource: String,
    /// Explicit local port; otherwise the sticky port of the resource, else any free port.
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
            api: RouterApi::new(&profile.router_url, token)?,
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

    pub fn cache(&self) -> &ResourceCache {
        &self.cache
    }

    /// The resources this token may launch, refreshing the cache.
    pub async fn resources(&self) -> Result<Vec<ResourceInfo>> {
        let list = self.api.resources().await?;
        self.cache.store_all(&list);
        Ok(list)
    }

    /// Run one launch. On failure the `failed` checkpoint carries the error code, and the
    /// cache entry the launch used is dropped.
    pub async fn launch(&self, request: LaunchRequest) -> Result<Session> {
        let launch_id = request
            .launch_id
            .clone()
            .unwrap_or_else(crate::new_launch_id);
        let recorder = Recorder::new(
            self.bus.clone(),
            &launch_id,
            &request.resource,
            request.tunables.connect_timing,
        );
        let span = tracing::info_span!("launch", id = %launch_id, resource = %request.resource, profile = %request.tunables.profile);
        let result = self.run(&request, &recorder).instrument(span).await;
        if let Err(e) = &result {
            self.cache.drop_entry(&request.resource);
            recorder.mark_with(names::FAILED, None, Some(format!("{}: {e}", e.code())));
        }
        result
    }

    async fn run(&self, request: &LaunchRequest, recorder: &Recorder) -> Result<Session> {
        let tunables = &request.tunables;

        // 1. Resolve the resource and its gateway.
        let resource = self.resolve(&request.resource, recorder).await?;
        let gateway_key = self.profile.gateway_key(&resource.gateway)?;
        // A missing native client is an error before any tunnel is opened.
        let client = native_client::prepare(&request.client, &resource.protocol, &resource.name)?;
        // So is a taken local port: bind now, report it ready in its place in the pipeline.
        let listener = self.bind_local(&resource.name, request.port).await?;

        let conversation_id = uuid::Uuid::new_v4().simple().to_string();
        let keys = ConversationKeys::for_client(&gateway_key, &conversation_id);

        // 2. The router WebSocket, started before the tube so its handshake and registration
        //    run while the peer connection is being built.
        let mut signal = None;
        if tunables.listener_early {
            signal = Some(self.api.listen(&conversation_id));
            recorder.mark(names::WEBSOCKET_LISTENER_STARTED_EARLY);
        }

        // 3. Create the tube.
        let (tube, offer) = ClientTube::create(&self.tube_config).await?;
        let tube = Arc::new(tube);
        recorder.mark(names::CREATE_TUBE_OK);
        if signal.is_none() {
            signal = Some(self.api.listen(&conversation_id));
            recorder.mark(names::WEBSOCKET_LISTENER_STARTED);
        }
        let mut signal = signal.expect("listener started above");
        // From here on, a failure must not leave the tube (or the gateway's side) behind.
        let cleanup = (
            tube.clone(),
            conversation_id.clone(),
            keys.clone(),
            resource.clone(),
        );
        let outcome = async move {
            // 4. Registration: the router's ack, or the fixed window.
            let mut early_events = Vec::new();
            let registration = if tunables.use_ack {
                wait_registered(
                    &mut signal,
                    tunables.websocket_backend_delay,
                    &mut early_events,
                )
                .await
            } else {
                Registration::NotAsked
            };
            match &registration {
                Registration::Acknowledged => {
                    recorder.mark(names::WEBSOCKET_REGISTERED);
                }
                Registration::TimedOut => {
                    // No ack within the window: the window itself was the fallback sleep.
                    recorder.mark_with(
                        names::WEBSOCKET_READY_BACKEND_DELAY_DONE,
                        None,
                        Some("no ack from the router".into()),
                    );
                }
                Registration::Lost => {
                    // No socket to wait for: the answer will come inline instead.
                    recorder.mark_with(
                        names::WEBSOCKET_READY_BACKEND_DELAY_DONE,
                        None,
                        Some("router websocket lost; asking for an inline answer".into()),
                    );
                }
                Registration::NotAsked => {
                    tokio::time::sleep(tunables.websocket_backend_delay).await;
                    recorder.mark(names::WEBSOCKET_READY_BACKEND_DELAY_DONE);
                }
                Registration::Refused { code, message } => {
                    return Err(CoreError::Router {
                        status: 0,
                        code: code.clone(),
                        message: format!("the router refused the subscription: {message}"),
                    });
                }
            }
            // Without a WebSocket the answer cannot be streamed: ask for it inline instead.
            let trickle = request.trickle && registration != Registration::Lost;

            // 5. Optional pre-offer sleep.
            if !tunables.pre_offer.is_zero() {
                tokio::time::sleep(tunables.pre_offer).await;
            }
            recorder.mark(names::PRE_OFFER_SLEEP_DONE);

            // 6. The offer, with retry. Non-trickle offers carry every candidate.
            let offer = if trickle {
                offer
            } else {
                tube.complete_offer(Duration::from_secs(5)).await?
            };
            let start = ClientMessage {
                v: PROTOCOL_VERSION,
                conversation_id: conversation_id.clone(),
                resource: resource.name.clone(),
                kind: MessageKind::Start,
                stream_response: trickle,
                timeout_ms: Some(OFFER_TIMEOUT.as_millis() as u64),
                payload: keys.seal_json(
                    Direction::ClientToGateway,
                    MessageKind::Start.as_str(),
                    &StartBody {
                        offer,
                        resource: resource.name.clone(),
                    },
                ),
            };
            let reply = self
                .send_offer(&resource, &start, tunables, recorder)
                .await?;
            recorder.mark(names::GATEWAY_OFFER_HTTP_DONE);

            // 7. The answer: inline, or streamed on the WebSocket.
            let answer = match reply.payload {
                Some(payload) if !trickle => {
                    keys.open_json::<AnswerBody>(
                        Direction::GatewayToClient,
                        StreamKind::Answer.as_str(),
                        &payload,
                    )
                    .map_err(|e| CoreError::Seal(e.to_string()))?
                    .answer
                }
                _ if !trickle => {
                    return Err(CoreError::Router {
                        status: 200,
                        code: "empty_reply".into(),
                        message: "the gateway's reply carried no answer".into(),
                    })
                }
                _ => wait_answer(&mut signal, &keys, &mut early_events, OFFER_TIMEOUT).await?,
            };
            recorder.mark(names::ANSWER_RECEIVED);
            tube.apply_answer(&answer).await?;

            // Trickle: our candidates go out over HTTP, the gateway's come in on the WebSocket.
            // These tasks belong to the session (dropping the set on failure aborts them).
            let mut background = tokio::task::JoinSet::new();
            if trickle {
                spawn_trickle(
                    &mut background,
                    Trickle {
                        api: self.api.clone(),
                        tube: tube.clone(),
                        keys: keys.clone(),
                        resource: resource.clone(),
                        conversation_id: conversation_id.clone(),
                    },
                    signal,
                    early_events,
                );
            }

            // 8. ICE, DTLS and SCTP, layer by layer: event-driven, or polled as legacy did.
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
            recorder.mark(names::WEBRTC_DATA_PLANE_CONNECTED);

            // 9. The local listener, the first connection to the target, the native client.
            let port = listener.local_addr()?.port();
            recorder.mark_with(
                names::LOCAL_LISTENER_READY,
                None,
                Some(format!("127.0.0.1:{port}")),
            );
            if !tunables.open_connection_delay.is_zero() {
                tokio::time::sleep(tunables.open_connection_delay).await;
            }
            let first = tube.open_connection(TARGET_TIMEOUT).await?;
            recorder.mark(names::TARGET_CONNECTED);

            let kubeconfig = if resource.protocol == "kubernetes" {
                Some(native_client::write_kubeconfig(
                    &self.state_dir,
                    &resource.name,
                    port,
                )?)
            } else {
                None
            };
            let command = client
                .map(|(template, program)| {
                    native_client::expand(
                        &template,
                        &program,
                        port,
                        &resource.name,
                        kubeconfig.as_deref(),
                    )
                })
                .transpose()?;

            let session = Session::start(SessionParts {
                launch_id: recorder.launch_id().to_owned(),
                resource: resource.clone(),
                conversation_id,
                keys,
                api: self.api.clone(),
                tube,
                listener,
                first_connection: first,
                first_connection_at: std::time::Instant::now(),
                command,
                background,
            })?;
            if let Some(command) = session.client_command() {
                recorder.mark_with(names::CLIENT_SPAWNED, None, Some(command.to_owned()));
            }
            recorder.mark(names::READY);
            session.set_checkpoints(recorder.checkpoints());
            Ok(session)
        }
        .await;
        if outcome.is_err() {
            let (tube, conversation_id, keys, resource) = cleanup;
            self.abandon(&tube, &resource, &conversation_id, &keys)
                .await;
        }
        outcome
    }

    /// Undo a launch that failed after its tube existed: close the tube and tell the gateway.
    async fn abandon(
        &self,
        tube: &ClientTube,
        resource: &ResourceInfo,
        conversation_id: &str,
        keys: &ConversationKeys,
    ) {
        // Both at once; telling the gateway is best effort (it may be why the launch failed).
        tokio::join!(
            tube.close(),
            self.api
                .close_conversation(&resource.gateway, &resource.name, conversation_id, keys),
        );
    }

    async fn resolve(&self, name: &str, recorder: &Recorder) -> Result<ResourceInfo> {
        if let Some(info) = self.cache.get_fresh(name) {
            recorder.mark_with(names::LAUNCH_CACHE_HIT, None, Some(info.gateway.clone()));
            // Refresh in the background so the next launch sees changes.
            let api = self.api.clone();
            let cache = self.cache.clone();
            tokio::spawn(async move {
                if let Ok(list) = api.resources().await {
                    cache.store_all(&list);
                }
            });
            return Ok(info);
        }
        let list = self.api.resources().await?;
        self.cache.store_all(&list);
        let info = list
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| CoreError::UnknownResource(name.to_owned()))?;
        recorder.mark_with(names::RESOURCE_RESOLVED, None, Some(info.gateway.clone()));
        Ok(info)
    }

    async fn send_offer(
        &self,
        resource: &ResourceInfo,
        start: &ClientMessage,
        tunables: &Tunables,
        recorder: &Recorder,
    ) -> Result<sallyport_protocol::ClientReply> {
        let mut attempt = 1;
        loop {
            recorder.mark_with(
                &format!("{}{attempt}", names::GATEWAY_OFFER_HTTP_ATTEMPT_PREFIX),
                Some(attempt),
                None,
            );
            let outcome = self
                .api
                .send(
                    &resource.gateway,
                    start,
                    OFFER_TIMEOUT + Duration::from_secs(2),
                )
                .await
                .and_then(|reply| {
                    // A non-streamed start must carry the answer: an empty reply is an error.
                    if !start.stream_response && reply.payload.is_none() {
                        Err(SendFailure::EmptyReply)
                    } else {
                        Ok(reply)
                    }
                });
            let failure = match outcome {
                Ok(reply) => return Ok(reply),
                Err(failure) => failure,
            };
            if !failure.is_transient() || attempt >= tunables.offer_max_attempts {
                return Err(CoreError::OfferFailed {
                    gateway: resource.gateway.clone(),
                    resource: resource.name.clone(),
                    code: failure.code().to_owned(),
                    message: failure.message(),
                    attempts: attempt,
                });
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

    async fn bind_local(&self, resource: &str, explicit: Option<u16>) -> Result<TcpListener> {
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

#[derive(Debug, Clone, PartialEq, Eq)]
enum Registration {
    /// The profile does not wait for an acknowledgement.
    NotAsked,
    Acknowledged,
    /// No acknowledgement within the window.
    TimedOut,
    /// The WebSocket failed before registering.
    Lost,
    /// The router answered the subscription with an error.
    Refused {
        code: String,
        message: String,
    },
}

/// Wait for the router's `subscribed`, keeping anything else that arrives meanwhile.
async fn wait_registered(
    signal: &mut mpsc::UnboundedReceiver<SignalEvent>,
    timeout: Duration,
    early: &mut Vec<SignalEvent>,
) -> Registration {
    let wait = async {
        while let Some(event) = signal.recv().await {
            match event {
                SignalEvent::Registered => return Registration::Acknowledged,
                SignalEvent::Error { code, message } => {
                    return Registration::Refused { code, message }
                }
                SignalEvent::Lost(reason) => {
                    tracing::warn!(%reason, "router websocket lost before registration");
                    return Registration::Lost;
                }
                other => early.push(other),
            }
        }
        Registration::Lost
    };
    tokio::time::timeout(timeout, wait)
        .await
        .unwrap_or(Registration::TimedOut)
}

/// Wait for the streamed answer; candidates arriving first are kept for later.
async fn wait_answer(
    signal: &mut mpsc::UnboundedReceiver<SignalEvent>,
    keys: &ConversationKeys,
    early: &mut Vec<SignalEvent>,
    timeout: Duration,
) -> Result<sallyport_protocol::SessionDescription> {
    if let Some(i) = early.iter().position(|e| {
        matches!(
            e,
            SignalEvent::Message {
                kind: StreamKind::Answer,
                ..
            }
        )
    }) {
        if let SignalEvent::Message { payload, .. } = early.remove(i) {
            return open_answer(keys, &payload);
        }
    }
    let wait = async {
        while let Some(event) = signal.recv().await {
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
                        match keys.open_json::<sallyport_protocol::CloseBody>(
                            Direction::GatewayToClient,
                            StreamKind::Closed.as_str(),
                            &payload,
                        ) {
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
                other => early.push(other),
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

fn open_answer(
    keys: &ConversationKeys,
    payload: &sallyport_protocol::SealedPayload,
) -> Result<sallyport_protocol::SessionDescription> {
    keys.open_json::<AnswerBody>(
        Direction::GatewayToClient,
        StreamKind::Answer.as_str(),
        payload,
    )
    .map(|b| b.answer)
    .map_err(|e| CoreError::Seal(e.to_string()))
}

/// Trickle ICE for the rest of the tube's life: send our candidates, apply the gateway's.
/// What trickling needs to know about the conversation.
struct Trickle {
    api: RouterApi,
    tube: Arc<ClientTube>,
    keys: ConversationKeys,
    resource: ResourceInfo,
    conversation_id: String,
}

fn spawn_trickle(
    tasks: &mut tokio::task::JoinSet<()>,
    trickle: Trickle,
    mut signal: mpsc::UnboundedReceiver<SignalEvent>,
    early: Vec<SignalEvent>,
) {
    let Trickle {
        api,
        tube,
        keys,
        resource,
        conversation_id,
    } = trickle;
    let Some(mut local) = tube.take_local_candidates() else {
        return;
    };
    // Outbound: batch what is already gathered, then one message per new candidate.
    {
        let api = api.clone();
        let keys = keys.clone();
        let resource = resource.clone();
        tasks.spawn(async move {
            while let Some(first) = local.recv().await {
                let mut candidates = vec![first];
                while let Ok(more) = local.try_recv() {
                    candidates.push(more);
                }
                let message = ClientMessage {
                    v: PROTOCOL_VERSION,
                    conversation_id: conversation_id.clone(),
                    resource: resource.name.clone(),
                    kind: MessageKind::Candidates,
                    stream_response: true,
                    timeout_ms: Some(5_000),
                    payload: keys.seal_json(
                        Direction::ClientToGateway,
                        MessageKind::Candidates.as_str(),
                        &CandidatesBody {
                            candidates,
                            done: false,
                        },
                    ),
                };
                if let Err(e) = api
                    .send(&resource.gateway, &message, Duration::from_secs(7))
                    .await
                {
                    tracing::warn!(code = e.code(), "could not trickle candidates");
                }
            }
        });
    }
    // Inbound: apply the gateway's candidates as they stream in.
    tasks.spawn(async move {
        let apply = |event: SignalEvent| {
            let tube = tube.clone();
            let keys = keys.clone();
            async move {
                if let SignalEvent::Message {
                    kind: StreamKind::Candidates,
                    payload,
                } = event
                {
                    match keys.open_json::<CandidatesBody>(
                        Direction::GatewayToClient,
                        StreamKind::Candidates.as_str(),
                        &payload,
                    ) {
                        Ok(body) => tube.add_remote_candidates(&body.candidates).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "rejected a gateway candidate message")
                        }
                    }
                }
            }
        };
        for event in early {
            apply(event).await;
        }
        while let Some(event) = signal.recv().await {
            match event {
                // The gateway ended the conversation; the control channel reports why.
                SignalEvent::Lost(_)
                | SignalEvent::Message {
                    kind: StreamKind::Closed,
                    ..
                } => break,
                event => apply(event).await,
            }
        }
    });
}
