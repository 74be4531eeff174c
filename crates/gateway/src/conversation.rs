//! One conversation: a client's tube through this gateway, from offer to close.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sallyport_protocol::{
    AnswerBody, CandidatesBody, CloseBody, CloseReason, Code, ConversationKeys, GatewayOutcome,
    GatewayToRouter, IceCandidate, OpenedBody, ProtocolError, RestartBody, SealedPayload,
    SessionDescription, StartBody, StreamKind, FIRST_CONNECTION,
};
use sallyport_tube::{ByteCounters, Connection, ConnectionEnd, Tube, TubeEvent};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Mutex};

use crate::record::Event;
use crate::{error, Gateway, ResourceConfig};

/// How long a non-streamed start waits for ICE gathering before answering with what it has.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Conversation {
    id: String,
    keys: ConversationKeys,
    resource: ResourceConfig,
    tube: Tube,
    gateway: std::sync::Weak<Gateway>,
    /// Candidates gathered so far and whether gathering is done; streamed once `streaming`.
    signalling: Mutex<Signalling>,
    gathered: watch::Receiver<bool>,
    pub bytes: Arc<ByteCounters>,
    closed: AtomicBool,
    /// `tube_connected` has been recorded.
    connected_recorded: AtomicBool,
    created: Instant,
    /// The start asked for connection 1 to be opened at once (`open_first`): its outcome is
    /// streamed as `opened` as well as sent on the channel.
    open_first: bool,
}

#[derive(Default)]
struct Signalling {
    candidates: Vec<IceCandidate>,
    done: bool,
    streaming: bool,
}

/// Handle a `start`: a new conversation, or the same answer again for a repeated offer.
/// The gateway's map is locked only to claim the conversation's slot; the peer is built
/// outside the lock, and a repeated offer racing the first waits on the same slot.
pub(crate) async fn start(
    gateway: &Arc<Gateway>,
    conversation_id: &str,
    resource_name: &str,
    stream_response: bool,
    payload: &SealedPayload,
) -> GatewayOutcome {
    let Some(resource) = gateway.config.resource(resource_name).cloned() else {
        return error(
            Code::UnknownResource,
            format!("this gateway does not serve {resource_name:?}"),
        );
    };
    let slot = {
        let mut conversations = gateway.conversations.lock().await;
        match conversations.get(conversation_id) {
            Some(slot) => slot.clone(),
            None => {
                if conversations.len() >= gateway.config.max_sessions {
                    return error(
                        Code::SessionLimit,
                        format!(
                            "the gateway's limit of {} sessions is reached",
                            gateway.config.max_sessions
                        ),
                    );
                }
                let slot = Arc::new(tokio::sync::OnceCell::new());
                conversations.insert(conversation_id.to_owned(), slot.clone());
                slot
            }
        }
    };
    let created = slot
        .get_or_try_init(|| create(gateway, conversation_id, resource, payload))
        .await;
    let conversation = match created {
        Ok(conversation) => conversation.clone(),
        Err(outcome) => {
            // Free the slot so a corrected retry can start afresh.
            let mut conversations = gateway.conversations.lock().await;
            if conversations
                .get(conversation_id)
                .is_some_and(|s| Arc::ptr_eq(s, &slot) && s.get().is_none())
            {
                conversations.remove(conversation_id);
            }
            return outcome;
        }
    };
    // A repeated offer must come from the same client key, and gets the same answer.
    if let Err(e) = conversation.open_start(payload, resource_name) {
        return error(e.code(), e.to_string());
    }
    conversation.answer(stream_response).await
}

/// Open the offer, build the answering peer and start driving it.
async fn create(
    gateway: &Arc<Gateway>,
    conversation_id: &str,
    resource: ResourceConfig,
    payload: &SealedPayload,
) -> Result<Arc<Conversation>, GatewayOutcome> {
    let keys = ConversationKeys::for_gateway(&gateway.key, conversation_id, payload)
        .map_err(|e| error(Code::SealRejected, e.to_string()))?;
    let body: StartBody = keys
        .open_from_client(payload)
        .map_err(|e| error(e.code(), e.to_string()))?;
    if body.resource != resource.name {
        return Err(error(
            Code::SealRejected,
            "the sealed offer names another resource than the envelope",
        ));
    }

    // Validated when the configuration was loaded.
    let tube_config = sallyport_tube::TubeConfig {
        peer_max_datagram: Some(
            body.max_datagram
                .unwrap_or(sallyport_protocol::DEFAULT_PEER_DATAGRAM) as usize,
        ),
        ..gateway
            .config
            .tube_config()
            .map_err(|e| error(Code::Internal, e))?
    };
    let (tube, events, _answer) = match Tube::answer(&tube_config, &body.offer).await {
        Ok(answered) => answered,
        // An offer we cannot answer will not improve on retry: not a transient state.
        Err(e @ sallyport_tube::TubeError::InvalidDescription(_)) => {
            return Err(error(
                Code::Malformed,
                format!("cannot answer the offer: {e}"),
            ))
        }
        Err(e) => return Err(error(Code::Internal, e.to_string())),
    };
    // Only through a router that forwards the `opened` stream; the answer tells the client.
    let open_first = body.open_first
        && gateway
            .router_forwards_opened
            .load(std::sync::atomic::Ordering::Relaxed);
    let (gathered_tx, gathered_rx) = watch::channel(false);
    let conversation = Arc::new(Conversation {
        id: conversation_id.to_owned(),
        keys,
        resource,
        tube,
        gateway: Arc::downgrade(gateway),
        signalling: Mutex::new(Signalling::default()),
        gathered: gathered_rx,
        bytes: Arc::new(ByteCounters::default()),
        closed: AtomicBool::new(false),
        connected_recorded: AtomicBool::new(false),
        created: Instant::now(),
        open_first,
    });
    tracing::info!(target = %conversation.resource.target, "new conversation");
    if open_first {
        // Dialled while the WebRTC handshake runs; the connection arrives as an incoming one.
        conversation.tube.open_first();
    }
    tokio::spawn(drive(conversation.clone(), events, gathered_tx));
    Ok(conversation)
}

/// React to the tube's events for the conversation's whole life.
async fn drive(
    conversation: Arc<Conversation>,
    mut events: mpsc::UnboundedReceiver<TubeEvent>,
    gathered: watch::Sender<bool>,
) {
    let ended = conversation.tube.ended();
    tokio::pin!(ended);
    let connected = channel_open(conversation.tube.status());
    tokio::pin!(connected);
    let mut reported = false;
    let end = loop {
        tokio::select! {
            _ = &mut connected, if !reported => {
                reported = true;
                conversation.record_connected();
            }
            event = events.recv() => match event {
                Some(TubeEvent::LocalCandidate(candidate)) => {
                    let mut signalling = conversation.signalling.lock().await;
                    signalling.candidates.push(candidate.clone());
                    if signalling.streaming {
                        conversation.stream_candidates(vec![candidate], false);
                    }
                }
                Some(TubeEvent::GatheringComplete) => {
                    let mut signalling = conversation.signalling.lock().await;
                    signalling.done = true;
                    if signalling.streaming {
                        conversation.stream_candidates(Vec::new(), true);
                    }
                    gathered.send_replace(true);
                }
                Some(TubeEvent::Incoming(connection)) => {
                    tokio::spawn(conversation.clone().serve(connection));
                }
                // The tube's task is gone, so its end is recorded: read it below.
                None => break conversation.tube.end(),
            },
            end = &mut ended => break Some(end),
        }
    };
    if let Some(gateway) = conversation.gateway.upgrade() {
        gateway.forget(&conversation.id).await;
    }
    let reason = match end {
        Some(sallyport_tube::TubeEnd::Peer(reason) | sallyport_tube::TubeEnd::Local(reason)) => {
            reason
        }
        Some(sallyport_tube::TubeEnd::Failed) | None => CloseReason::Normal,
    };
    tracing::info!(?end, "tube ended");
    conversation.close(reason).await;
}

/// Resolves once the tube's data channel is open (never, if the tube goes first).
async fn channel_open(mut status: watch::Receiver<sallyport_tube::Status>) {
    if status.wait_for(|s| s.channel_open.is_some()).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Conversation {
    fn gateway(&self) -> Option<Arc<Gateway>> {
        self.gateway.upgrade()
    }

    /// The tube's channel opened: recorded once, by whichever comes first, the drive or a
    /// close (a client whose first connection was refused at `start` closes as soon as its
    /// own channel opens, which may be before the drive has seen the gateway's open).
    fn record_connected(&self) {
        if !self.connected_recorded.swap(true, Ordering::SeqCst) {
            self.record(Event::TubeConnected);
        }
    }

    /// Write `event` down at the gateway (its log, and the router's audit trail).
    fn record(&self, event: Event) {
        if let Some(gateway) = self.gateway() {
            gateway.record(&self.id, &self.resource, event);
        }
    }

    pub(crate) fn open_start(
        &self,
        payload: &SealedPayload,
        resource: &str,
    ) -> Result<(), ProtocolError> {
        let body: StartBody = self.keys.open_from_client(payload)?;
        if body.resource != resource || resource != self.resource.name {
            return Err(ProtocolError::Seal("repeated offer names another resource"));
        }
        Ok(())
    }

    pub(crate) fn open_close(&self, payload: &SealedPayload) -> Result<CloseBody, ProtocolError> {
        self.keys.open_from_client(payload)
    }

    /// The reply to a start: the answer inline; for a streamed start, the same answer and the
    /// candidates streamed to the client's conversation too. The inline copy lets a client
    /// send its offer before its socket has subscribed (the router keeps what is streamed
    /// meanwhile): it applies the answer from the reply and the trickle from the socket.
    async fn answer(&self, stream_response: bool) -> GatewayOutcome {
        if !stream_response {
            let mut gathered = self.gathered.clone();
            let _ = tokio::time::timeout(GATHER_TIMEOUT, gathered.wait_for(|g| *g)).await;
            return match self.tube.local_description().await {
                Ok(answer) => GatewayOutcome::Ok {
                    payload: Some(self.keys.seal_to_client(&self.answer_body(answer))),
                },
                Err(_) => error(Code::BadState, "the answer is not ready"),
            };
        }
        let Ok(answer) = self.tube.local_description().await else {
            return error(Code::BadState, "the answer is not ready");
        };
        // Under the lock, so no candidate can overtake the answer on the way to the client.
        let mut signalling = self.signalling.lock().await;
        let Some(gateway) = self.gateway() else {
            return error(Code::BadState, "gateway is shutting down");
        };
        gateway.send(GatewayToRouter::Stream {
            conversation_id: self.id.clone(),
            kind: StreamKind::Answer,
            payload: self.keys.seal_to_client(&self.answer_body(answer.clone())),
        });
        if !signalling.candidates.is_empty() || signalling.done {
            self.stream_candidates(signalling.candidates.clone(), signalling.done);
        }
        signalling.streaming = true;
        GatewayOutcome::Ok {
            payload: Some(self.keys.seal_to_client(&self.answer_body(answer))),
        }
    }

    fn answer_body(&self, answer: SessionDescription) -> AnswerBody {
        AnswerBody {
            answer,
            open_first: self.open_first,
        }
    }

    fn stream_candidates(&self, candidates: Vec<IceCandidate>, done: bool) {
        if let Some(gateway) = self.gateway() {
            gateway.send(GatewayToRouter::Stream {
                conversation_id: self.id.clone(),
                kind: StreamKind::Candidates,
                payload: self
                    .keys
                    .seal_to_client(&CandidatesBody { candidates, done }),
            });
        }
    }

    pub(crate) async fn add_candidates(&self, payload: &SealedPayload) -> GatewayOutcome {
        let body: CandidatesBody = match self.keys.open_from_client(payload) {
            Ok(body) => body,
            Err(e) => return error(e.code(), e.to_string()),
        };
        for candidate in &body.candidates {
            if let Err(e) = self.tube.add_remote_candidate(candidate).await {
                tracing::debug!(error = %e, "ignoring a client candidate");
            }
        }
        GatewayOutcome::Ok { payload: None }
    }

    /// The client's path broke and it restarts ICE: apply its new offer, answer inline. The
    /// tube's DTLS, SCTP and connections carry on over the new path.
    pub(crate) async fn restart(&self, payload: &SealedPayload) -> GatewayOutcome {
        let body: RestartBody = match self.keys.open_from_client(payload) {
            Ok(body) => body,
            Err(e) => return error(e.code(), e.to_string()),
        };
        match self.tube.accept_restart(&body.offer).await {
            Ok(answer) => {
                tracing::info!("ICE restarted by the client");
                GatewayOutcome::Ok {
                    payload: Some(self.keys.seal_to_client(&AnswerBody {
                        answer,
                        open_first: false,
                    })),
                }
            }
            Err(e) => error(Code::BadState, format!("cannot restart: {e}")),
        }
    }

    /// A connection the client opened: dial the target, then bridge or say why not.
    async fn serve(self: Arc<Self>, connection: Connection) {
        let conn = connection.id();
        let timeout = Duration::from_millis(
            self.gateway()
                .map(|g| g.config.connect_timeout_ms)
                .unwrap_or(5_000),
        );
        match dial(&self.resource.target, timeout).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                connection.accept();
                self.tell_first(conn, None);
                tracing::info!(conn, "connection bridged to target");
                self.record(Event::TargetConnected { conn });
                let since = Instant::now();
                let end = connection.bridge(stream, self.bytes.clone()).await;
                tracing::info!(conn, ?end, "connection ended");
                let duration = since.elapsed();
                self.record(Event::TargetClosed {
                    conn,
                    end,
                    duration,
                });
                if end == ConnectionEnd::LocalFailed {
                    tracing::info!(conn, "the target reset the connection");
                }
            }
            Err(reason) => {
                tracing::warn!(conn, reason = reason.as_str(), target = %self.resource.target, "cannot reach target");
                self.record(Event::TargetFailed { conn, reason });
                connection.refuse(reason);
                self.tell_first(conn, Some(reason));
            }
        }
    }

    /// The outcome of the connection opened at `start`, streamed to the client: it usually
    /// gets there long before the channel opens, so the client need not wait for `OPENED`.
    fn tell_first(&self, conn: u32, refused: Option<CloseReason>) {
        if !self.open_first || conn != FIRST_CONNECTION {
            return;
        }
        if let Some(gateway) = self.gateway() {
            gateway.send(GatewayToRouter::Stream {
                conversation_id: self.id.clone(),
                kind: StreamKind::Opened,
                payload: self.keys.seal_to_client(&OpenedBody { conn, refused }),
            });
        }
    }

    /// Tell the client why and tear the tube down. Safe to call more than once.
    pub(crate) async fn close(&self, reason: CloseReason) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(gateway) = self.gateway() {
            gateway.send(GatewayToRouter::Stream {
                conversation_id: self.id.clone(),
                kind: StreamKind::Closed,
                payload: self.keys.seal_to_client(&CloseBody { reason }),
            });
        }
        // Waits until the client has the reason (bounded), so it reports this reason and not
        // a network failure.
        self.tube.shutdown(reason).await;
        if self.tube.status().borrow().channel_open.is_some() {
            self.record_connected();
        }
        tracing::info!(reason = reason.as_str(), "conversation closed");
        self.record(Event::SessionClosed {
            reason,
            bytes_from_client: self.bytes.from_tube.load(Ordering::Relaxed),
            bytes_to_client: self.bytes.to_tube.load(Ordering::Relaxed),
            duration: self.created.elapsed(),
        });
    }
}

/// Connect to the configured target, classifying failures into close reasons.
async fn dial(target: &str, timeout: Duration) -> Result<TcpStream, CloseReason> {
    match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
        Err(_) => Err(CloseReason::TargetTimeout),
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(CloseReason::TargetRefused)
        }
        Ok(Err(_)) => Err(CloseReason::TargetUnreachable),
    }
}
