//! The run loop of one tube over the sans-IO WebRTC core (see the crate docs for the contract).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::data_channel::{RTCDataChannelId, RTCDataChannelInit};
use rtc::peer_connection::configuration::setting_engine::{
    SctpMaxMessageSize, SettingEngineBuilder,
};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, CandidateRelayConfig, CandidateServerReflexiveConfig,
    RTCDtlsRole, RTCIceCandidate, RTCIceCandidateInit, RTCSctpTransportState,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use sallyport_protocol::frame::{MAX_FRAME_BYTES, TUBE_CHANNEL_ID, TUBE_CHANNEL_LABEL};
use sallyport_protocol::{CloseReason, IceCandidate, SessionDescription};
use tokio::sync::{mpsc, oneshot, watch};

use crate::connection::{Connection, Inbound, Local};
use crate::gather::{GatherOutput, Gatherer};
use crate::mux::{Mux, MuxEvent, Side};
use crate::net::{self, BoundSocket};
use crate::turn::{Turn, TurnOutput, TurnServer};
use crate::udp::Batch;
use crate::{Result, Status, TubeConfig, TubeEnd, TubeError, TubeEvent};

/// Frames are handed to SCTP while less than this is outstanding (sent, not yet acknowledged).
/// Enough to keep a fast path full; small enough that a new connection's first bytes do not
/// queue behind much bulk data (connections are served round robin above it).
const SCTP_HIGH_WATER: usize = 1024 * 1024;
/// Receive calls per socket per wake-up (each takes several datagrams) before the loop looks
/// at everything else.
const READ_ROUNDS: usize = 8;
/// How long a graceful shutdown waits for the peer to acknowledge the `SHUTDOWN` frame.
const SHUTDOWN_LINGER: Duration = Duration::from_secs(1);
/// The stack's ICE keepalive once connected: the only steady traffic of an idle tube.
const ICE_KEEPALIVE: Duration = Duration::from_secs(2);
/// Silence after which the path counts as broken (ICE `disconnected`): a keepalive and its
/// answer arrive every 2 s from each side, so 3 s of nothing is more than one lost packet, and
/// the session starts reconnecting while a user would still call it a pause.
const DISCONNECTED_AFTER: Duration = Duration::from_secs(3);

/// What handles and connections ask of the driver.
pub(crate) enum Command {
    ApplyAnswer {
        answer: SessionDescription,
        reply: oneshot::Sender<Result<()>>,
    },
    AddCandidate {
        candidate: IceCandidate,
        reply: oneshot::Sender<Result<()>>,
    },
    LocalDescription {
        reply: oneshot::Sender<Result<SessionDescription>>,
    },
    Open {
        reply: oneshot::Sender<Result<Connection>>,
    },
    Accept {
        conn: u32,
    },
    /// Gateway: open connection 1 now, as the client's `start` asked.
    OpenFirst,
    /// Client: connection 1, opened by the gateway at `start`.
    AdoptFirst {
        reply: oneshot::Sender<Result<Connection>>,
    },
    /// Client: connection 1's outcome, as the gateway streamed it through the router.
    FirstHeard {
        refused: Option<CloseReason>,
    },
    Data {
        conn: u32,
        frame: BytesMut,
    },
    Eof {
        conn: u32,
    },
    Consumed {
        conn: u32,
        n: usize,
    },
    Reset {
        conn: u32,
        reason: CloseReason,
    },
    StunResolved {
        server: Option<SocketAddr>,
    },
    TurnResolved {
        server: Option<TurnServer>,
    },
    /// Client: new ICE credentials and the offer that carries them.
    Restart {
        reply: oneshot::Sender<Result<SessionDescription>>,
    },
    /// Gateway: apply a restart offer and answer it.
    AcceptRestart {
        offer: SessionDescription,
        reply: oneshot::Sender<Result<SessionDescription>>,
    },
    /// Answered when the peer's `PONG` comes back.
    Probe {
        reply: oneshot::Sender<()>,
    },
    Shutdown {
        reason: CloseReason,
        reply: oneshot::Sender<()>,
    },
    /// The tube handle was dropped.
    Close,
}

/// Build the peer connection, its description and the task that drives it.
pub(crate) async fn start(
    config: &TubeConfig,
    side: Side,
    offer: Option<&SessionDescription>,
) -> Result<(
    crate::Tube,
    mpsc::UnboundedReceiver<TubeEvent>,
    SessionDescription,
)> {
    config.validate()?;
    let (stun, turn_urls) = crate::gather::parse_ice_servers(&config.ice_servers)?;
    let stun = if config.relay_only { Vec::new() } else { stun };
    let sockets = net::bind_all(
        &config.udp_addrs,
        config.udp_port_range,
        config.udp_buffer_bytes,
    )?;
    let path = config.max_datagram.unwrap_or_else(|| {
        sockets
            .iter()
            .map(|s| s.datagram_limit)
            .min()
            .unwrap_or(1232)
    });
    // The path is only half of it: a peer that reads datagrams into a smaller buffer drops
    // the rest silently, so never send it more than it said it takes.
    let datagram = path
        .min(config.peer_max_datagram.unwrap_or(usize::MAX))
        .min(config.receive_limit())
        .max(576);
    let relay_allowance = if turn_urls.is_empty() {
        0
    } else {
        net::TURN_OVERHEAD
    };
    let sctp_mtu = (datagram - net::DTLS_OVERHEAD - relay_allowance).min(net::MAX_SCTP_PACKET);
    // The SCTP window must fit what the smallest socket buffer holds, or a burst overflows it
    // and the kernel drops datagrams that SCTP then has to retransmit.
    let receive_window = sockets
        .iter()
        .map(|s| s.receive_buffer)
        .min()
        .unwrap_or(0)
        .clamp(128 * 1024, 64 * 1024 * 1024) as u32;

    let now = Instant::now();
    let binds_loopback = sockets.iter().any(|s| s.local.ip().is_loopback());
    // Checks stop after this many tries per pair: enough to cover the connect timeout.
    let attempts = (config.connect_timeout.as_millis()
        / config.ice_check_interval.as_millis().max(1))
    .clamp(7, u16::MAX as u128) as u16;
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_include_loopback_candidate(binds_loopback)
        .with_ice_connection_attempts(Some(config.ice_check_interval), Some(attempts))
        .with_ice_timeouts(
            Some(DISCONNECTED_AFTER),
            Some(config.connect_timeout),
            Some(ICE_KEEPALIVE),
        )
        // Nominate the best pair that works as soon as it works: candidates arrive together
        // (in the description or in one trickle), so waiting for better ones buys nothing and
        // the stack's defaults (0.5 s for reflexive, 2 s for relayed pairs) cost every launch.
        .with_srflx_acceptance_min_wait(Some(Duration::ZERO))
        .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
        .with_relay_acceptance_min_wait(Some(Duration::from_millis(50)))
        .with_sctp_mtu(sctp_mtu as u32)
        .with_sctp_max_receive_buffer_size(receive_window)
        .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(MAX_FRAME_BYTES as u32))
        .with_answering_dtls_role(answering_role(offer))
        .build();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings)
        .build(now)?;

    let mut host_candidates = Vec::new();
    for socket in sockets.iter().filter(|_| !config.relay_only) {
        let init = local_candidate(socket.local, config.advertise_ip)?;
        pc.add_local_candidate(init.clone())?;
        host_candidates.push(init.candidate);
    }
    let channel = pc
        .create_data_channel(
            TUBE_CHANNEL_LABEL,
            Some(RTCDataChannelInit {
                negotiated: Some(TUBE_CHANNEL_ID),
                ..Default::default()
            }),
        )?
        .id();

    let description = match offer {
        None => {
            let offer = pc.create_offer(None)?;
            pc.set_local_description(now, offer.clone())?;
            offer
        }
        Some(offer) => {
            let remote = RTCSessionDescription::offer(offer.sdp.clone())
                .map_err(|e| TubeError::InvalidDescription(e.to_string()))?;
            if crate::sdp::application_section(&remote.sdp).is_none() {
                return Err(TubeError::InvalidDescription(
                    "the offer has no data-channel (m=application) section".into(),
                ));
            }
            pc.set_remote_description(now, remote)
                .map_err(|e| TubeError::InvalidDescription(e.to_string()))?;
            let answer = pc.create_answer(None)?;
            pc.set_local_description(now, answer.clone())?;
            answer
        }
    };
    let (mid, mline) = crate::sdp::application_section(&description.sdp)
        .ok_or_else(|| TubeError::WebRtc("our own description has no data section".into()))?;

    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (status_tx, status_rx) = watch::channel(Status {
        sctp_mtu,
        ..Status::default()
    });
    for candidate in &host_candidates {
        let _ = events_tx.send(TubeEvent::LocalCandidate(IceCandidate {
            candidate: candidate.clone(),
            sdp_mid: Some(mid.clone()),
            sdp_mline_index: Some(mline),
        }));
    }
    let mut gatherer = Gatherer::default();
    gatherer.expect_resolutions(stun.len());
    for server in stun {
        let commands = commands_tx.clone();
        tokio::spawn(async move {
            let resolved = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::lookup_host((server.host.as_str(), server.port)),
            )
            .await
            .ok()
            .and_then(|r| r.ok())
            .and_then(|mut addrs| addrs.next());
            let _ = commands.send(Command::StunResolved { server: resolved });
        });
    }
    let mut turn = Turn::new();
    turn.expect_resolutions(turn_urls.len());
    for url in turn_urls {
        let commands = commands_tx.clone();
        tokio::spawn(async move {
            let resolved = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::lookup_host((url.host.as_str(), url.port)),
            )
            .await
            .ok()
            .and_then(|r| r.ok())
            .and_then(|mut addrs| addrs.next());
            let server = resolved.map(|addr| TurnServer {
                addr,
                url: url.url,
                username: url.username,
                password: url.password,
            });
            let _ = commands.send(Command::TurnResolved { server });
        });
    }
    let gathering_reported = gatherer.done() && turn.done();
    if gathering_reported {
        let _ = events_tx.send(TubeEvent::GatheringComplete);
    }
    tracing::debug!(
        side = ?side,
        sctp_mtu,
        receive_window,
        sockets = ?sockets.iter().map(|s| s.local).collect::<Vec<_>>(),
        "tube created"
    );

    let traffic = Arc::new(crate::Traffic::default());
    let offer_passive = config.offer_passive && offer.is_none();
    let driver = Driver {
        traffic: traffic.clone(),
        pc,
        side,
        channel,
        sockets,
        mux: Mux::new(side, config.connection_window, config.max_connections),
        locals: HashMap::new(),
        commands: commands_rx,
        commands_tx: commands_tx.clone(),
        events: events_tx,
        status: status_tx,
        outbox: std::collections::VecDeque::new(),
        gatherer,
        turn,
        gathered: Vec::new(),
        gathering_reported,
        mid: mid.clone(),
        mline,
        channel_open: false,
        closing: None,
        last_timeout: now,
        remote_description_set: offer.is_some(),
        held_nominations: HashMap::new(),
        early_records: Vec::new(),
        offer_passive,
        probes: HashMap::new(),
        next_probe: 1,
    };
    tokio::spawn(driver.run());
    Ok((
        crate::Tube {
            commands: commands_tx,
            status: status_rx,
            traffic,
        },
        events_rx,
        SessionDescription {
            kind: if offer.is_some() { "answer" } else { "offer" }.into(),
            // The stack offers `actpass` and takes the role the answer leaves it.
            sdp: if offer_passive {
                crate::sdp::as_passive(&description.sdp)
            } else {
                description.sdp
            },
        },
    ))
}

/// The gateway's DTLS role. A standard offer (`a=setup:actpass`) gets the server: its SCTP
/// endpoint then accepts the INIT a standard client sends as DTLS client (the stack's DTLS
/// client side refuses incoming INITs). An offer of `a=setup:passive` gets the client, as RFC
/// 5763 requires: the gateway, as ICE's controlled agent, learns that a pair is nominated half
/// a round trip before the client does, so its ClientHello leaves that much earlier, and as
/// SCTP client its COOKIE-ECHO opens the client's channel a round trip before a COOKIE-ACK
/// would.
fn answering_role(offer: Option<&SessionDescription>) -> RTCDtlsRole {
    match offer {
        Some(offer) if crate::sdp::offers_passive(&offer.sdp) => RTCDtlsRole::Client,
        _ => RTCDtlsRole::Server,
    }
}

/// The candidate of one socket: a host candidate, or behind a 1:1 NAT the mapped address as a
/// server-reflexive candidate whose base is the socket (so checks still go out from it).
fn local_candidate(
    local: SocketAddr,
    advertise: Option<std::net::IpAddr>,
) -> Result<RTCIceCandidateInit> {
    let base_config = |address: std::net::IpAddr| CandidateConfig {
        network: "udp".into(),
        address: address.to_string(),
        port: local.port(),
        component: 1,
        ..Default::default()
    };
    let candidate = match advertise {
        None => CandidateHostConfig {
            base_config: base_config(local.ip()),
            ..Default::default()
        }
        .new_candidate_host()?,
        Some(mapped) => CandidateServerReflexiveConfig {
            base_config: base_config(mapped),
            rel_addr: local.ip().to_string(),
            rel_port: local.port(),
            url: None,
        }
        .new_candidate_server_reflexive()?,
    };
    Ok(RTCIceCandidate::from(&candidate).to_json()?)
}

/// Hand one datagram to the stack, as received on `local` from `from`.
fn feed(pc: &mut RTCPeerConnection, local: SocketAddr, from: SocketAddr, datagram: BytesMut) {
    if let Err(e) = pc.handle_read(TaggedBytesMut {
        now: Instant::now(),
        transport: TransportContext {
            local_addr: local,
            peer_addr: from,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        },
        message: datagram,
    }) {
        tracing::trace!(error = %e, %from, "datagram not accepted");
    }
}

/// A DTLS record (first byte 20 to 63, RFC 7983 §7).
fn is_dtls(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(20..=63))
}

fn is_ice_up(event: &RTCPeerConnectionEvent) -> bool {
    matches!(
        event,
        RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
            RTCIceConnectionState::Connected | RTCIceConnectionState::Completed
        )
    )
}

/// The most early DTLS records kept: a handshake flight is a few datagrams.
const MAX_EARLY_RECORDS: usize = 16;

/// Keep a DTLS record that arrived before ICE selected a pair. The stack (rtc 0.21) drops
/// such records, so the peer's first flight would wait for its retransmission timer (1 s).
/// That happens whenever the peer's ICE finishes first: the gateway as DTLS client learns of
/// the nomination before the client does, and its ClientHello can overtake the response that
/// tells the client.
fn hold_early_record(
    early: &mut Vec<(SocketAddr, SocketAddr, BytesMut)>,
    local: SocketAddr,
    from: SocketAddr,
    record: BytesMut,
) {
    if early.len() < MAX_EARLY_RECORDS {
        early.push((local, from, record));
    }
}

struct Closing {
    deadline: Instant,
    reason: CloseReason,
    replies: Vec<oneshot::Sender<()>>,
}

struct Driver {
    traffic: Arc<crate::Traffic>,
    pc: RTCPeerConnection,
    side: Side,
    channel: RTCDataChannelId,
    sockets: Vec<BoundSocket>,
    mux: Mux,
    /// The driver's end of every live connection. Entries leave on a reset or a clean finish.
    locals: HashMap<u32, Local>,
    commands: mpsc::UnboundedReceiver<Command>,
    /// Handed to each new connection; the loop ends on `Close`, not on the channel closing.
    commands_tx: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedSender<TubeEvent>,
    status: watch::Sender<Status>,
    /// Batches the kernel would not take yet (socket buffer full), in order; nothing else is
    /// sent before them.
    outbox: std::collections::VecDeque<Batch>,
    gatherer: Gatherer,
    /// Relayed candidates and the datagrams that go through them.
    turn: Turn,
    /// Candidate strings gathered after the description was made (reflexive, relayed).
    gathered: Vec<String>,
    gathering_reported: bool,
    mid: String,
    mline: u16,
    channel_open: bool,
    /// Set by a graceful shutdown until the peer has the `SHUTDOWN` frame (or time is up).
    closing: Option<Closing>,
    last_timeout: Instant,
    remote_description_set: bool,
    /// The latest nominating check from each address while ICE connects (see [`stun`]).
    held_nominations: HashMap<SocketAddr, BytesMut>,
    /// DTLS records that arrived before ICE had selected a pair, to hand to the stack once it
    /// has (see [`hold_early_record`]); empty once connected.
    early_records: Vec<(SocketAddr, SocketAddr, BytesMut)>,
    /// Client: its offers say `a=setup:passive` ([`TubeConfig::offer_passive`]).
    offer_passive: bool,
    /// Probes waiting for their `PONG`, by the number the `PING` carried.
    probes: HashMap<u64, oneshot::Sender<()>>,
    next_probe: u64,
}

/// What woke the loop; several sources can be ready at once, and all are served in turn so
/// that neither a flood of commands nor a flood of datagrams starves the other.
#[derive(Default)]
struct Wake {
    command: Option<Option<Command>>,
    /// Bit i: socket i is readable.
    readable: u64,
    writable: bool,
}

impl Driver {
    async fn run(mut self) {
        loop {
            self.pump();
            if self.finished() {
                break;
            }
            let deadline = self.next_deadline();
            let wake = self.wait(deadline).await;
            for index in 0..self.sockets.len() {
                if wake.readable & (1 << index) != 0 {
                    self.read_batch(index);
                }
            }
            if wake.writable {
                self.flush_blocked();
            }
            match wake.command {
                Some(Some(command)) => {
                    self.handle_command(command);
                    // Take what else is queued in one go: commands come in bursts.
                    for _ in 0..256 {
                        match self.commands.try_recv() {
                            Ok(command) => self.handle_command(command),
                            Err(_) => break,
                        }
                    }
                }
                Some(None) => self.end(TubeEnd::Local(CloseReason::Normal)),
                None => {}
            }
            self.run_timers();
        }
        self.teardown();
    }

    /// Sleep until something happens. Socket readiness is polled directly so that one future
    /// covers any number of sockets.
    async fn wait(&mut self, deadline: Instant) -> Wake {
        let sleep = tokio::time::sleep_until(deadline.into());
        tokio::pin!(sleep);
        let sockets = &self.sockets;
        let blocked = self.outbox.front().map(|b| b.socket);
        let commands = &mut self.commands;
        std::future::poll_fn(|cx| {
            let mut wake = Wake::default();
            let mut ready = false;
            if let Poll::Ready(command) = commands.poll_recv(cx) {
                wake.command = Some(command);
                ready = true;
            }
            for (i, s) in sockets.iter().enumerate().take(64) {
                if let Poll::Ready(Ok(())) = s.udp.socket.poll_recv_ready(cx) {
                    wake.readable |= 1 << i;
                    ready = true;
                }
            }
            if let Some(i) = blocked {
                if let Poll::Ready(Ok(())) = sockets[i].udp.socket.poll_send_ready(cx) {
                    wake.writable = true;
                    ready = true;
                }
            }
            if sleep.as_mut().poll(cx).is_ready() {
                ready = true;
            }
            if ready {
                Poll::Ready(wake)
            } else {
                Poll::Pending
            }
        })
        .await
    }

    fn next_deadline(&mut self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let mut deadline = self.pc_deadline().unwrap_or(far);
        if let Some(t) = self.gatherer.next_deadline() {
            deadline = deadline.min(t);
        }
        if let Some(t) = self.turn.next_deadline() {
            deadline = deadline.min(t);
        }
        if let Some(closing) = &self.closing {
            deadline = deadline.min(closing.deadline);
        }
        deadline
    }

    /// The stack's next deadline, never one already handled: a deadline that does not move
    /// after its timeout ran would otherwise spin the loop.
    fn pc_deadline(&mut self) -> Option<Instant> {
        let deadline = self.pc.poll_timeout()?;
        Some(deadline.max(self.last_timeout + Duration::from_millis(1)))
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        if let Some(deadline) = self.pc.poll_timeout() {
            if deadline <= now {
                self.last_timeout = now;
                if let Err(e) = self.pc.handle_timeout(now) {
                    tracing::debug!(error = %e, "handle_timeout");
                }
            }
        }
        let mut out = Vec::new();
        self.gatherer.poll(now, &mut out);
        self.apply_gather(out);
        let mut relayed = Vec::new();
        self.turn.poll(now, &mut relayed);
        self.apply_turn(relayed);
        if let Some(closing) = &self.closing {
            if closing.deadline <= now {
                self.end(TubeEnd::Local(closing.reason));
            }
        }
    }

    fn finished(&self) -> bool {
        self.status.borrow().ended.is_some()
    }

    /// Repeat write/event/read until nothing changes, with one `handle_timeout` after every
    /// round that did something.
    fn pump(&mut self) {
        for _ in 0..1024 {
            let mut progress = self.feed_channel();
            progress |= self.write_datagrams();
            progress |= self.handle_events();
            progress |= self.read_messages();
            progress |= self.handle_mux_events();
            if !progress {
                break;
            }
            let now = Instant::now();
            if let Err(e) = self.pc.handle_timeout(now) {
                tracing::debug!(error = %e, "handle_timeout");
            }
        }
        self.check_closing();
        self.traffic
            .connections
            .store(self.locals.len() as u64, Ordering::Relaxed);
    }

    /// Hand queued frames to the data channel while SCTP has room.
    fn feed_channel(&mut self) -> bool {
        if !self.channel_open || !self.mux.wants_to_send() {
            return false;
        }
        let now = Instant::now();
        let mut progress = false;
        let Some(mut dc) = self.pc.data_channel(self.channel) else {
            return false;
        };
        while dc.outstanding_bytes() < SCTP_HIGH_WATER {
            let Some(frame) = self.mux.poll_frame() else {
                break;
            };
            if let Err(e) = dc.send(now, frame) {
                tracing::warn!(error = %e, "the tube channel refused a frame");
                break;
            }
            progress = true;
        }
        progress
    }

    /// Everything the stack has to send, batched by socket, peer and size.
    fn write_datagrams(&mut self) -> bool {
        let mut progress = false;
        let mut batch: Option<Batch> = None;
        let mut relayed = Vec::new();
        while self.outbox.is_empty() {
            let Some(datagram) = self.pc.poll_write() else {
                break;
            };
            progress = true;
            if self.turn.is_relayed(datagram.transport.local_addr) {
                let mut out = Vec::new();
                self.turn.send(
                    Instant::now(),
                    datagram.transport.local_addr,
                    datagram.transport.peer_addr,
                    datagram.message,
                    &mut out,
                );
                relayed.extend(out);
                continue;
            }
            let index = self.socket_for(datagram.transport.local_addr);
            let to = datagram.transport.peer_addr;
            if let Some(current) = batch.as_mut() {
                let max = self.sockets[current.socket].udp.max_segments();
                if current.push(index, to, &datagram.message, max) {
                    continue;
                }
                let full = batch.take().expect("a batch");
                self.send_batch(full);
            }
            batch = Some(Batch::new(index, to, &datagram.message));
        }
        if let Some(last) = batch {
            self.send_batch(last);
        }
        self.apply_turn(relayed);
        progress
    }

    /// Send now, or queue behind what the kernel did not take yet.
    fn send_batch(&mut self, batch: Batch) {
        if !self.outbox.is_empty() {
            self.outbox.push_back(batch);
            return;
        }
        match self.sockets[batch.socket].udp.send(&batch) {
            Ok(()) => self.count_sent(batch.datagrams(), batch.len()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.outbox.push_back(batch),
            // A path that does not work (unreachable network, ...) is ICE's to find out.
            Err(e) => tracing::trace!(error = %e, to = %batch.to, "send failed"),
        }
    }

    fn flush_blocked(&mut self) {
        while let Some(batch) = self.outbox.pop_front() {
            match self.sockets[batch.socket].udp.send(&batch) {
                Ok(()) => self.count_sent(batch.datagrams(), batch.len()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.outbox.push_front(batch);
                    return;
                }
                Err(e) => tracing::trace!(error = %e, to = %batch.to, "send failed"),
            }
        }
    }

    fn count_sent(&self, datagrams: usize, bytes: usize) {
        self.traffic
            .datagrams_sent
            .fetch_add(datagrams as u64, Ordering::Relaxed);
        self.traffic
            .bytes_sent
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn socket_for(&self, local: SocketAddr) -> usize {
        self.sockets
            .iter()
            .position(|s| s.local == local)
            .unwrap_or(0)
    }

    fn read_batch(&mut self, index: usize) {
        let local = self.sockets[index].local;
        let mut gathered = Vec::new();
        let connecting = self.status.borrow().ice_connected.is_none();
        let opening = !self.channel_open;
        let mut relayed = Vec::new();
        let mut events = Vec::new();
        let Self {
            sockets,
            pc,
            gatherer,
            turn,
            traffic,
            held_nominations,
            early_records,
            ..
        } = self;
        let mut ice_up = !connecting;
        sockets[index].udp.receive(READ_ROUNDS, |from, datagram| {
            traffic.datagrams_received.fetch_add(1, Ordering::Relaxed);
            traffic
                .bytes_received
                .fetch_add(datagram.len() as u64, Ordering::Relaxed);
            if gatherer.handle(local, from, &datagram, &mut gathered)
                || turn.handle(Instant::now(), local, from, &datagram, &mut relayed)
            {
                return;
            }
            if !ice_up && is_dtls(&datagram) {
                hold_early_record(early_records, local, from, datagram);
                return;
            }
            let kind = stun::binding_kind(&datagram);
            if connecting && kind == Some(stun::Binding::Nomination) {
                held_nominations.insert(from, datagram.clone());
            }
            feed(pc, local, from, datagram);
            if kind == Some(stun::Binding::Success) {
                if let Some(nomination) = held_nominations.remove(&from) {
                    feed(pc, local, from, nomination);
                }
            }
            // Until the channel is open, let the stack raise its events after each datagram:
            // the association coming up is what opens the pre-negotiated channel, and rtc 0.21
            // drops (after acknowledging it) a message for that channel that arrives before
            // the event was handled. The gateway, as SCTP client, gets the client's first
            // frame right behind the COOKIE-ACK that brings its association up.
            if opening {
                while let Some(event) = pc.poll_event() {
                    if !ice_up && is_ice_up(&event) {
                        ice_up = true;
                        for (local, from, record) in early_records.drain(..) {
                            feed(pc, local, from, record);
                        }
                    }
                    events.push(event);
                }
            }
        });
        if !events.is_empty() {
            for event in events {
                self.handle_event(event);
            }
            // What the events made due (the DTLS client's ClientHello once ICE is up) is built
            // on the stack's next timeout, as in every round of the pump.
            if let Err(e) = self.pc.handle_timeout(Instant::now()) {
                tracing::debug!(error = %e, "handle_timeout");
            }
            // And what the handshake owes the peer leaves now, before the pump hands any frame
            // to a channel these events may have opened: a first frame bundled into the packet
            // of our COOKIE-ACK would reach the peer's channel before it is open, and be lost.
            self.write_datagrams();
        }
        self.apply_gather(gathered);
        self.apply_turn(relayed);
    }

    /// Carry out what the TURN side asked for.
    fn apply_turn(&mut self, outputs: Vec<TurnOutput>) {
        for output in outputs {
            match output {
                TurnOutput::Send { from, to, bytes } => {
                    let index = self.socket_for(from);
                    self.send_batch(Batch::new(index, to, &bytes));
                }
                TurnOutput::Received {
                    relayed,
                    peer,
                    data,
                } => {
                    if self.status.borrow().ice_connected.is_none() && is_dtls(&data) {
                        hold_early_record(&mut self.early_records, relayed, peer, data);
                    } else {
                        feed(&mut self.pc, relayed, peer, data);
                    }
                }
                TurnOutput::Allocated { base, relayed, url } => {
                    let candidate = CandidateRelayConfig {
                        base_config: CandidateConfig {
                            network: "udp".into(),
                            address: relayed.ip().to_string(),
                            port: relayed.port(),
                            component: 1,
                            ..Default::default()
                        },
                        rel_addr: base.ip().to_string(),
                        rel_port: base.port(),
                        url: Some(url),
                    }
                    .new_candidate_relay();
                    if let Ok(init) = candidate.and_then(|c| RTCIceCandidate::from(&c).to_json()) {
                        self.add_gathered(init);
                    }
                }
            }
        }
        self.maybe_gathering_complete();
    }

    /// A candidate gathered after the description: to the stack, the description we give
    /// out, and the owner (for trickling).
    fn add_gathered(&mut self, init: RTCIceCandidateInit) {
        if self.pc.add_local_candidate(init.clone()).is_ok() {
            self.gathered.push(init.candidate.clone());
            let _ = self.events.send(TubeEvent::LocalCandidate(IceCandidate {
                candidate: init.candidate,
                sdp_mid: Some(self.mid.clone()),
                sdp_mline_index: Some(self.mline),
            }));
        }
    }

    fn handle_events(&mut self) -> bool {
        let mut progress = false;
        while let Some(event) = self.pc.poll_event() {
            progress = true;
            self.handle_event(event);
        }
        if self.status.borrow().sctp_connected.is_none()
            && self.pc.sctp().map(|s| s.state()) == Some(RTCSctpTransportState::Connected)
        {
            let now = Instant::now();
            self.status.send_modify(|s| {
                s.sctp_connected.get_or_insert(now);
            });
        }
        progress
    }

    fn handle_event(&mut self, event: RTCPeerConnectionEvent) {
        let now = Instant::now();
        match event {
            RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(state) => match state {
                RTCIceConnectionState::Connected | RTCIceConnectionState::Completed => {
                    for (local, from, record) in std::mem::take(&mut self.early_records) {
                        feed(&mut self.pc, local, from, record);
                    }
                    let path = self.selected_path();
                    self.status.send_modify(|s| {
                        s.ice_connected.get_or_insert(now);
                        s.disconnected_since = None;
                        if path.is_some() {
                            s.path = path;
                        }
                    });
                }
                RTCIceConnectionState::Failed => self.end(TubeEnd::Failed),
                RTCIceConnectionState::Disconnected => {
                    tracing::info!("ICE consent lost; the path may come back or be restarted");
                    self.status.send_modify(|s| {
                        s.disconnected_since.get_or_insert(now);
                    });
                }
                _ => {}
            },
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => match state {
                RTCPeerConnectionState::Connected => {
                    self.status.send_modify(|s| {
                        s.dtls_connected.get_or_insert(now);
                    });
                }
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    self.end(TubeEnd::Failed)
                }
                _ => {}
            },
            RTCPeerConnectionEvent::OnDataChannel(event) => self.on_channel_event(event, now),
            _ => {}
        }
    }

    fn on_channel_event(&mut self, event: RTCDataChannelEvent, now: Instant) {
        match event {
            RTCDataChannelEvent::OnOpen(id) if id == self.channel => {
                self.channel_open = true;
                let path = self.selected_path();
                self.status.send_modify(|s| {
                    if s.path.is_none() {
                        s.path = path;
                    }
                    s.sctp_connected.get_or_insert(now);
                    s.channel_open.get_or_insert(now);
                });
            }
            RTCDataChannelEvent::OnOpen(id) => {
                // Only the pre-negotiated channel is ours; any other a peer opens is refused.
                tracing::debug!(id, "closing a data channel the peer opened");
                if let Some(mut dc) = self.pc.data_channel(id) {
                    let _ = dc.close();
                }
            }
            // The first end recorded wins, so a shutdown that closes the channel stays one.
            RTCDataChannelEvent::OnClose(id) if id == self.channel => self.end(TubeEnd::Failed),
            _ => {}
        }
    }

    fn selected_path(&self) -> Option<String> {
        let sctp = self.pc.sctp()?;
        let pair = sctp
            .transport()
            .ice_transport()
            .get_selected_candidate_pair()?;
        Some(format!(
            "{} {}:{} -> {} {}:{}",
            pair.local().typ,
            pair.local().address,
            pair.local().port,
            pair.remote().typ,
            pair.remote().address,
            pair.remote().port,
        ))
    }

    fn read_messages(&mut self) -> bool {
        let mut progress = false;
        while let Some(message) = self.pc.poll_read() {
            progress = true;
            if let RTCMessage::DataChannelMessage(id, message) = message.message {
                if id == self.channel && !message.is_string {
                    self.mux.handle_message(message.data);
                } else if id == self.channel {
                    tracing::debug!("ignoring a text message on the tube channel");
                }
            }
        }
        progress
    }

    fn handle_mux_events(&mut self) -> bool {
        let mut progress = false;
        while let Some(event) = self.mux.poll_event() {
            progress = true;
            match event {
                MuxEvent::Incoming { conn } => {
                    let (connection, local) =
                        Connection::new(conn, self.side, self.commands_tx.clone());
                    self.locals.insert(conn, local);
                    let _ = self.events.send(TubeEvent::Incoming(connection));
                }
                MuxEvent::Opened { conn } => {
                    if let Some(opened) = self.locals.get_mut(&conn).and_then(|l| l.opened.take()) {
                        let _ = opened.send(Ok(()));
                    }
                }
                MuxEvent::Data { conn, data } => {
                    if let Some(local) = self.locals.get(&conn) {
                        let _ = local.inbound.send(Inbound::Data(data));
                    }
                }
                MuxEvent::Eof { conn } => {
                    if let Some(local) = self.locals.get(&conn) {
                        let _ = local.inbound.send(Inbound::Eof);
                    }
                }
                MuxEvent::Credit { conn, increment } => {
                    if let Some(local) = self.locals.get(&conn) {
                        local.credit.grant(increment);
                    }
                }
                MuxEvent::Reset { conn, reason, .. } => {
                    if let Some(mut local) = self.locals.remove(&conn) {
                        if let Some(opened) = local.opened.take() {
                            let _ = opened.send(Err(reason));
                        }
                        let _ = local.abort.send(Some(reason));
                    }
                }
                MuxEvent::Finished { conn } => {
                    self.locals.remove(&conn);
                }
                MuxEvent::Shutdown { reason } => self.end(TubeEnd::Peer(reason)),
                MuxEvent::Pong { data } => {
                    if let Some(reply) = self.probes.remove(&data) {
                        let _ = reply.send(());
                    }
                }
                MuxEvent::Malformed { error } => {
                    tracing::warn!(%error, "the peer sent a malformed frame; ending the tube");
                    self.mux.shutdown(CloseReason::ProtocolError);
                    self.begin_closing(CloseReason::ProtocolError, None);
                }
            }
        }
        progress
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Data { conn, frame } => self.mux.send_data(conn, frame),
            Command::Consumed { conn, n } => self.mux.consumed(conn, n),
            Command::Eof { conn } => self.mux.send_eof(conn),
            Command::Reset { conn, reason } => {
                self.mux.reset(conn, reason);
                if let Some(mut local) = self.locals.remove(&conn) {
                    if let Some(opened) = local.opened.take() {
                        let _ = opened.send(Err(reason));
                    }
                    let _ = local.abort.send(Some(reason));
                }
            }
            Command::Accept { conn } => self.mux.accept(conn),
            Command::Open { reply } => {
                let result = if self.closing.is_some() {
                    Err(TubeError::Closed)
                } else {
                    let conn = self.mux.open();
                    let (connection, local) =
                        Connection::new(conn, self.side, self.commands_tx.clone());
                    self.locals.insert(conn, local);
                    Ok(connection)
                };
                let _ = reply.send(result);
            }
            Command::OpenFirst => self.mux.open_first(),
            Command::AdoptFirst { reply } => {
                let adopted = match self.closing {
                    Some(_) => Err(TubeError::Closed),
                    None => self.mux.adopt_first().ok_or_else(|| {
                        TubeError::WebRtc(
                            "connection 1 cannot be adopted once connections were opened".into(),
                        )
                    }),
                };
                let result = adopted.map(|conn| {
                    let (connection, local) =
                        Connection::new(conn, self.side, self.commands_tx.clone());
                    self.locals.insert(conn, local);
                    connection
                });
                let _ = reply.send(result);
            }
            Command::FirstHeard { refused } => self.mux.heard(refused),
            Command::ApplyAnswer { answer, reply } => {
                let result = RTCSessionDescription::answer(answer.sdp)
                    .map_err(|e| TubeError::InvalidDescription(e.to_string()))
                    .and_then(|answer| {
                        self.pc
                            .set_remote_description(Instant::now(), answer)
                            .map_err(|e| TubeError::InvalidDescription(e.to_string()))
                    });
                if result.is_ok() {
                    self.remote_description_set = true;
                }
                let _ = reply.send(result);
            }
            Command::AddCandidate { candidate, reply } => {
                let result = if !self.remote_description_set {
                    Err(TubeError::InvalidCandidate(
                        "no remote description yet".into(),
                    ))
                } else {
                    self.pc
                        .add_remote_candidate(RTCIceCandidateInit {
                            candidate: candidate.candidate,
                            sdp_mid: candidate.sdp_mid,
                            sdp_mline_index: candidate.sdp_mline_index,
                            ..Default::default()
                        })
                        .map_err(|e| TubeError::InvalidCandidate(e.to_string()))
                };
                let _ = reply.send(result);
            }
            Command::LocalDescription { reply } => {
                let kind = match self.side {
                    Side::Client => "offer",
                    Side::Gateway => "answer",
                };
                let result = self
                    .pc
                    .local_description()
                    .map(|d| d.sdp.clone())
                    .map(|sdp| self.description(kind, &sdp))
                    .ok_or(TubeError::Closed);
                let _ = reply.send(result);
            }
            Command::StunResolved { server } => {
                let sockets: Vec<SocketAddr> = self.sockets.iter().map(|s| s.local).collect();
                self.gatherer.resolved(Instant::now(), server, &sockets);
                self.maybe_gathering_complete();
            }
            Command::TurnResolved { server } => {
                let sockets: Vec<SocketAddr> = self.sockets.iter().map(|s| s.local).collect();
                self.turn.resolved(Instant::now(), server, &sockets);
                let mut out = Vec::new();
                self.turn.poll(Instant::now(), &mut out);
                self.apply_turn(out);
                self.maybe_gathering_complete();
            }
            Command::Shutdown { reason, reply } => {
                self.mux.shutdown(reason);
                self.begin_closing(reason, Some(reply));
            }
            Command::Close => self.end(TubeEnd::Local(CloseReason::Normal)),
            Command::Restart { reply } => {
                let _ = reply.send(self.restart());
            }
            Command::AcceptRestart { offer, reply } => {
                let _ = reply.send(self.accept_restart(offer));
            }
            Command::Probe { reply } => {
                let data = self.next_probe;
                self.next_probe += 1;
                self.probes.retain(|_, r| !r.is_closed());
                self.probes.insert(data, reply);
                self.mux.ping(data);
            }
        }
    }

    fn apply_gather(&mut self, outputs: Vec<GatherOutput>) {
        for output in outputs {
            match output {
                GatherOutput::Send { from, to, bytes } => {
                    let index = self.socket_for(from);
                    self.send_batch(Batch::new(index, to, &bytes));
                }
                GatherOutput::Reflexive { base, mapped } => {
                    if mapped == base {
                        continue; // not behind a NAT: the host candidate already says it
                    }
                    let candidate = CandidateServerReflexiveConfig {
                        base_config: CandidateConfig {
                            network: "udp".into(),
                            address: mapped.ip().to_string(),
                            port: mapped.port(),
                            component: 1,
                            ..Default::default()
                        },
                        rel_addr: base.ip().to_string(),
                        rel_port: base.port(),
                        url: None,
                    }
                    .new_candidate_server_reflexive();
                    if let Ok(init) = candidate.and_then(|c| RTCIceCandidate::from(&c).to_json()) {
                        self.add_gathered(init);
                    }
                }
            }
        }
        self.maybe_gathering_complete();
    }

    fn maybe_gathering_complete(&mut self) {
        if !self.gathering_reported && self.gatherer.done() && self.turn.done() {
            self.gathering_reported = true;
            let _ = self.events.send(TubeEvent::GatheringComplete);
        }
    }

    /// The description as the peer should see it: with every candidate gathered since.
    fn description(&mut self, kind: &str, sdp: &str) -> SessionDescription {
        let sdp =
            crate::sdp::with_candidates(sdp, self.mline, &self.gathered, self.gatherer.done());
        SessionDescription {
            kind: kind.into(),
            sdp: if kind == "offer" && self.offer_passive {
                crate::sdp::as_passive(&sdp)
            } else {
                sdp
            },
        }
    }

    /// Client: restart ICE (new credentials, the same DTLS and SCTP above it) and offer it.
    fn restart(&mut self) -> Result<SessionDescription> {
        self.pc.restart_ice();
        let offer = self.pc.create_offer(None)?;
        self.pc
            .set_local_description(Instant::now(), offer.clone())?;
        Ok(self.description("offer", &offer.sdp))
    }

    /// Gateway: the client's restart offer, answered.
    fn accept_restart(&mut self, offer: SessionDescription) -> Result<SessionDescription> {
        let remote = RTCSessionDescription::offer(offer.sdp)
            .map_err(|e| TubeError::InvalidDescription(e.to_string()))?;
        self.pc
            .set_remote_description(Instant::now(), remote)
            .map_err(|e| TubeError::InvalidDescription(e.to_string()))?;
        let answer = self.pc.create_answer(None)?;
        self.pc
            .set_local_description(Instant::now(), answer.clone())?;
        Ok(self.description("answer", &answer.sdp))
    }

    fn begin_closing(&mut self, reason: CloseReason, reply: Option<oneshot::Sender<()>>) {
        let closing = self.closing.get_or_insert_with(|| Closing {
            deadline: Instant::now() + SHUTDOWN_LINGER,
            reason,
            replies: Vec::new(),
        });
        closing.replies.extend(reply);
        // Nobody to tell, unless the channel is on its way: once DTLS is up the association
        // follows within two round trips, and the peer's own channel may be open already (the
        // client's opens before the gateway's, and its launch may be done by then). The
        // `SHUTDOWN` then leaves when the channel opens, within the linger.
        if !self.channel_open && self.status.borrow().dtls_connected.is_none() {
            self.end(TubeEnd::Local(reason));
        }
    }

    /// A graceful shutdown is done once the `SHUTDOWN` frame is out of our queue and
    /// acknowledged by the peer.
    fn check_closing(&mut self) {
        let Some(closing) = &self.closing else {
            return;
        };
        let reason = closing.reason;
        let delivered = !self.mux.wants_to_send()
            && self
                .pc
                .data_channel(self.channel)
                .is_none_or(|dc| dc.outstanding_bytes() == 0);
        if delivered && self.status.borrow().ended.is_none() {
            self.end(TubeEnd::Local(reason));
        }
    }

    /// Record how the tube ended (the first call wins) and abort every connection.
    fn end(&mut self, end: TubeEnd) {
        let first = self.status.send_if_modified(|s| {
            if s.ended.is_none() {
                s.ended = Some(end);
                true
            } else {
                false
            }
        });
        if !first {
            return;
        }
        tracing::debug!(?end, "tube ended");
        let reason = match end {
            TubeEnd::Peer(reason) | TubeEnd::Local(reason) => reason,
            TubeEnd::Failed => CloseReason::Normal,
        };
        for (_, mut local) in self.locals.drain() {
            if let Some(opened) = local.opened.take() {
                let _ = opened.send(Err(reason));
            }
            let _ = local.abort.send(Some(reason));
        }
        if let Some(closing) = self.closing.take() {
            for reply in closing.replies {
                let _ = reply.send(());
            }
        }
    }

    /// Close the stack and send what it has to say about that (DTLS close_notify, SCTP abort).
    fn teardown(&mut self) {
        let mut out = Vec::new();
        self.turn.close(Instant::now(), &mut out);
        self.apply_turn(out);
        if let Err(e) = self.pc.close() {
            tracing::debug!(error = %e, "closing the peer connection");
        }
        self.outbox.clear();
        self.write_datagrams();
        // Fail every request still queued rather than leave it hanging.
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Open { reply } | Command::AdoptFirst { reply } => {
                    let _ = reply.send(Err(TubeError::Closed));
                }
                Command::Shutdown { reply, .. } => {
                    let _ = reply.send(());
                }
                _ => {}
            }
        }
    }
}

/// A nominating check on a pair the stack has not validated yet is answered by the stack (rtc
/// 0.21) with a check of its own but no response, although RFC 8445 §7.3.1.4 asks for both; a
/// peer that nominates on its first check then waits for its own retransmission (aioice: half
/// a second). So the driver keeps such a check and hands it to the stack once more when the
/// stack's own check to that address is answered: the pair is valid by then, and the stack
/// answers it and selects the pair. A second response to a check is harmless (STUN matches
/// responses to transactions; the first one ends it).
mod stun {
    const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    const BINDING_REQUEST: u16 = 0x0001;
    const BINDING_SUCCESS: u16 = 0x0101;
    const USE_CANDIDATE: u16 = 0x0025;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Binding {
        /// A request with USE-CANDIDATE.
        Nomination,
        Success,
    }

    pub(super) fn binding_kind(datagram: &[u8]) -> Option<Binding> {
        if datagram.len() < 20 || datagram[4..8] != MAGIC_COOKIE {
            return None;
        }
        match u16::from_be_bytes([datagram[0], datagram[1]]) {
            BINDING_SUCCESS => Some(Binding::Success),
            BINDING_REQUEST if has_attribute(datagram, USE_CANDIDATE) => Some(Binding::Nomination),
            _ => None,
        }
    }

    fn has_attribute(datagram: &[u8], wanted: u16) -> bool {
        let length = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
        let end = (20 + length).min(datagram.len());
        let mut at = 20;
        while at + 4 <= end {
            let kind = u16::from_be_bytes([datagram[at], datagram[at + 1]]);
            let len = u16::from_be_bytes([datagram[at + 2], datagram[at + 3]]) as usize;
            if kind == wanted {
                return true;
            }
            at += 4 + ((len + 3) & !3);
        }
        false
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn nominations_and_successes_are_told_apart() {
            let mut request = vec![0x00, 0x01, 0x00, 0x08];
            request.extend_from_slice(&MAGIC_COOKIE);
            request.extend_from_slice(&[0; 12]);
            request.extend_from_slice(&[0x00, 0x24, 0x00, 0x00]); // PRIORITY-ish, empty
            request.extend_from_slice(&[0x00, 0x25, 0x00, 0x00]); // USE-CANDIDATE
            assert_eq!(binding_kind(&request), Some(Binding::Nomination));
            request[22] = 0;
            request[23] = 0x26;
            request.truncate(24);
            request[3] = 4;
            assert_eq!(binding_kind(&request), None, "a plain check is left alone");
            let mut success = request.clone();
            success[0] = 0x01;
            success[1] = 0x01;
            assert_eq!(binding_kind(&success), Some(Binding::Success));
            assert_eq!(binding_kind(b"\x17\xfe\xfd dtls"), None);
        }
    }
}
