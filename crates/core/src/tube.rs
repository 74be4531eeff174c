//! The client side of a tube, behind an interface of its own: create the offer, apply the
//! answer and candidates, wait for the data plane, open one connection per local client
//! connection, and report how the tube ended. The pipeline sees only protocol types and
//! [`TubeConnection`]; the WebRTC driver underneath (the `sallyport-tube` crate today) can be
//! replaced without touching it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sallyport_protocol::{
    connection_label, CloseReason, ControlMessage, IceCandidate, SessionDescription,
    CONTROL_CHANNEL_LABEL,
};
use sallyport_tube::{bridge, ByteCounters, Channel, ChannelEvent, Peer, PeerEvent, TubeState};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

pub use sallyport_tube::TubeConfig;

use crate::error::{CoreError, Result};

/// How a tube ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TubeEnd {
    /// The gateway shut the tube down, with its reason.
    Gateway(CloseReason),
    /// ICE or DTLS failed (network gone, peer gone).
    Failed,
    /// We closed it.
    Local,
}

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<std::result::Result<(), CloseReason>>>>>;

pub struct ClientTube {
    peer: Arc<Peer>,
    control: Channel,
    next_connection: AtomicU64,
    waiters: Waiters,
    data_plane: watch::Receiver<bool>,
    gathered: watch::Receiver<bool>,
    ended: watch::Receiver<Option<TubeEnd>>,
    ended_tx: watch::Sender<Option<TubeEnd>>,
    local_candidates: Mutex<Option<mpsc::UnboundedReceiver<IceCandidate>>>,
}

impl ClientTube {
    /// Create the peer connection, its control channel and the offer.
    pub async fn create(config: &TubeConfig) -> Result<(Self, SessionDescription)> {
        let (peer, mut events) = Peer::new(config).await?;
        let peer = Arc::new(peer);
        let control = peer.create_channel(CONTROL_CHANNEL_LABEL).await?;
        let offer = peer.create_offer().await?;

        let (candidates_tx, candidates_rx) = mpsc::unbounded_channel();
        let (gathered_tx, gathered_rx) = watch::channel(false);
        let (ended_tx, ended_rx) = watch::channel(None);
        let (data_plane_tx, data_plane_rx) = watch::channel(false);
        let waiters: Waiters = Arc::default();

        // Local candidates and gathering; the client never accepts channels from the gateway.
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    PeerEvent::LocalCandidate(c) => {
                        let _ = candidates_tx.send(c);
                    }
                    PeerEvent::GatheringComplete => {
                        gathered_tx.send_replace(true);
                    }
                    PeerEvent::IncomingChannel(channel) => channel.close().await,
                }
            }
        });

        // The control channel: its opening is the data plane's readiness (ICE, DTLS and SCTP
        // all up), its messages answer connection requests, its closing ends the tube.
        tokio::spawn(read_control(
            control.clone(),
            waiters.clone(),
            data_plane_tx,
            ended_tx.clone(),
        ));

        // ICE/DTLS failure ends the tube too.
        {
            let mut state = peer.state_changes();
            let ended_tx = ended_tx.clone();
            tokio::spawn(async move {
                while state.changed().await.is_ok() {
                    if *state.borrow_and_update() == TubeState::Failed {
                        ended_tx.send_if_modified(|end| {
                            end.get_or_insert(TubeEnd::Failed);
                            true
                        });
                        break;
                    }
                }
            });
        }

        Ok((
            Self {
                peer,
                control,
                next_connection: AtomicU64::new(1),
                waiters,
                data_plane: data_plane_rx,
                gathered: gathered_rx,
                ended: ended_rx,
                ended_tx,
                local_candidates: Mutex::new(Some(candidates_rx)),
            },
            offer,
        ))
    }

    /// The local candidates as they are gathered (taken once, for trickling).
    pub fn take_local_candidates(&self) -> Option<mpsc::UnboundedReceiver<IceCandidate>> {
        self.local_candidates.lock().unwrap().take()
    }

    /// The offer with every local candidate in it, once gathering is complete (non-trickle).
    pub async fn complete_offer(&self, timeout: Duration) -> Result<SessionDescription> {
        let mut gathered = self.gathered.clone();
        tokio::time::timeout(timeout, gathered.wait_for(|g| *g))
            .await
            .map_err(|_| CoreError::Timeout(timeout, "ICE gathering"))?
            .map_err(|_| CoreError::Tube(sallyport_tube::TubeError::Closed))?;
        self.peer
            .local_description()
            .await
            .ok_or(CoreError::Tube(sallyport_tube::TubeError::Closed))
    }

    pub async fn apply_answer(&self, answer: &SessionDescription) -> Result<()> {
        Ok(self.peer.apply_answer(answer).await?)
    }

    pub async fn add_remote_candidates(&self, candidates: &[IceCandidate]) {
        for candidate in candidates {
            if let Err(e) = self.peer.add_remote_candidate(candidate).await {
                tracing::debug!(error = %e, "ignoring a gateway candidate");
            }
        }
    }

    /// Wait, event-driven, until ICE, DTLS and SCTP are up and the control channel is open.
    pub async fn wait_data_plane(&self, timeout: Duration) -> Result<()> {
        let mut ready = self.data_plane.clone();
        let mut ended = self.ended.clone();
        let wait = async {
            tokio::select! {
                r = ready.wait_for(|r| *r) => r.map(|_| ()).map_err(|_| CoreError::Tube(sallyport_tube::TubeError::Closed)),
                end = ended.wait_for(|e| e.is_some()) => Err(match end.ok().and_then(|e| *e) {
                    Some(TubeEnd::Gateway(reason)) => CoreError::TubeClosed(reason),
                    _ => CoreError::Tube(sallyport_tube::TubeError::Failed),
                }),
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| CoreError::Timeout(timeout, "ICE, DTLS and SCTP to connect"))?
    }

    /// As [`wait_data_plane`](Self::wait_data_plane), but checking the state every `tick`
    /// instead of reacting to the event, as the legacy design did.
    pub async fn poll_data_plane(&self, timeout: Duration, tick: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            if *self.data_plane.borrow() {
                return Ok(());
            }
            match *self.ended.borrow() {
                Some(TubeEnd::Gateway(reason)) => return Err(CoreError::TubeClosed(reason)),
                Some(_) => return Err(CoreError::Tube(sallyport_tube::TubeError::Failed)),
                None => {}
            }
            if started.elapsed() >= timeout {
                return Err(CoreError::Timeout(timeout, "ICE, DTLS and SCTP to connect"));
            }
            tokio::time::sleep(tick).await;
        }
    }

    /// Open one connection: a data channel the gateway bridges to the resource's target.
    /// Returns once the gateway reports the target connected, or its reason for not.
    pub async fn open_connection(&self, timeout: Duration) -> Result<TubeConnection> {
        let conn = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + timeout;
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap().insert(conn, tx);
        let channel = match self.peer.create_channel(&connection_label(conn)).await {
            Ok(channel) => channel,
            Err(e) => {
                self.waiters.lock().unwrap().remove(&conn);
                return Err(e.into());
            }
        };
        // One deadline for the whole open: the channel, then the gateway's report.
        let result = async {
            tokio::time::timeout_at(deadline, channel.wait_open(timeout))
                .await
                .map_err(|_| CoreError::Timeout(timeout, "the data channel to open"))??;
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(reason))) => Err(CoreError::Target(reason)),
                // The control channel closed: the tube is going away.
                Ok(Err(_)) => Err(CoreError::Tube(sallyport_tube::TubeError::Closed)),
                Err(_) => Err(CoreError::Timeout(
                    timeout,
                    "the gateway to reach the target",
                )),
            }
        }
        .await;
        self.waiters.lock().unwrap().remove(&conn);
        match result {
            Ok(()) => Ok(TubeConnection {
                conn,
                channel,
                opened: Instant::now(),
            }),
            Err(e) => {
                // Never leave a half-open channel (and a gateway-side slot) behind.
                channel.close().await;
                Err(e)
            }
        }
    }

    /// Resolves when the tube has ended, with how.
    pub async fn ended(&self) -> TubeEnd {
        let mut ended = self.ended.clone();
        let end = match ended.wait_for(|e| e.is_some()).await {
            Ok(end) => end.unwrap_or(TubeEnd::Local),
            Err(_) => TubeEnd::Local,
        };
        end
    }

    /// Close the control channel (the gateway then tears its side down) and the peer.
    pub async fn close(&self) {
        self.ended_tx.send_if_modified(|end| {
            let first = end.is_none();
            end.get_or_insert(TubeEnd::Local);
            first
        });
        self.control.close().await;
        self.peer.close().await;
    }
}

async fn read_control(
    control: Channel,
    waiters: Waiters,
    data_plane: watch::Sender<bool>,
    ended: watch::Sender<Option<TubeEnd>>,
) {
    loop {
        match control.next_event().await {
            ChannelEvent::Open => {
                data_plane.send_replace(true);
            }
            ChannelEvent::Text(text) => match serde_json::from_str::<ControlMessage>(&text) {
                Ok(ControlMessage::Connected { conn }) => {
                    if let Some(waiter) = waiters.lock().unwrap().remove(&conn) {
                        let _ = waiter.send(Ok(()));
                    }
                }
                Ok(ControlMessage::Closed { conn, reason }) => {
                    if let Some(waiter) = waiters.lock().unwrap().remove(&conn) {
                        let _ = waiter.send(Err(reason));
                    } else {
                        tracing::debug!(
                            conn,
                            reason = reason.as_str(),
                            "connection closed by gateway"
                        );
                    }
                }
                Ok(ControlMessage::Shutdown { reason }) => {
                    ended.send_if_modified(|end| {
                        let first = end.is_none();
                        end.get_or_insert(TubeEnd::Gateway(reason));
                        first
                    });
                }
                Err(e) => tracing::warn!(error = %e, "unreadable control message; ignored"),
            },
            ChannelEvent::Message(_) => {}
            ChannelEvent::Closed => {
                // Fail every open in flight at once rather than at its timeout.
                waiters.lock().unwrap().clear();
                ended.send_if_modified(|end| {
                    let first = end.is_none();
                    end.get_or_insert(TubeEnd::Failed);
                    first
                });
                break;
            }
        }
    }
}

/// One connection through the tube, connected to the target at the gateway.
pub struct TubeConnection {
    conn: u64,
    channel: Channel,
    opened: Instant,
}

impl TubeConnection {
    pub fn id(&self) -> u64 {
        self.conn
    }

    /// How long ago the gateway connected it.
    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// Copy bytes between `stream` and the target until both sides are done.
    pub async fn bridge(self, stream: TcpStream, counters: Arc<ByteCounters>) {
        let _ = stream.set_nodelay(true);
        bridge(stream, self.channel, counters).await;
    }

    pub async fn close(self) {
        self.channel.close().await;
    }
}
