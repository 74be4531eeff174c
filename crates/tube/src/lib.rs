//! The tube: a WebRTC peer connection carrying TCP connections, for both ends (the client's
//! offerer and the gateway's answerer).
//!
//! Everything that touches WebRTC lives here, so the launch pipeline (in the core crate) and
//! the gateway see only [`Tube`], [`Connection`] and the protocol crate's types.
//!
//! # Why a driver of our own
//!
//! The stack is webrtc-rs's sans-IO core, `rtc`, driven by one task per tube ([`driver`]).
//! The async `webrtc` crate on top of the same core left every packet it built (the DTLS
//! ClientHello, the SCTP INIT, the channel's OPEN) in a queue until its next 200 ms timer
//! tick, so a launch spent ~800 ms waiting on timers; and it gave no control over the socket
//! buffers, the packet size or what a stalled reader does to the others. Owning the run loop
//! removes all three: every input is followed at once by its outputs, the sockets are sized
//! for the SCTP window, and the packet size comes from the path.
//!
//! # The run loop, as a contract
//!
//! One task owns the peer connection, its UDP sockets and the connection multiplexer
//! ([`mux`]). It repeats:
//!
//! 1. hand queued frames to the data channel while SCTP has less than a high-water mark
//!    outstanding; then `poll_write` (to the sockets), `poll_event`, `poll_read` (into the
//!    multiplexer) until none of them yields anything, and run `handle_timeout(now)` once after
//!    each round that did, so that whatever the inputs made due is sent in the same turn;
//! 2. sleep until a datagram arrives (read in batches), a command arrives from a handle or a
//!    connection, or the stack's next deadline, whichever is first.
//!
//! Two rules cover what the stack (rtc 0.21) drops while a tube comes up: until the channel is
//! open, the stack's events are taken after each datagram (a first frame right behind the
//! COOKIE-ACK that opens the channel would otherwise reach a channel not yet open, and be lost
//! though acknowledged); and a DTLS record that arrives before ICE has selected a pair is kept
//! and handed to the stack once it has (the peer's ClientHello can overtake the check response
//! that selects the pair; dropped, it would wait for the peer's 1 s retransmission).
//!
//! Nothing else touches the peer connection; handles talk to the task through commands. While
//! connecting, ICE checks pairs every [`TubeConfig::ice_check_interval`] (5 ms, the RFC 8445
//! minimum pacing); once connected, only the stack's keepalives (every 2 s) and SCTP heartbeats
//! remain, so an idle tube sleeps.
//!
//! # Connections
//!
//! All TCP connections of a tube share one pre-negotiated data channel, as frames
//! (`sallyport_protocol::frame`): per-connection flow control keeps one slow reader from
//! stalling the others, and the scheduler serves connections round robin.

mod connection;
mod driver;
mod gather;
pub mod mux;
mod net;
mod sdp;
mod turn;
mod udp;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use sallyport_protocol::IceServer;
use sallyport_protocol::{CloseReason, IceCandidate, SessionDescription};
use tokio::sync::{mpsc, oneshot, watch};

pub use connection::{ByteCounters, Connection, ConnectionEnd};
pub use mux::Side;

/// Errors of the tube, each with a stable code.
#[derive(Debug, thiserror::Error)]
pub enum TubeError {
    #[error("webrtc: {0}")]
    WebRtc(String),
    #[error("invalid session description: {0}")]
    InvalidDescription(String),
    #[error("invalid ICE candidate: {0}")]
    InvalidCandidate(String),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
    #[error("the tube is closed")]
    Closed,
    #[error("the tube failed: {0}")]
    Failed(String),
    #[error("the gateway refused the connection: {0}")]
    Refused(CloseReason),
    #[error("invalid tube configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Io(String),
}

impl TubeError {
    pub fn code(&self) -> sallyport_protocol::Code {
        use sallyport_protocol::Code;
        match self {
            TubeError::WebRtc(_) => Code::WebrtcError,
            TubeError::InvalidDescription(_) => Code::InvalidSdp,
            TubeError::InvalidCandidate(_) => Code::InvalidCandidate,
            TubeError::Timeout(..) => Code::WebrtcTimeout,
            TubeError::Closed => Code::TubeClosed,
            TubeError::Failed(_) => Code::WebrtcFailed,
            TubeError::Refused(reason) => reason.code(),
            TubeError::Config(_) => Code::InvalidConfig,
            TubeError::Io(_) => Code::IoError,
        }
    }
}

impl From<rtc::shared::error::Error> for TubeError {
    fn from(e: rtc::shared::error::Error) -> Self {
        TubeError::WebRtc(e.to_string())
    }
}

pub type Result<T, E = TubeError> = std::result::Result<T, E>;

/// The largest UDP payload a tube reads: any datagram IPv4 can carry.
pub const MAX_RECEIVE_DATAGRAM: usize = 65_507;

/// Knobs of a tube. The defaults suit loopback and a LAN; every field can be left alone.
#[derive(Debug, Clone)]
pub struct TubeConfig {
    /// Local UDP addresses to bind (`127.0.0.1:0`, `0.0.0.0:0`, ...); a wildcard becomes one
    /// socket per usable interface address.
    pub udp_addrs: Vec<String>,
    /// STUN servers (`stun:host:port`) for server-reflexive candidates and TURN servers
    /// (`turn:host:port`, with credentials) for relayed ones; empty for host candidates only.
    pub ice_servers: Vec<IceServer>,
    /// Use relayed candidates only (no host or server-reflexive ones): the path always goes
    /// through a TURN server.
    pub relay_only: bool,
    /// Bind sockets whose address has port 0 to a port in this range instead (for a
    /// firewall that opens only these).
    pub udp_port_range: Option<(u16, u16)>,
    /// A 1:1 NAT in front of this host: announce this address (with each socket's port) as the
    /// only candidate, instead of the addresses the sockets are bound to.
    pub advertise_ip: Option<std::net::IpAddr>,
    /// ICE check pacing while connecting. Once connected only keepalives remain.
    pub ice_check_interval: Duration,
    /// Give up connecting after this long.
    pub connect_timeout: Duration,
    /// Largest UDP payload to send. `None`: from the path (the loopback interface's MTU when
    /// every socket is on loopback, otherwise the IPv6 minimum, 1280 bytes less headers).
    pub max_datagram: Option<usize>,
    /// The largest UDP payload the peer accepts, when it said (the client does, in its sealed
    /// offer); sends never exceed it. `None`: the peer takes whatever the path carries.
    pub peer_max_datagram: Option<usize>,
    /// UDP receive and send buffers to ask the kernel for; the SCTP receive window is set to
    /// what the receive buffer actually holds, so that a burst never overflows it.
    pub udp_buffer_bytes: usize,
    /// Receive window of each TCP connection (its buffering when the local reader is slow).
    pub connection_window: u32,
    /// Gateway: most TCP connections open at once in one tube.
    pub max_connections: usize,
    /// Client: offer `a=setup:passive`, so that the gateway is the DTLS and SCTP client. It
    /// learns of the nomination first (it is ICE's controlled agent) and its COOKIE-ECHO opens
    /// the client's channel: a round trip less than with the client as DTLS client.
    pub offer_passive: bool,
}

impl Default for TubeConfig {
    fn default() -> Self {
        Self {
            udp_addrs: vec!["127.0.0.1:0".into()],
            ice_servers: Vec::new(),
            relay_only: false,
            udp_port_range: None,
            advertise_ip: None,
            ice_check_interval: Duration::from_millis(5),
            connect_timeout: Duration::from_secs(30),
            max_datagram: None,
            peer_max_datagram: None,
            udp_buffer_bytes: 4 * 1024 * 1024,
            connection_window: 1024 * 1024,
            max_connections: 64,
            offer_passive: true,
        }
    }
}

impl TubeConfig {
    /// Whether a TURN server may relay this end's datagrams.
    pub fn may_relay(&self) -> bool {
        self.ice_servers
            .iter()
            .flat_map(|s| &s.urls)
            .any(|u| u.starts_with("turn"))
    }

    /// The largest datagram this end can take from its peer (the client says so in its
    /// offer): any size directly, but a relay may drop big ones (coturn does), so the size
    /// every path carries when a TURN server may be in the way.
    pub fn receive_limit(&self) -> usize {
        if self.may_relay() {
            sallyport_protocol::DEFAULT_PEER_DATAGRAM as usize
        } else {
            MAX_RECEIVE_DATAGRAM
        }
    }

    /// Check what can be checked before any socket exists.
    pub fn validate(&self) -> Result<()> {
        for addr in &self.udp_addrs {
            addr.parse::<std::net::SocketAddr>().map_err(|_| {
                TubeError::Config(format!(
                    "webrtc_udp: {addr:?} is not an address such as 127.0.0.1:0 or 0.0.0.0:0"
                ))
            })?;
        }
        if self.udp_addrs.is_empty() {
            return Err(TubeError::Config("webrtc_udp: no address given".into()));
        }
        let (_, turn) = gather::parse_ice_servers(&self.ice_servers)?;
        if self.relay_only && turn.is_empty() {
            return Err(TubeError::Config(
                "relay_only needs a turn: server in ice_servers".into(),
            ));
        }
        if let Some((low, high)) = self.udp_port_range {
            if low == 0 || low > high {
                return Err(TubeError::Config(format!(
                    "webrtc_ports: {low}-{high} is not a range of ports (1-65535, low to high)"
                )));
            }
        }
        if let Some(n) = self.max_datagram {
            if !(576..=65507).contains(&n) {
                return Err(TubeError::Config(format!(
                    "max_datagram: {n} is outside 576..=65507 bytes"
                )));
            }
        }
        Ok(())
    }
}

/// How a tube ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TubeEnd {
    /// The peer ended it, with its reason.
    Peer(CloseReason),
    /// The network path failed (ICE consent lost, DTLS or SCTP gone) without a word.
    Failed,
    /// This side ended it.
    Local(CloseReason),
}

/// When each layer of the data plane came up, and how the tube ended.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub ice_connected: Option<Instant>,
    pub dtls_connected: Option<Instant>,
    pub sctp_connected: Option<Instant>,
    pub channel_open: Option<Instant>,
    pub ended: Option<TubeEnd>,
    /// The ICE path in use, once there is one: `type address -> type address`.
    pub path: Option<String>,
    /// Since when ICE has heard nothing from the peer (consent lost), while it lasts.
    pub disconnected_since: Option<Instant>,
    /// Largest SCTP packet this side sends.
    pub sctp_mtu: usize,
}

/// A layer of the data plane, in the order they come up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Milestone {
    IceConnected,
    DtlsConnected,
    SctpConnected,
    ChannelOpen,
}

impl Milestone {
    fn reached(self, status: &Status) -> Option<Instant> {
        match self {
            Milestone::IceConnected => status.ice_connected,
            Milestone::DtlsConnected => status.dtls_connected,
            Milestone::SctpConnected => status.sctp_connected,
            Milestone::ChannelOpen => status.channel_open,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Milestone::IceConnected => "ICE to connect",
            Milestone::DtlsConnected => "DTLS to connect",
            Milestone::SctpConnected => "SCTP to connect",
            Milestone::ChannelOpen => "the data channel to open",
        }
    }
}

/// What a tube reports to its owner as it happens.
pub enum TubeEvent {
    /// A local ICE candidate to trickle to the peer.
    LocalCandidate(IceCandidate),
    /// Every local candidate has been reported.
    GatheringComplete,
    /// Gateway: the client opened a connection; dial the target, then
    /// [`Connection::accept`] and [`Connection::bridge`], or [`Connection::refuse`].
    Incoming(Connection),
}

/// UDP traffic of a tube so far, every datagram counted (ICE, DTLS, SCTP).
#[derive(Debug, Default)]
pub struct Traffic {
    pub datagrams_sent: AtomicU64,
    pub datagrams_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    /// TCP connections the tube carries right now.
    pub connections: AtomicU64,
}

/// One end of a tube. Dropping it closes the tube.
pub struct Tube {
    commands: mpsc::UnboundedSender<driver::Command>,
    status: watch::Receiver<Status>,
    traffic: Arc<Traffic>,
}

impl Tube {
    /// The client's end: a peer connection and its offer (carrying the host candidates).
    pub async fn offer(
        config: &TubeConfig,
    ) -> Result<(Tube, mpsc::UnboundedReceiver<TubeEvent>, SessionDescription)> {
        driver::start(config, Side::Client, None).await
    }

    /// The gateway's end: answer `offer` (the answer carries the host candidates).
    pub async fn answer(
        config: &TubeConfig,
        offer: &SessionDescription,
    ) -> Result<(Tube, mpsc::UnboundedReceiver<TubeEvent>, SessionDescription)> {
        if offer.kind != "offer" {
            return Err(TubeError::InvalidDescription(format!(
                "expected an offer, got {:?}",
                offer.kind
            )));
        }
        driver::start(config, Side::Gateway, Some(offer)).await
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> driver::Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .map_err(|_| TubeError::Closed)?;
        rx.await.map_err(|_| TubeError::Closed)
    }

    /// Client: apply the gateway's answer.
    pub async fn apply_answer(&self, answer: &SessionDescription) -> Result<()> {
        if answer.kind != "answer" {
            return Err(TubeError::InvalidDescription(format!(
                "expected an answer, got {:?}",
                answer.kind
            )));
        }
        let answer = answer.clone();
        self.ask(|reply| driver::Command::ApplyAnswer { answer, reply })
            .await?
    }

    /// Add one of the peer's candidates. A candidate that cannot be used is an error the
    /// caller may ignore; connectivity checks from unknown addresses are answered anyway
    /// (peer-reflexive candidates), so a late candidate costs nothing.
    pub async fn add_remote_candidate(&self, candidate: &IceCandidate) -> Result<()> {
        let candidate = candidate.clone();
        self.ask(|reply| driver::Command::AddCandidate { candidate, reply })
            .await?
    }

    /// The local description with every candidate gathered so far in it.
    pub async fn local_description(&self) -> Result<SessionDescription> {
        self.ask(|reply| driver::Command::LocalDescription { reply })
            .await?
    }

    /// Datagrams and bytes on the wire so far.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// A receiver of status changes.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Wait, event-driven, until `milestone` is reached; returns when it was. Fails at once if
    /// the tube ends first.
    pub async fn reached(&self, milestone: Milestone, timeout: Duration) -> Result<Instant> {
        let mut status = self.status.clone();
        let wait = async {
            loop {
                {
                    let now = status.borrow_and_update();
                    if let Some(at) = milestone.reached(&now) {
                        return Ok(at);
                    }
                    if let Some(end) = now.ended {
                        return Err(ended_error(end));
                    }
                }
                if status.changed().await.is_err() {
                    return Err(TubeError::Closed);
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| TubeError::Timeout(timeout, milestone.describe()))?
    }

    /// As [`reached`](Self::reached), but looking every `tick` instead of reacting, as the
    /// legacy design did.
    pub async fn poll_reached(
        &self,
        milestone: Milestone,
        timeout: Duration,
        tick: Duration,
    ) -> Result<Instant> {
        let started = Instant::now();
        loop {
            {
                let now = self.status.borrow();
                if let Some(at) = milestone.reached(&now) {
                    return Ok(at);
                }
                if let Some(end) = now.ended {
                    return Err(ended_error(end));
                }
            }
            if started.elapsed() >= timeout {
                return Err(TubeError::Timeout(timeout, milestone.describe()));
            }
            tokio::time::sleep(tick).await;
        }
    }

    /// Client: open a connection to the resource's target. Bytes may be bridged at once (the
    /// gateway holds them until the target answers); [`Connection::opened`] tells when it did.
    pub async fn open(&self) -> Result<Connection> {
        self.ask(|reply| driver::Command::Open { reply }).await?
    }

    /// Client: connection 1, which the gateway opens by itself because the client's `start`
    /// asked (`open_first`); take it before the answer is applied, so that nothing the gateway
    /// says about it can come first. [`Connection::opened`] tells when the target answered.
    pub async fn adopt_first(&self) -> Result<Connection> {
        self.ask(|reply| driver::Command::AdoptFirst { reply })
            .await?
    }

    /// Client: connection 1's outcome as the gateway streamed it through the router (`opened`),
    /// which usually arrives before the channel opens; `refused` is the reason it could not be
    /// opened.
    pub fn first_heard(&self, refused: Option<CloseReason>) {
        let _ = self.commands.send(driver::Command::FirstHeard { refused });
    }

    /// Gateway: open connection 1 at once, as the client's `start` asked; it arrives as an
    /// incoming connection like any other.
    pub fn open_first(&self) {
        let _ = self.commands.send(driver::Command::OpenFirst);
    }

    /// Client: restart ICE over a path that broke (new credentials; DTLS, SCTP and every
    /// connection carry on above it). Send the offer to the gateway and apply its answer with
    /// [`apply_answer`](Self::apply_answer).
    pub async fn restart(&self) -> Result<SessionDescription> {
        self.ask(|reply| driver::Command::Restart { reply }).await?
    }

    /// Gateway: the client's restart offer; the answer goes back the same way.
    pub async fn accept_restart(&self, offer: &SessionDescription) -> Result<SessionDescription> {
        if offer.kind != "offer" {
            return Err(TubeError::InvalidDescription(format!(
                "expected an offer, got {:?}",
                offer.kind
            )));
        }
        let offer = offer.clone();
        self.ask(|reply| driver::Command::AcceptRestart { offer, reply })
            .await?
    }

    /// Is the peer still there? A `PING` over the tube; returns the round trip once its
    /// `PONG` is back, or fails after `timeout`.
    pub async fn probe(&self, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(driver::Command::Probe { reply: tx })
            .map_err(|_| TubeError::Closed)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(())) => Ok(started.elapsed()),
            Ok(Err(_)) => Err(TubeError::Closed),
            Err(_) => Err(TubeError::Timeout(timeout, "the peer to answer a ping")),
        }
    }

    /// End the tube, telling the peer why: waits (up to a second) until the peer has the
    /// message, so it learns the reason rather than a network failure.
    pub async fn shutdown(&self, reason: CloseReason) {
        let _ = self
            .ask(|reply| driver::Command::Shutdown { reason, reply })
            .await;
    }

    /// Resolves when the tube has ended, with how.
    pub async fn ended(&self) -> TubeEnd {
        let mut status = self.status.clone();
        let end = match status.wait_for(|s| s.ended.is_some()).await {
            Ok(s) => s.ended.unwrap_or(TubeEnd::Local(CloseReason::Normal)),
            Err(_) => TubeEnd::Local(CloseReason::Normal),
        };
        end
    }

    /// How it ended, if it has.
    pub fn end(&self) -> Option<TubeEnd> {
        self.status.borrow().ended
    }
}

impl Drop for Tube {
    fn drop(&mut self) {
        let _ = self.commands.send(driver::Command::Close);
    }
}

fn ended_error(end: TubeEnd) -> TubeError {
    match end {
        TubeEnd::Peer(reason) => TubeError::Failed(format!("the peer closed the tube: {reason}")),
        TubeEnd::Failed => TubeError::Failed("the network path failed".into()),
        TubeEnd::Local(_) => TubeError::Closed,
    }
}

/// Shared by the tube handle and its connections.
pub(crate) type Commands = mpsc::UnboundedSender<driver::Command>;

/// Entry points for the fuzz targets (`fuzz/`): the parsing a gateway does on what a client
/// sends, without sockets. Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use rtc::peer_connection::configuration::RTCConfigurationBuilder;
    use rtc::peer_connection::sdp::RTCSessionDescription;
    use rtc::peer_connection::transport::RTCIceCandidateInit;
    use rtc::peer_connection::RTCPeerConnectionBuilder;

    use crate::mux::{Mux, Side};

    /// What the gateway does with an offer's SDP before it has sockets: parse it, find the
    /// data section, apply it and answer. Errors are fine; panics are not.
    pub fn offer(sdp: &str) {
        let _ = crate::sdp::application_section(sdp);
        let Ok(mut pc) = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .build(std::time::Instant::now())
        else {
            return;
        };
        let Ok(offer) = RTCSessionDescription::offer(sdp.to_owned()) else {
            return;
        };
        if pc
            .set_remote_description(std::time::Instant::now(), offer)
            .is_ok()
        {
            if let Ok(answer) = pc.create_answer(None) {
                let _ = pc.set_local_description(std::time::Instant::now(), answer);
            }
        }
    }

    /// A trickled candidate applied to a gateway that holds a valid offer. One peer
    /// connection takes a thousand inputs before a fresh one (building one costs a key pair).
    pub fn candidate(offer_sdp: &str, candidate: &str, mid: Option<String>, index: Option<u16>) {
        thread_local! {
            static PEER: std::cell::RefCell<(usize, Option<rtc::peer_connection::RTCPeerConnection>)> =
                const { std::cell::RefCell::new((0, None)) };
        }
        PEER.with(|peer| {
            let mut peer = peer.borrow_mut();
            if peer.1.is_none() || peer.0 >= 1000 {
                let Ok(mut pc) = RTCPeerConnectionBuilder::new()
                    .with_configuration(RTCConfigurationBuilder::new().build())
                    .build(std::time::Instant::now())
                else {
                    return;
                };
                let Ok(offer) = RTCSessionDescription::offer(offer_sdp.to_owned()) else {
                    return;
                };
                if pc
                    .set_remote_description(std::time::Instant::now(), offer)
                    .is_err()
                {
                    return;
                }
                *peer = (0, Some(pc));
            }
            peer.0 += 1;
            if let Some(pc) = peer.1.as_mut() {
                let _ = pc.add_remote_candidate(RTCIceCandidateInit {
                    candidate: candidate.to_owned(),
                    sdp_mid: mid,
                    sdp_mline_index: index,
                    ..Default::default()
                });
            }
        });
    }

    /// Messages from the channel, in order, into a gateway's and a client's multiplexer, and
    /// whatever they answer drained.
    pub fn frames(messages: &[&[u8]]) {
        let mut gateway = Mux::new(Side::Gateway, 1 << 20, 4);
        let mut client = Mux::new(Side::Client, 1 << 20, 4);
        client.open();
        for message in messages {
            for mux in [&mut gateway, &mut client] {
                mux.handle_message(bytes::BytesMut::from(*message));
                while mux.poll_event().is_some() {}
                while mux.poll_frame().is_some() {}
            }
        }
    }
}
