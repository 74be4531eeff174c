//! A running session: the local listener on 127.0.0.1, one tube connection per accepted
//! client connection, the native client, and their byte counters. Closing it closes the
//! listener and the tube, tells the gateway, and waits for every task it started.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sallyport_protocol::{Code, ConversationKeys, ResourceInfo};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::checkpoint::{names, Checkpoint, Recorder};
use crate::error::{CoreError, Result};
use crate::native_client::ClientCommand;
use crate::router_api::RouterApi;
use crate::router_api::SendFailure;
use crate::tube::{ByteCounters, ClientTube, Connection, TubeEnd};

/// A pre-opened connection older than this is not handed to a client: the target may have
/// given up on it (sshd's login grace, for one).
const WARM_CONNECTION_MAX_AGE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Active,
    /// The path to the gateway broke; the tube is restarting ICE (connections wait).
    Reconnecting,
    Closing,
    Closed,
}

impl SessionState {
    /// Closing or closed: the session is over or about to be.
    pub fn is_ending(self) -> bool {
        matches!(self, SessionState::Closing | SessionState::Closed)
    }
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SessionEnd {
    /// The native client exited with this code.
    ClientExited { code: Option<i32> },
    /// The gateway closed the tube, or the network failed.
    TubeEnded { reason: Code },
    /// Closed by the user (the app's close button, Ctrl-C).
    Closed,
}

/// A snapshot for lists and the UI.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct SessionInfo {
    pub launch_id: String,
    pub resource: String,
    pub protocol: String,
    pub gateway: String,
    pub local_port: u16,
    pub state: SessionState,
    pub client: Option<String>,
    /// Bytes from the target to the local client.
    pub bytes_in: u64,
    /// Bytes from the local client to the target.
    pub bytes_out: u64,
    pub started_unix_ms: u64,
    pub ready_ms: f64,
    /// Set once the session has ended by itself (not closed by the user): why, and when. The
    /// app keeps such a session in its list until the user dismisses it, so an end is seen.
    pub ended: Option<SessionEnded>,
}

/// How a session that ended by itself ended.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
pub struct SessionEnded {
    /// The close reason (`gateway_lost`, `gateway_shutdown`, `network_failed`, ...): the UI
    /// shows its hint from the registry.
    pub code: Code,
    pub at_unix_ms: u64,
}

impl SessionEnd {
    /// What a list shows of this end: nothing when the user closed the session or its client
    /// exited (both expected), the reason when the tube ended under it.
    pub fn unexpected(&self) -> Option<SessionEnded> {
        match self {
            SessionEnd::TubeEnded { reason } => Some(SessionEnded {
                code: *reason,
                at_unix_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
            }),
            SessionEnd::ClientExited { .. } | SessionEnd::Closed => None,
        }
    }
}

pub(crate) struct SessionParts {
    pub launch_id: String,
    pub resource: ResourceInfo,
    pub conversation_id: String,
    pub keys: ConversationKeys,
    pub api: RouterApi,
    pub tube: Arc<ClientTube>,
    pub listener: TcpListener,
    pub first_connection: Connection,
    /// When the first connection was opened (a stale one is not handed to a client).
    pub first_connection_at: std::time::Instant,
    pub command: Option<ClientCommand>,
    /// Tasks the launch started for the session's life (trickle ICE, the router socket).
    pub background: JoinSet<()>,
    /// The launch's checkpoints, for the `reconnected` ones after `ready`.
    pub recorder: Recorder,
}

pub struct Session {
    launch_id: String,
    resource: ResourceInfo,
    conversation_id: String,
    keys: ConversationKeys,
    api: RouterApi,
    tube: Arc<ClientTube>,
    local_port: u16,
    counters: Arc<ByteCounters>,
    command: Option<ClientCommand>,
    client: Mutex<Option<tokio::process::Child>>,
    state: Arc<watch::Sender<SessionState>>,
    started_unix_ms: u64,
    /// The launch's checkpoints: through `ready`, then one `reconnected` per outage.
    recorder: Recorder,
    tasks: Mutex<JoinSet<()>>,
}

impl Session {
    pub(crate) fn start(parts: SessionParts) -> Result<Self> {
        let local_port = parts.listener.local_addr()?.port();
        let counters = Arc::new(ByteCounters::default());
        let mut tasks = parts.background;
        tasks.spawn(accept_loop(
            parts.listener,
            parts.tube.clone(),
            (parts.first_connection, parts.first_connection_at),
            counters.clone(),
        ));
        let client = match &parts.command {
            Some(command) => Some(
                tokio::process::Command::new(&command.program)
                    .args(&command.args)
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| {
                        crate::error::CoreError::Client(format!(
                            "cannot start {}: {e}",
                            command.display
                        ))
                    })?,
            ),
            None => None,
        };
        let state = Arc::new(watch::channel(SessionState::Active).0);
        tasks.spawn(supervise(
            Restarter {
                tube: parts.tube.clone(),
                api: parts.api.clone(),
                resource: parts.resource.clone(),
                conversation_id: parts.conversation_id.clone(),
                keys: parts.keys.clone(),
            },
            state.clone(),
            parts.recorder.clone(),
        ));
        Ok(Self {
            launch_id: parts.launch_id,
            resource: parts.resource,
            conversation_id: parts.conversation_id,
            keys: parts.keys,
            api: parts.api,
            tube: parts.tube,
            local_port,
            counters,
            command: parts.command,
            client: Mutex::new(client),
            state,
            started_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            recorder: parts.recorder,
            tasks: Mutex::new(tasks),
        })
    }

    pub fn launch_id(&self) -> &str {
        &self.launch_id
    }

    pub fn local_port(&self) -> u16 {
        self.local_port
    }

    pub fn client_command(&self) -> Option<&str> {
        self.command.as_ref().map(|c| c.display.as_str())
    }

    /// Datagrams the session's tube has sent and received so far (ICE, DTLS and SCTP).
    pub fn datagrams(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let traffic = self.tube.traffic();
        (
            traffic.datagrams_sent.load(Relaxed),
            traffic.datagrams_received.load(Relaxed),
        )
    }

    /// The largest SCTP packet the session's tube sends (from the path, or the profile's cap).
    pub fn sctp_mtu(&self) -> usize {
        self.tube.status().sctp_mtu
    }

    /// The launch's checkpoints, in order; after `ready`, one `reconnected` per path that broke
    /// and came back.
    pub fn checkpoints(&self) -> Vec<Checkpoint> {
        self.recorder.checkpoints()
    }

    /// Each change of state, as it happens (`reconnecting` and back, closing, closed).
    pub fn state_changes(&self) -> watch::Receiver<SessionState> {
        self.state.subscribe()
    }

    pub fn info(&self) -> SessionInfo {
        SessionInfo {
            launch_id: self.launch_id.clone(),
            resource: self.resource.name.clone(),
            protocol: self.resource.protocol.clone(),
            gateway: self.resource.gateway.clone(),
            local_port: self.local_port,
            state: *self.state.borrow(),
            client: self.client_command().map(str::to_owned),
            bytes_in: self.counters.from_tube.load(Ordering::Relaxed),
            bytes_out: self.counters.to_tube.load(Ordering::Relaxed),
            started_unix_ms: self.started_unix_ms,
            ready_ms: self
                .recorder
                .checkpoints()
                .iter()
                .find(|c| c.phase == names::READY)
                .map_or(0.0, |c| c.total_ms),
            ended: None,
        }
    }

    /// Wait until the session ends by itself: the native client exits or the tube ends.
    /// With no client, only the tube ending (or [`close`](Self::close)) ends it.
    pub async fn wait(&self) -> SessionEnd {
        let child = self.client.lock().unwrap().take();
        let mut state = self.state.subscribe();
        let closed = state.wait_for(|s| s.is_ending());
        match child {
            Some(mut child) => {
                tokio::select! {
                    status = child.wait() => SessionEnd::ClientExited { code: status.ok().and_then(|s| s.code()) },
                    end = self.tube.ended() => tube_end(end),
                    _ = closed => SessionEnd::Closed,
                }
            }
            None => tokio::select! {
                end = self.tube.ended() => tube_end(end),
                _ = closed => SessionEnd::Closed,
            },
        }
    }

    /// Wait until the tube ends or the session is closed, whatever its client does: the app's
    /// sessions outlive the terminal window a client ran in. The client is still reaped.
    pub async fn wait_tunnel(&self) -> SessionEnd {
        if let Some(mut child) = self.client.lock().unwrap().take() {
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
        let mut state = self.state.subscribe();
        // A close on this side ends the tube too: when both are ready, or the tube's end is
        // seen first while the session is already closing, it is the close, not an end by
        // itself (which would be listed as one).
        tokio::select! {
            biased;
            _ = state.wait_for(|s| s.is_ending()) => SessionEnd::Closed,
            end = self.tube.ended() => {
                if self.state.borrow().is_ending() {
                    SessionEnd::Closed
                } else {
                    tube_end(end)
                }
            }
        }
    }

    /// Close everything: the listener and connections, the tube, the gateway's side.
    pub async fn close(&self) {
        let first = self.state.send_if_modified(|state| {
            let open = !state.is_ending();
            if open {
                *state = SessionState::Closing;
            }
            open
        });
        if !first {
            // Another caller is closing it: return when that is done.
            let _ = self
                .state
                .subscribe()
                .wait_for(|s| *s == SessionState::Closed)
                .await;
            return;
        }
        if let Some(mut child) = self.client.lock().unwrap().take() {
            let _ = child.start_kill();
        }
        // Tell the gateway (best effort) while tearing the tube down: Close should not wait
        // on a slow router before the tunnel is gone.
        tokio::join!(
            self.api.close_conversation(
                &self.resource.gateway,
                &self.resource.name,
                &self.conversation_id,
                &self.keys,
            ),
            self.tube.close(),
        );
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap());
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        self.state.send_replace(SessionState::Closed);
    }
}

fn tube_end(end: TubeEnd) -> SessionEnd {
    SessionEnd::TubeEnded {
        reason: match end {
            TubeEnd::Gateway(reason) => reason.code(),
            TubeEnd::Failed => Code::NetworkFailed,
            TubeEnd::Local => Code::Closed,
            TubeEnd::GatewayLost => Code::GatewayLost,
        },
    }
}

/// Accept local connections; each becomes one tube connection. The first one reuses the
/// connection the launch opened to prove the target reachable. Later ones carry bytes at once:
/// the gateway holds them until the target answers, which saves a round trip for clients that
/// speak first.
async fn accept_loop(
    listener: TcpListener,
    tube: Arc<ClientTube>,
    first: (Connection, std::time::Instant),
    counters: Arc<ByteCounters>,
) {
    let mut warm = Some(first);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = tube.ended() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let connection = match warm.take() {
            Some((c, opened)) if opened.elapsed() < WARM_CONNECTION_MAX_AGE => c,
            // A stale warm connection is dropped, which resets it.
            _ => match tube.open().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%peer, code = %e.code(), error = %e, "cannot open a connection");
                    continue;
                }
            },
        };
        let counters = counters.clone();
        connections.spawn(async move {
            let conn = connection.id();
            tracing::debug!(%peer, conn, "local connection bridged");
            let end = connection.bridge(stream, counters).await;
            tracing::debug!(%peer, conn, ?end, "local connection ended");
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    drop(warm);
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// What a session needs to restart its tube's ICE through the router.
struct Restarter {
    tube: Arc<ClientTube>,
    api: RouterApi,
    resource: ResourceInfo,
    conversation_id: String,
    keys: ConversationKeys,
}

impl Restarter {
    /// One ICE restart: a new offer through the router, the gateway's answer applied.
    async fn restart(&self) -> Result<()> {
        use sallyport_protocol::{
            AnswerBody, ClientMessage, MessageKind, RestartBody, PROTOCOL_VERSION,
        };
        let offer = self.tube.restart().await?;
        let message = ClientMessage {
            v: PROTOCOL_VERSION,
            conversation_id: self.conversation_id.clone(),
            resource: self.resource.name.clone(),
            kind: MessageKind::Restart,
            stream_response: false,
            timeout_ms: Some(RESTART_TIMEOUT.as_millis() as u64),
            payload: self.keys.seal_to_gateway(&RestartBody { offer }),
        };
        let refused = |failure: SendFailure| CoreError::Router {
            status: match &failure {
                SendFailure::Http { status, .. } => *status,
                _ => 0,
            },
            code: failure.code(),
            message: failure.message(),
        };
        let reply = self
            .api
            .send(
                &self.resource.gateway,
                &message,
                RESTART_TIMEOUT + Duration::from_secs(1),
            )
            .await
            .map_err(refused)?;
        let payload = reply
            .payload
            .ok_or(SendFailure::EmptyReply)
            .map_err(refused)?;
        let answer = self
            .keys
            .open_from_gateway::<AnswerBody>(&payload)
            .map_err(|e| CoreError::Seal(e.to_string()))?
            .answer;
        self.tube.apply_answer(&answer).await
    }
}

/// How long one restart may wait for the gateway's answer.
const RESTART_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a restarted path may take to come up before the next try.
const RESTART_SETTLE: Duration = Duration::from_secs(5);

/// For the session's life: when the path to the gateway breaks (ICE hears nothing back), say
/// `reconnecting` and restart ICE through the router until the path is back, then say so with
/// a `reconnected` checkpoint that lasted as long as the outage. The tube's connections wait
/// meanwhile (SCTP retransmits what was in flight), so no byte is lost. A path that comes
/// back by itself counts too.
async fn supervise(link: Restarter, state: Arc<watch::Sender<SessionState>>, recorder: Recorder) {
    let mut status = link.tube.status_changes();
    loop {
        let since = match status
            .wait_for(|s| s.disconnected_since.is_some() || s.ended.is_some())
            .await
        {
            Ok(s) if s.ended.is_none() => s.disconnected_since.unwrap_or_else(Instant::now),
            _ => return,
        };
        let reconnecting = state.send_if_modified(|s| {
            let active = *s == SessionState::Active;
            if active {
                *s = SessionState::Reconnecting;
            }
            active
        });
        if !reconnecting {
            return;
        }
        tracing::warn!("the path to the gateway broke; restarting ICE");
        let mut pause = Duration::from_millis(250);
        loop {
            if let Err(e) = link.restart().await {
                tracing::warn!(code = e.code().as_str(), error = %e, "ICE restart failed; trying again");
            }
            // Some(true): back; Some(false): the tube ended; None: not yet.
            let back = match tokio::time::timeout(
                RESTART_SETTLE,
                status.wait_for(|s| s.disconnected_since.is_none() || s.ended.is_some()),
            )
            .await
            {
                Ok(Ok(s)) => Some(s.ended.is_none()),
                Ok(Err(_)) => Some(false),
                Err(_) => None,
            };
            match back {
                Some(true) => break,
                Some(false) => return,
                None => {}
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
        let lasted = since.elapsed();
        let path = link.tube.status().path;
        recorder.mark_lasting(names::RECONNECTED, lasted, path);
        tracing::info!(?lasted, "reconnected");
        state.send_if_modified(|s| {
            let back = *s == SessionState::Reconnecting;
            if back {
                *s = SessionState::Active;
            }
            back
        });
    }
}
