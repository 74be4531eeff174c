//! The client side of a tube: the offer, the gateway's answer and candidates, the data plane
//! layer by layer, and one connection per local client connection. The pipeline sees only
//! protocol types, [`Milestone`]s and [`Connection`]s; the WebRTC driver is the tube crate's.

use std::sync::Mutex;
use std::time::Duration;

use sallyport_protocol::{CloseReason, IceCandidate, SessionDescription};
use sallyport_tube::{Tube, TubeEvent};
use tokio::sync::{mpsc, watch};

pub use sallyport_tube::{ByteCounters, Connection, Milestone, TubeConfig};

use crate::error::{CoreError, Result};

/// How a tube ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TubeEnd {
    /// The gateway shut the tube down, with its reason.
    Gateway(CloseReason),
    /// The network path failed (peer gone, consent lost).
    Failed,
    /// We closed it.
    Local,
    /// The router reported the gateway gone and the tube did not answer a ping.
    GatewayLost,
}

pub struct ClientTube {
    tube: Tube,
    local_candidates: Mutex<Option<mpsc::UnboundedReceiver<IceCandidate>>>,
    gathered: watch::Receiver<bool>,
    /// Set when we learn of the gateway's loss before the tube does.
    lost: watch::Sender<bool>,
}

impl ClientTube {
    /// Create the peer connection and the offer (which carries the host candidates).
    pub async fn create(config: &TubeConfig) -> Result<(Self, SessionDescription)> {
        let (tube, mut events, offer) = Tube::offer(config).await?;
        let (candidates_tx, candidates_rx) = mpsc::unbounded_channel();
        let (gathered_tx, gathered_rx) = watch::channel(false);
        // Local candidates for trickling; a client never accepts connections.
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    TubeEvent::LocalCandidate(c) => {
                        let _ = candidates_tx.send(c);
                    }
                    TubeEvent::GatheringComplete => {
                        gathered_tx.send_replace(true);
                    }
                    TubeEvent::Incoming(connection) => {
                        connection.refuse(CloseReason::ProtocolError)
                    }
                }
            }
        });
        Ok((
            Self {
                tube,
                local_candidates: Mutex::new(Some(candidates_rx)),
                gathered: gathered_rx,
                lost: watch::channel(false).0,
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
        Ok(self.tube.local_description().await?)
    }

    pub async fn apply_answer(&self, answer: &SessionDescription) -> Result<()> {
        Ok(self.tube.apply_answer(answer).await?)
    }

    pub async fn add_remote_candidates(&self, candidates: &[IceCandidate]) {
        for candidate in candidates {
            if let Err(e) = self.tube.add_remote_candidate(candidate).await {
                tracing::debug!(error = %e, "ignoring a gateway candidate");
            }
        }
    }

    /// Add the candidates inside `description` (an answer given again, after the first was
    /// applied): those it has that the first did not are new paths for ICE to check.
    pub async fn add_candidates_of(&self, description: &SessionDescription) {
        self.add_remote_candidates(&candidates_in(&description.sdp))
            .await
    }

    /// Wait, event-driven, for one layer of the data plane; fails at once if the tube ends.
    pub async fn reached(
        &self,
        milestone: Milestone,
        timeout: Duration,
    ) -> Result<std::time::Instant> {
        self.tube
            .reached(milestone, timeout)
            .await
            .map_err(|e| self.ended_or(e))
    }

    /// As [`reached`](Self::reached), looking every `tick` as the legacy design did.
    pub async fn poll_reached(
        &self,
        milestone: Milestone,
        timeout: Duration,
        tick: Duration,
    ) -> Result<std::time::Instant> {
        self.tube
            .poll_reached(milestone, timeout, tick)
            .await
            .map_err(|e| self.ended_or(e))
    }

    /// The gateway's reason when it closed the tube, rather than a generic failure.
    fn ended_or(&self, error: sallyport_tube::TubeError) -> CoreError {
        match self.tube.end() {
            Some(sallyport_tube::TubeEnd::Peer(reason)) => CoreError::TubeClosed(reason),
            _ => error.into(),
        }
    }

    /// Open one connection and wait until the gateway reports the target connected.
    pub async fn open_connection(&self, timeout: Duration) -> Result<Connection> {
        let connection = self.open().await?;
        self.until_opened(connection, timeout).await
    }

    /// Connection 1, which the gateway opens by itself (the start asked, its answer agreed):
    /// taken before the answer is applied, so nothing the gateway says of it comes first.
    pub async fn adopt_first(&self) -> Result<Connection> {
        self.tube.adopt_first().await.map_err(|e| self.ended_or(e))
    }

    /// The gateway's `opened` for connection 1, streamed through the router.
    pub fn first_heard(&self, refused: Option<sallyport_protocol::CloseReason>) {
        self.tube.first_heard(refused);
    }

    /// Wait until the gateway has reached the target for `connection`, or says why not.
    pub async fn until_opened(
        &self,
        mut connection: Connection,
        timeout: Duration,
    ) -> Result<Connection> {
        match connection.opened(timeout).await {
            Ok(()) => Ok(connection),
            Err(sallyport_tube::TubeError::Refused(reason)) => Err(CoreError::Target(reason)),
            Err(e) => Err(self.ended_or(e)),
        }
    }

    /// Open one connection without waiting: its bytes may flow at once, the gateway holds them
    /// until the target answers (or resets the connection if it cannot be reached).
    pub async fn open(&self) -> Result<Connection> {
        self.tube.open().await.map_err(|e| self.ended_or(e))
    }

    /// Resolves when the tube has ended, with how.
    pub async fn ended(&self) -> TubeEnd {
        let mut lost = self.lost.subscribe();
        tokio::select! {
            end = self.tube.ended() => {
                if *self.lost.borrow() {
                    return TubeEnd::GatewayLost;
                }
                match end {
                    sallyport_tube::TubeEnd::Peer(reason) => TubeEnd::Gateway(reason),
                    sallyport_tube::TubeEnd::Failed => TubeEnd::Failed,
                    sallyport_tube::TubeEnd::Local(_) => TubeEnd::Local,
                }
            }
            _ = lost.wait_for(|l| *l) => TubeEnd::GatewayLost,
        }
    }

    /// The router says the gateway is gone: ask the gateway itself over the tube (it may only
    /// have lost its router link). No answer within `timeout` ends the tube as lost.
    pub async fn check_gateway(&self, timeout: Duration) {
        match self.tube.probe(timeout).await {
            Ok(rtt) => tracing::info!(?rtt, "the router lost the gateway, but the tube answers"),
            Err(e) => {
                tracing::warn!(error = %e, "the gateway is gone: the tube does not answer");
                self.lost.send_replace(true);
                self.tube.shutdown(CloseReason::ClientClosed).await;
            }
        }
    }

    /// Datagrams and bytes the tube has put on the wire and taken from it.
    pub fn traffic(&self) -> &sallyport_tube::Traffic {
        self.tube.traffic()
    }

    /// The tube's layers and path, for diagnostics.
    pub fn status(&self) -> sallyport_tube::Status {
        self.tube.status().borrow().clone()
    }

    /// Each change of the tube's status.
    pub fn status_changes(&self) -> watch::Receiver<sallyport_tube::Status> {
        self.tube.status()
    }

    /// Restart ICE over a broken path: the offer to send the gateway (`restart` message).
    pub async fn restart(&self) -> Result<SessionDescription> {
        Ok(self.tube.restart().await?)
    }

    /// End the tube, telling the gateway (it learns `client_closed`).
    pub async fn close(&self) {
        self.tube.shutdown(CloseReason::ClientClosed).await;
    }
}

/// The `a=candidate` lines of a description, each with its section's `a=mid` and m-line index.
pub fn candidates_in(sdp: &str) -> Vec<IceCandidate> {
    let mut candidates = Vec::new();
    let mut index: Option<u16> = None;
    let mut mid: Option<String> = None;
    let mut section = Vec::new();
    let mut flush = |index: Option<u16>, mid: &Option<String>, section: &mut Vec<String>| {
        candidates.extend(section.drain(..).map(|candidate| IceCandidate {
            candidate,
            sdp_mid: mid.clone(),
            sdp_mline_index: index,
        }));
    };
    for line in sdp.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            flush(index, &mid, &mut section);
            index = Some(index.map_or(0, |i| i.saturating_add(1)));
            mid = None;
        } else if let Some(value) = line.strip_prefix("a=mid:") {
            mid = Some(value.to_owned());
        } else if let Some(candidate) = line.strip_prefix("a=") {
            if candidate.starts_with("candidate:") && index.is_some() {
                section.push(candidate.to_owned());
            }
        }
    }
    flush(index, &mid, &mut section);
    candidates
}

#[cfg(test)]
mod candidate_tests {
    use super::*;

    #[test]
    fn candidates_are_read_with_their_section() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
                   a=candidate:0 1 udp 1 10.0.0.9 9 typ host\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:a\r\n\
                   m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
                   a=candidate:1 1 udp 2130706431 127.0.0.1 4000 typ host\r\n\
                   a=mid:0\r\n\
                   a=candidate:2 1 udp 1694498815 203.0.113.7 4000 typ srflx raddr 0.0.0.0 rport 0\r\n\
                   a=end-of-candidates\r\n";
        let found = candidates_in(sdp);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            found[0].candidate,
            "candidate:1 1 udp 2130706431 127.0.0.1 4000 typ host"
        );
        assert!(found[1].candidate.contains("typ srflx"));
        for c in &found {
            assert_eq!(
                (c.sdp_mid.as_deref(), c.sdp_mline_index),
                (Some("0"), Some(1))
            );
        }
    }
}
