//! The WebRTC driver of a tube, for both ends: the client's offerer and the gateway's answerer.
//!
//! Everything that touches the `webrtc` crate lives here, so that the launch pipeline (in the
//! core crate) and the gateway see only [`Peer`], [`Channel`] and the protocol's own types.
//! Settings follow PLATFORM.md: mDNS off, host candidates (loopback included when bound there),
//! an SCTP receive window that fits a default UDP socket buffer, and a send-buffer limit so
//! that a sender feels back-pressure instead of racing ahead.

mod bridge;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use rtc::ice::mdns::MulticastDnsMode;
use sallyport_protocol::{IceCandidate, SessionDescription};
use tokio::sync::{mpsc, watch};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceGatheringState, RTCIceServer, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSdpType, RTCSessionDescription, SettingEngineBuilder,
};

pub use bridge::{bridge, BridgeStats, ByteCounters, EOF_MARKER};

/// Errors of the WebRTC layer, with a stable code.
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
    #[error("the peer connection is closed")]
    Closed,
    #[error("the peer connection failed")]
    Failed,
}

impl TubeError {
    pub fn code(&self) -> &'static str {
        match self {
            TubeError::WebRtc(_) => "webrtc_error",
            TubeError::InvalidDescription(_) => "invalid_sdp",
            TubeError::InvalidCandidate(_) => "invalid_candidate",
            TubeError::Timeout(..) => "webrtc_timeout",
            TubeError::Closed => "tube_closed",
            TubeError::Failed => "webrtc_failed",
        }
    }
}

impl From<webrtc::error::Error> for TubeError {
    fn from(e: webrtc::error::Error) -> Self {
        TubeError::WebRtc(e.to_string())
    }
}

pub type Result<T, E = TubeError> = std::result::Result<T, E>;

/// Knobs of the WebRTC stack. The defaults suit loopback and a LAN.
#[derive(Debug, Clone)]
pub struct TubeConfig {
    /// Local UDP addresses to gather host candidates on (`127.0.0.1:0`, `0.0.0.0:0`, ...).
    pub udp_addrs: Vec<String>,
    /// STUN/TURN URLs; empty for host candidates only.
    pub ice_servers: Vec<String>,
    /// SCTP receive window. Must fit the kernel's UDP receive buffer or datagrams are dropped
    /// and throughput collapses (PLATFORM.md).
    pub sctp_receive_buffer: u32,
    /// Per-channel send buffer; `send` blocks beyond it (back-pressure).
    pub send_buffer_limit: usize,
    /// ICE connectivity-check interval; `None` keeps the stack's default (200 ms).
    pub ice_check_interval: Option<Duration>,
}

impl Default for TubeConfig {
    fn default() -> Self {
        Self {
            udp_addrs: vec!["127.0.0.1:0".into()],
            ice_servers: Vec::new(),
            sctp_receive_buffer: 128 * 1024,
            send_buffer_limit: 256 * 1024,
            ice_check_interval: None,
        }
    }
}

/// Connection state as the pipeline sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TubeState {
    New,
    Connecting,
    Connected,
    Disconnected,
    Failed,
    Closed,
}

impl TubeState {
    fn from_rtc(state: RTCPeerConnectionState) -> Self {
        match state {
            RTCPeerConnectionState::Connecting => TubeState::Connecting,
            RTCPeerConnectionState::Connected => TubeState::Connected,
            RTCPeerConnectionState::Disconnected => TubeState::Disconnected,
            RTCPeerConnectionState::Failed => TubeState::Failed,
            RTCPeerConnectionState::Closed => TubeState::Closed,
            _ => TubeState::New,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TubeState::New => "new",
            TubeState::Connecting => "connecting",
            TubeState::Connected => "connected",
            TubeState::Disconnected => "disconnected",
            TubeState::Failed => "failed",
            TubeState::Closed => "closed",
        }
    }
}

/// What a peer reports as it happens.
pub enum PeerEvent {
    /// A local ICE candidate to trickle to the other side.
    LocalCandidate(IceCandidate),
    /// All local candidates have been gathered.
    GatheringComplete,
    /// The remote side opened a data channel (answerer side).
    IncomingChannel(Channel),
}

struct Handler {
    events: mpsc::UnboundedSender<PeerEvent>,
    state: watch::Sender<TubeState>,
}

#[async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => {
                let _ = self
                    .events
                    .send(PeerEvent::LocalCandidate(candidate_from_rtc(init)));
            }
            Err(e) => tracing::warn!(error = %e, "could not serialize a local candidate"),
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.events.send(PeerEvent::GatheringComplete);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let state = TubeState::from_rtc(state);
        tracing::debug!(state = state.as_str(), "peer connection state");
        self.state.send_replace(state);
    }

    async fn on_data_channel(&self, data_channel: Arc<dyn DataChannel>) {
        let label = data_channel.label().await.unwrap_or_default();
        let _ = self.events.send(PeerEvent::IncomingChannel(Channel {
            inner: data_channel,
            label,
        }));
    }
}

/// One end of a tube: a WebRTC peer connection.
pub struct Peer {
    pc: Arc<dyn PeerConnection>,
    state: watch::Receiver<TubeState>,
}

impl Peer {
    /// Build a peer connection; its events arrive on the returned receiver.
    pub async fn new(config: &TubeConfig) -> Result<(Self, mpsc::UnboundedReceiver<PeerEvent>)> {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(TubeState::New);
        let handler = Arc::new(Handler {
            events: events_tx,
            state: state_tx,
        });

        let binds_loopback = config.udp_addrs.iter().any(|a| {
            a.parse::<SocketAddr>()
                .map(|s| s.ip().is_loopback())
                .unwrap_or(a.starts_with("localhost"))
        });
        let mut settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(binds_loopback)
            .with_sctp_max_receive_buffer_size(config.sctp_receive_buffer);
        if let Some(interval) = config.ice_check_interval {
            settings = settings.with_ice_connection_attempts(Some(interval), None);
        }
        let rtc_config = RTCConfigurationBuilder::new()
            .with_ice_servers(
                config
                    .ice_servers
                    .iter()
                    .map(|url| RTCIceServer {
                        urls: vec![url.clone()],
                        ..Default::default()
                    })
                    .collect(),
            )
            .build();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(rtc_config)
            .with_setting_engine(settings.build())
            .with_handler(handler)
            .with_udp_addrs(config.udp_addrs.clone())
            .with_data_channel_send_buffer_limit(config.send_buffer_limit)
            .build()
            .await?;
        Ok((
            Self {
                pc: Arc::new(pc),
                state: state_rx,
            },
            events_rx,
        ))
    }

    /// Offerer: create a data channel (must precede the offer so that SCTP is negotiated).
    pub async fn create_channel(&self, label: &str) -> Result<Channel> {
        let dc = self.pc.create_data_channel(label, None).await?;
        Ok(Channel {
            inner: dc,
            label: label.to_owned(),
        })
    }

    /// Offerer: create the offer and apply it locally.
    pub async fn create_offer(&self) -> Result<SessionDescription> {
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer.clone()).await?;
        Ok(description_from_rtc(&offer))
    }

    /// Answerer: apply the remote offer, create the answer and apply it locally.
    pub async fn accept_offer(&self, offer: &SessionDescription) -> Result<SessionDescription> {
        if offer.kind != "offer" {
            return Err(TubeError::InvalidDescription(format!(
                "expected an offer, got {:?}",
                offer.kind
            )));
        }
        let remote = RTCSessionDescription::offer(offer.sdp.clone())
            .map_err(|e| TubeError::InvalidDescription(e.to_string()))?;
        self.pc
            .set_remote_description(remote)
            .await
            .map_err(|e| TubeError::InvalidDescription(e.to_string()))?;
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer.clone()).await?;
        Ok(description_from_rtc(&answer))
    }

    /// Offerer: apply the gateway's answer.
    pub async fn apply_answer(&self, answer: &SessionDescription) -> Result<()> {
        if answer.kind != "answer" {
            return Err(TubeError::InvalidDescription(format!(
                "expected an answer, got {:?}",
                answer.kind
            )));
        }
        let remote = RTCSessionDescription::answer(answer.sdp.clone())
            .map_err(|e| TubeError::InvalidDescription(e.to_string()))?;
        self.pc
            .set_remote_description(remote)
            .await
            .map_err(|e| TubeError::InvalidDescription(e.to_string()))
    }

    pub async fn add_remote_candidate(&self, candidate: &IceCandidate) -> Result<()> {
        self.pc
            .add_ice_candidate(RTCIceCandidateInit {
                candidate: candidate.candidate.clone(),
                sdp_mid: candidate.sdp_mid.clone(),
                sdp_mline_index: candidate.sdp_mline_index,
                ..Default::default()
            })
            .await
            .map_err(|e| TubeError::InvalidCandidate(e.to_string()))
    }

    /// The current local description, with every candidate gathered so far embedded.
    pub async fn local_description(&self) -> Option<SessionDescription> {
        self.pc
            .local_description()
            .await
            .map(|d| description_from_rtc(&d))
    }

    /// A receiver of state changes, for callers that react to `Disconnected`/`Failed`.
    pub fn state_changes(&self) -> watch::Receiver<TubeState> {
        self.state.clone()
    }

    /// Wait (event-driven) until ICE and DTLS are connected, or fail/close/time out.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<()> {
        let mut state = self.state.clone();
        let wait = async {
            loop {
                match *state.borrow_and_update() {
                    TubeState::Connected => return Ok(()),
                    TubeState::Failed => return Err(TubeError::Failed),
                    TubeState::Closed => return Err(TubeError::Closed),
                    _ => {}
                }
                if state.changed().await.is_err() {
                    return Err(TubeError::Closed);
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| TubeError::Timeout(timeout, "ICE and DTLS to connect"))?
    }

    pub async fn close(&self) {
        if let Err(e) = self.pc.close().await {
            tracing::debug!(error = %e, "closing peer connection");
        }
    }
}

/// One data channel.
#[derive(Clone)]
pub struct Channel {
    inner: Arc<dyn DataChannel>,
    label: String,
}

/// What a channel reports.
#[derive(Debug)]
pub enum ChannelEvent {
    Open,
    Message(BytesMut),
    Text(String),
    Closed,
}

impl Channel {
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Next event; `Closed` once the channel is gone (repeats are not delivered).
    pub async fn next_event(&self) -> ChannelEvent {
        loop {
            match self.inner.poll().await {
                None | Some(DataChannelEvent::OnClose) => return ChannelEvent::Closed,
                Some(DataChannelEvent::OnOpen) => return ChannelEvent::Open,
                Some(DataChannelEvent::OnMessage(msg)) => {
                    if msg.is_string {
                        match String::from_utf8(msg.data.to_vec()) {
                            Ok(text) => return ChannelEvent::Text(text),
                            Err(_) => continue,
                        }
                    }
                    return ChannelEvent::Message(msg.data);
                }
                Some(_) => continue,
            }
        }
    }

    /// Wait until the channel is open (SCTP association up and the channel acknowledged).
    pub async fn wait_open(&self, timeout: Duration) -> Result<()> {
        let wait = async {
            loop {
                match self.next_event().await {
                    ChannelEvent::Open => return Ok(()),
                    ChannelEvent::Closed => return Err(TubeError::Closed),
                    // Nothing is sent before open; ignore anything else defensively.
                    _ => continue,
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| TubeError::Timeout(timeout, "the data channel to open"))?
    }

    /// Send binary data; blocks while the channel's send buffer is full.
    pub async fn send(&self, data: &[u8]) -> Result<()> {
        self.inner
            .send(BytesMut::from(data))
            .await
            .map_err(|_| TubeError::Closed)
    }

    pub async fn send_text(&self, text: &str) -> Result<()> {
        self.inner
            .send_text(text)
            .await
            .map_err(|_| TubeError::Closed)
    }

    pub async fn close(&self) {
        let _ = self.inner.close().await;
    }
}

fn description_from_rtc(desc: &RTCSessionDescription) -> SessionDescription {
    let kind = match desc.sdp_type {
        RTCSdpType::Offer => "offer",
        RTCSdpType::Answer => "answer",
        RTCSdpType::Pranswer => "pranswer",
        RTCSdpType::Rollback => "rollback",
        _ => "unspecified",
    };
    SessionDescription {
        kind: kind.to_owned(),
        sdp: desc.sdp.clone(),
    }
}

fn candidate_from_rtc(init: RTCIceCandidateInit) -> IceCandidate {
    IceCandidate {
        candidate: init.candidate,
        sdp_mid: init.sdp_mid,
        sdp_mline_index: init.sdp_mline_index,
    }
}
