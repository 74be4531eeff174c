//! The connection multiplexer of one tube, without I/O: frames in, frames and events out.
//!
//! Both ends run one. It keeps, per connection, the receive window it granted and what is
//! queued to send; it schedules outgoing frames fairly (round robin over connections, with
//! window updates, resets and the shutdown ahead of payload) and tells its driver what to do
//! with the local socket of each connection. The driver owns the sockets and the WebRTC stack.
//!
//! Lifecycle of a connection's state here: created by [`Mux::open`] (client) or by an `OPEN`
//! frame (gateway); dropped when both directions have ended with `EOF` and our `EOF` has been
//! handed to the channel, or at once when either side resets it. Frames for a connection that
//! no longer exists are ignored: ids are never reused, so they can only be late.

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};
use sallyport_protocol::frame::{Frame, FrameError, INITIAL_WINDOW};
use sallyport_protocol::{CloseReason, FIRST_CONNECTION};

/// Which end of the tube this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Opens connections.
    Client,
    /// Accepts them and dials the target.
    Gateway,
}

/// What the mux asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MuxEvent {
    /// Gateway: the client opened `conn`; dial the target, then [`Mux::accept`] or
    /// [`Mux::reset`].
    Incoming { conn: u32 },
    /// Client: the gateway reached the target for `conn`.
    Opened { conn: u32 },
    /// Payload for the local socket of `conn`; report it with [`Mux::consumed`] once written.
    Data { conn: u32, data: Bytes },
    /// The peer will send no more on `conn`: shut down the socket's write side after the data.
    Eof { conn: u32 },
    /// The peer granted `increment` more bytes of send credit on `conn`.
    Credit { conn: u32, increment: u32 },
    /// `conn` is aborted; abort its local socket. `by_peer` is false when the mux reset it
    /// itself (a protocol violation by the peer).
    Reset {
        conn: u32,
        reason: CloseReason,
        by_peer: bool,
    },
    /// Both directions of `conn` ended cleanly; its state is gone.
    Finished { conn: u32 },
    /// The peer is ending the tube.
    Shutdown { reason: CloseReason },
    /// The peer answered our `PING` carrying `data`.
    Pong { data: u64 },
    /// The peer sent something that is not a frame; the tube should end with `protocol_error`.
    Malformed { error: FrameError },
}

#[derive(Debug)]
struct Conn {
    /// Bytes the peer may still send before we grant more.
    receive_credit: u64,
    /// Bytes the local socket took since the last `WINDOW` we sent.
    consumed: u64,
    sent_eof: bool,
    received_eof: bool,
    /// Our frames of this connection, in order.
    queue: VecDeque<BytesMut>,
    /// Whether the frame that introduces the connection to the peer has left (`OPEN` for the
    /// client; always true at the gateway, which learns of it from the peer).
    introduced: bool,
}

impl Conn {
    fn new(introduced: bool) -> Self {
        Self {
            receive_credit: INITIAL_WINDOW as u64,
            consumed: 0,
            sent_eof: false,
            received_eof: false,
            queue: VecDeque::new(),
            introduced,
        }
    }

    fn finished(&self) -> bool {
        self.sent_eof && self.received_eof && self.queue.is_empty()
    }
}

pub struct Mux {
    side: Side,
    /// Receive window per connection (at least [`INITIAL_WINDOW`]).
    window: u32,
    /// Gateway: most connections open at once; further `OPEN`s are reset with `session_limit`.
    max_connections: usize,
    conns: HashMap<u32, Conn>,
    /// Client: the last id handed out. Gateway: the highest id the client opened.
    last_id: u32,
    /// Window updates, resets and the shutdown: sent before any payload.
    urgent: VecDeque<BytesMut>,
    /// Connections with queued frames, served round robin.
    ready: VecDeque<u32>,
    events: VecDeque<MuxEvent>,
    shutdown_sent: bool,
}

impl Mux {
    pub fn new(side: Side, window: u32, max_connections: usize) -> Self {
        Self {
            side,
            window: window.max(INITIAL_WINDOW),
            max_connections,
            conns: HashMap::new(),
            last_id: 0,
            urgent: VecDeque::new(),
            ready: VecDeque::new(),
            events: VecDeque::new(),
            shutdown_sent: false,
        }
    }

    /// Connections currently open.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    pub fn contains(&self, conn: u32) -> bool {
        self.conns.contains_key(&conn)
    }

    /// Client: open a new connection; `OPEN` (and the rest of our window) is queued.
    pub fn open(&mut self) -> u32 {
        debug_assert_eq!(self.side, Side::Client);
        self.last_id += 1;
        let conn = self.last_id;
        self.conns.insert(conn, Conn::new(false));
        self.enqueue(conn, Frame::Open { conn }.encode());
        self.grant_rest_of_window(conn);
        conn
    }

    /// Gateway: open connection 1 as if its `OPEN` had come with the offer (the client asked
    /// in its `start`); the client sends no `OPEN` for it.
    pub fn open_first(&mut self) {
        debug_assert_eq!(self.side, Side::Gateway);
        self.on_open(FIRST_CONNECTION);
    }

    /// Client: connection 1, which the gateway opens by itself ([`open_first`](Self::open_first)):
    /// no `OPEN` is sent, the rest of our window is. Its `OPENED` or `RESET` may also be heard
    /// through the router, see [`heard`](Self::heard). `None` once any connection exists.
    pub fn adopt_first(&mut self) -> Option<u32> {
        debug_assert_eq!(self.side, Side::Client);
        if self.last_id != 0 {
            return None;
        }
        self.last_id = FIRST_CONNECTION;
        self.conns.insert(FIRST_CONNECTION, Conn::new(true));
        self.grant_rest_of_window(FIRST_CONNECTION);
        Some(FIRST_CONNECTION)
    }

    /// Client: the outcome of connection 1 as the gateway streamed it through the router, taken
    /// like the `OPENED` or `RESET` frame that says the same on the channel (whichever comes
    /// second changes nothing).
    pub fn heard(&mut self, refused: Option<CloseReason>) {
        let conn = FIRST_CONNECTION;
        match refused {
            None => self.handle_frame(Frame::Opened { conn }),
            Some(reason) => self.handle_frame(Frame::Reset { conn, reason }),
        }
    }

    /// Gateway: the target accepted `conn`.
    pub fn accept(&mut self, conn: u32) {
        if self.conns.contains_key(&conn) {
            self.enqueue(conn, Frame::Opened { conn }.encode());
            self.grant_rest_of_window(conn);
        }
    }

    /// Queue payload whose first [`FRAME_HEADER_BYTES`](sallyport_protocol::frame::FRAME_HEADER_BYTES)
    /// bytes are room for the header. The caller keeps within the peer's credit.
    pub fn send_data(&mut self, conn: u32, mut buf: BytesMut) {
        if let Some(c) = self.conns.get(&conn) {
            if !c.sent_eof {
                Frame::data_in_place(conn, &mut buf);
                self.enqueue(conn, buf);
            }
        }
    }

    /// No more payload from our side of `conn`.
    pub fn send_eof(&mut self, conn: u32) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if !c.sent_eof {
                c.sent_eof = true;
                self.enqueue(conn, Frame::Eof { conn }.encode());
            }
        }
    }

    /// Abort `conn` (a local socket error, a refused dial, a close before the end). Queued
    /// payload of the connection is dropped; the peer learns the reason unless it never
    /// heard of the connection.
    pub fn reset(&mut self, conn: u32, reason: CloseReason) {
        if let Some(c) = self.conns.remove(&conn) {
            self.ready.retain(|&id| id != conn);
            if c.introduced {
                self.urgent
                    .push_back(Frame::Reset { conn, reason }.encode());
            }
        }
    }

    /// The local socket of `conn` took `n` bytes: grant them back to the peer, in batches.
    pub fn consumed(&mut self, conn: u32, n: usize) {
        let batch = (self.window / 4) as u64;
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.received_eof {
                return;
            }
            c.consumed += n as u64;
            if c.consumed >= batch {
                let increment = c.consumed.min(u32::MAX as u64) as u32;
                c.consumed -= increment as u64;
                c.receive_credit += increment as u64;
                self.urgent
                    .push_back(Frame::Window { conn, increment }.encode());
            }
        }
    }

    /// End the tube: `SHUTDOWN` goes ahead of everything still queued.
    pub fn shutdown(&mut self, reason: CloseReason) {
        if !self.shutdown_sent {
            self.shutdown_sent = true;
            self.urgent.push_front(Frame::Shutdown { reason }.encode());
        }
    }

    /// Ask the peer to answer; it comes back as [`MuxEvent::Pong`].
    pub fn ping(&mut self, data: u64) {
        self.urgent.push_back(Frame::Ping { data }.encode());
    }

    /// One message from the channel.
    pub fn handle_message(&mut self, message: BytesMut) {
        match Frame::decode(message) {
            Ok(frame) => self.handle_frame(frame),
            // Unknown types are skipped so that later versions can add frames.
            Err(FrameError::UnknownType(kind)) => {
                tracing::debug!(kind, "skipping a frame of unknown type")
            }
            Err(error) => self.events.push_back(MuxEvent::Malformed { error }),
        }
    }

    fn handle_frame(&mut self, frame: Frame) {
        match frame {
            Frame::Open { conn } => self.on_open(conn),
            Frame::Opened { conn } => {
                if self.side == Side::Client && self.conns.contains_key(&conn) {
                    self.events.push_back(MuxEvent::Opened { conn });
                }
            }
            Frame::Data { conn, data } => self.on_data(conn, data),
            Frame::Window { conn, increment } => {
                if let Some(c) = self.conns.get(&conn) {
                    if !c.sent_eof && increment > 0 {
                        self.events.push_back(MuxEvent::Credit { conn, increment });
                    }
                }
            }
            Frame::Eof { conn } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if !c.received_eof {
                        c.received_eof = true;
                        self.events.push_back(MuxEvent::Eof { conn });
                        self.finish_if_done(conn);
                    }
                }
            }
            Frame::Reset { conn, reason } => {
                if self.conns.remove(&conn).is_some() {
                    self.ready.retain(|&id| id != conn);
                    self.events.push_back(MuxEvent::Reset {
                        conn,
                        reason,
                        by_peer: true,
                    });
                }
            }
            Frame::Shutdown { reason } => self.events.push_back(MuxEvent::Shutdown { reason }),
            Frame::Ping { data } => self.urgent.push_back(Frame::Pong { data }.encode()),
            Frame::Pong { data } => self.events.push_back(MuxEvent::Pong { data }),
        }
    }

    fn on_open(&mut self, conn: u32) {
        if self.side != Side::Gateway {
            return;
        }
        if conn <= self.last_id {
            // A reused id: the client broke the rule that ids strictly increase. A live
            // connection of that id is no longer trustworthy either.
            if self.conns.contains_key(&conn) {
                self.reset(conn, CloseReason::ProtocolError);
                self.events.push_back(MuxEvent::Reset {
                    conn,
                    reason: CloseReason::ProtocolError,
                    by_peer: false,
                });
            } else {
                self.urgent.push_back(
                    Frame::Reset {
                        conn,
                        reason: CloseReason::ProtocolError,
                    }
                    .encode(),
                );
            }
            return;
        }
        self.last_id = conn;
        if self.conns.len() >= self.max_connections {
            self.urgent.push_back(
                Frame::Reset {
                    conn,
                    reason: CloseReason::SessionLimit,
                }
                .encode(),
            );
            return;
        }
        self.conns.insert(conn, Conn::new(true));
        self.events.push_back(MuxEvent::Incoming { conn });
    }

    fn on_data(&mut self, conn: u32, data: Bytes) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let len = data.len() as u64;
        if c.received_eof || len > c.receive_credit {
            // More than we allowed, or after its own EOF: the peer is broken; so is the
            // connection.
            self.reset(conn, CloseReason::ProtocolError);
            self.events.push_back(MuxEvent::Reset {
                conn,
                reason: CloseReason::ProtocolError,
                by_peer: false,
            });
            return;
        }
        c.receive_credit -= len;
        self.events.push_back(MuxEvent::Data { conn, data });
    }

    fn grant_rest_of_window(&mut self, conn: u32) {
        let extra = self.window - INITIAL_WINDOW;
        if extra > 0 {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.receive_credit += extra as u64;
            }
            // In the connection's own queue, so it cannot overtake the frame that introduces
            // the connection to the peer.
            self.enqueue(
                conn,
                Frame::Window {
                    conn,
                    increment: extra,
                }
                .encode(),
            );
        }
    }

    fn enqueue(&mut self, conn: u32, frame: BytesMut) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.queue.is_empty() {
                self.ready.push_back(conn);
            }
            c.queue.push_back(frame);
        }
    }

    fn finish_if_done(&mut self, conn: u32) {
        if self.conns.get(&conn).is_some_and(Conn::finished) {
            self.conns.remove(&conn);
            self.events.push_back(MuxEvent::Finished { conn });
        }
    }

    /// Whether a frame is waiting to be sent.
    pub fn wants_to_send(&self) -> bool {
        !self.urgent.is_empty() || !self.ready.is_empty()
    }

    /// The next frame to hand to the channel.
    pub fn poll_frame(&mut self) -> Option<BytesMut> {
        if let Some(frame) = self.urgent.pop_front() {
            return Some(frame);
        }
        while let Some(conn) = self.ready.pop_front() {
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            let Some(frame) = c.queue.pop_front() else {
                continue;
            };
            c.introduced = true;
            if !c.queue.is_empty() {
                self.ready.push_back(conn);
            }
            self.finish_if_done(conn);
            return Some(frame);
        }
        None
    }

    pub fn poll_event(&mut self) -> Option<MuxEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sallyport_protocol::frame::{FRAME_HEADER_BYTES, MAX_DATA_BYTES};

    const WINDOW: u32 = 1024 * 1024;

    fn pair() -> (Mux, Mux) {
        (
            Mux::new(Side::Client, WINDOW, 4),
            Mux::new(Side::Gateway, WINDOW, 4),
        )
    }

    /// Move every queued frame from `from` to `to`.
    fn deliver(from: &mut Mux, to: &mut Mux) {
        while let Some(frame) = from.poll_frame() {
            to.handle_message(frame);
        }
    }

    fn events(mux: &mut Mux) -> Vec<MuxEvent> {
        std::iter::from_fn(|| mux.poll_event()).collect()
    }

    fn payload(text: &str) -> BytesMut {
        let mut buf = BytesMut::zeroed(FRAME_HEADER_BYTES);
        buf.extend_from_slice(text.as_bytes());
        buf
    }

    #[test]
    fn open_accept_data_and_close_in_order() {
        let (mut client, mut gateway) = pair();
        let conn = client.open();
        client.send_data(conn, payload("ping"));
        deliver(&mut client, &mut gateway);
        assert_eq!(
            events(&mut gateway),
            vec![
                MuxEvent::Incoming { conn },
                MuxEvent::Credit {
                    conn,
                    increment: WINDOW - INITIAL_WINDOW
                },
                MuxEvent::Data {
                    conn,
                    data: Bytes::from_static(b"ping")
                }
            ]
        );
        gateway.accept(conn);
        gateway.send_data(conn, payload("pong"));
        deliver(&mut gateway, &mut client);
        let seen = events(&mut client);
        assert_eq!(seen[0], MuxEvent::Opened { conn });
        assert!(seen.contains(&MuxEvent::Credit {
            conn,
            increment: WINDOW - INITIAL_WINDOW
        }));
        assert_eq!(
            seen.last(),
            Some(&MuxEvent::Data {
                conn,
                data: Bytes::from_static(b"pong")
            })
        );
    }

    #[test]
    fn the_first_connection_opened_at_start_needs_no_open_and_settles_once() {
        let (mut client, mut gateway) = pair();
        gateway.open_first();
        assert_eq!(
            events(&mut gateway),
            vec![MuxEvent::Incoming {
                conn: FIRST_CONNECTION
            }]
        );
        let conn = client.adopt_first().unwrap();
        assert_eq!(conn, FIRST_CONNECTION);
        assert_eq!(client.adopt_first(), None, "only once");
        // Heard through the router first, then the gateway's own OPENED: one event.
        client.heard(None);
        gateway.accept(conn);
        deliver(&mut gateway, &mut client);
        let seen = events(&mut client);
        assert_eq!(
            seen.iter()
                .filter(|e| **e == MuxEvent::Opened { conn })
                .count(),
            1 + 1,
            "the channel's OPENED is a second, harmless event"
        );
        // No OPEN went to the gateway for it; its window grant did, and the next id is 2.
        deliver(&mut client, &mut gateway);
        assert_eq!(
            events(&mut gateway),
            vec![MuxEvent::Credit {
                conn,
                increment: WINDOW - INITIAL_WINDOW
            }]
        );
        assert_eq!(client.open(), 2);

        // Refused, heard through the router: the connection is gone, the RESET changes nothing.
        let (mut client, _) = pair();
        let conn = client.adopt_first().unwrap();
        client.heard(Some(CloseReason::TargetRefused));
        assert_eq!(
            events(&mut client),
            vec![MuxEvent::Reset {
                conn,
                reason: CloseReason::TargetRefused,
                by_peer: true
            }]
        );
        client.heard(Some(CloseReason::TargetRefused));
        assert!(events(&mut client).is_empty());
    }

    #[test]
    fn both_close_orders_free_the_connection() {
        for client_first in [true, false] {
            let (mut client, mut gateway) = pair();
            let conn = client.open();
            deliver(&mut client, &mut gateway);
            gateway.accept(conn);
            deliver(&mut gateway, &mut client);
            events(&mut client);
            events(&mut gateway);
            let (first, second) = if client_first {
                (&mut client, &mut gateway)
            } else {
                (&mut gateway, &mut client)
            };
            first.send_eof(conn);
            deliver(first, second);
            assert_eq!(events(second), vec![MuxEvent::Eof { conn }]);
            assert!(first.contains(conn) && second.contains(conn));
            second.send_eof(conn);
            deliver(second, first);
            assert_eq!(
                events(first),
                vec![MuxEvent::Eof { conn }, MuxEvent::Finished { conn }]
            );
            assert_eq!(events(second), vec![MuxEvent::Finished { conn }]);
            assert!(client.is_empty() && gateway.is_empty());
        }
    }

    #[test]
    fn a_reader_that_stops_exhausts_only_its_own_window() {
        let (mut client, mut gateway) = pair();
        let conn = client.open();
        deliver(&mut client, &mut gateway);
        events(&mut gateway);
        // The whole initial window is fine (the gateway has not accepted, so granted no
        // more); one byte beyond it is a protocol violation.
        let mut left = INITIAL_WINDOW as usize;
        while left > 0 {
            let n = left.min(MAX_DATA_BYTES);
            let mut frame = BytesMut::zeroed(FRAME_HEADER_BYTES + n);
            Frame::data_in_place(conn, &mut frame);
            gateway.handle_message(frame);
            left -= n;
        }
        assert!(events(&mut gateway)
            .iter()
            .all(|e| matches!(e, MuxEvent::Data { .. })));
        let mut one = BytesMut::zeroed(FRAME_HEADER_BYTES + 1);
        Frame::data_in_place(conn, &mut one);
        gateway.handle_message(one);
        assert_eq!(
            events(&mut gateway),
            vec![MuxEvent::Reset {
                conn,
                reason: CloseReason::ProtocolError,
                by_peer: false
            }]
        );
        deliver(&mut gateway, &mut client);
        assert_eq!(
            events(&mut client),
            vec![MuxEvent::Reset {
                conn,
                reason: CloseReason::ProtocolError,
                by_peer: true
            }]
        );
    }

    #[test]
    fn consumed_bytes_are_granted_back_in_batches() {
        let (mut client, mut gateway) = pair();
        let conn = client.open();
        deliver(&mut client, &mut gateway);
        gateway.accept(conn);
        deliver(&mut gateway, &mut client);
        events(&mut client);
        client.consumed(conn, 1000);
        assert!(!client.wants_to_send(), "a small read is not worth a frame");
        client.consumed(conn, (WINDOW / 4) as usize);
        deliver(&mut client, &mut gateway);
        assert_eq!(
            events(&mut gateway),
            vec![
                MuxEvent::Incoming { conn },
                MuxEvent::Credit {
                    conn,
                    increment: WINDOW - INITIAL_WINDOW
                },
                MuxEvent::Credit {
                    conn,
                    increment: WINDOW / 4 + 1000
                }
            ]
        );
    }

    #[test]
    fn round_robin_keeps_a_bulk_sender_from_starving_others() {
        let (mut client, mut gateway) = pair();
        let bulk = client.open();
        let chat = client.open();
        deliver(&mut client, &mut gateway);
        events(&mut gateway);
        for _ in 0..10 {
            client.send_data(bulk, payload("bulk"));
        }
        client.send_data(chat, payload("chat"));
        let order: Vec<u32> = std::iter::from_fn(|| client.poll_frame())
            .map(|f| match Frame::decode(f).unwrap() {
                Frame::Data { conn, .. } => conn,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(order[..2], [bulk, chat]);
    }

    #[test]
    fn a_reset_before_open_left_tells_the_peer_nothing() {
        let (mut client, mut gateway) = pair();
        let conn = client.open();
        client.reset(conn, CloseReason::ClientClosed);
        deliver(&mut client, &mut gateway);
        assert!(events(&mut gateway).is_empty());
        let conn = client.open();
        deliver(&mut client, &mut gateway);
        client.reset(conn, CloseReason::ClientClosed);
        deliver(&mut client, &mut gateway);
        assert_eq!(
            events(&mut gateway),
            vec![
                MuxEvent::Incoming { conn },
                MuxEvent::Credit {
                    conn,
                    increment: WINDOW - INITIAL_WINDOW
                },
                MuxEvent::Reset {
                    conn,
                    reason: CloseReason::ClientClosed,
                    by_peer: true
                }
            ]
        );
    }

    #[test]
    fn the_gateway_limits_connections_and_refuses_reused_ids() {
        let (mut client, mut gateway) = pair();
        let ids: Vec<u32> = (0..5).map(|_| client.open()).collect();
        deliver(&mut client, &mut gateway);
        let incoming = events(&mut gateway)
            .into_iter()
            .filter(|e| matches!(e, MuxEvent::Incoming { .. }))
            .count();
        assert_eq!(incoming, 4);
        deliver(&mut gateway, &mut client);
        assert_eq!(
            events(&mut client),
            vec![MuxEvent::Reset {
                conn: ids[4],
                reason: CloseReason::SessionLimit,
                by_peer: true
            }]
        );
        // A reused id resets the live connection of that id on both sides.
        gateway.handle_message(Frame::Open { conn: ids[1] }.encode());
        assert_eq!(
            events(&mut gateway),
            vec![MuxEvent::Reset {
                conn: ids[1],
                reason: CloseReason::ProtocolError,
                by_peer: false
            }]
        );
        deliver(&mut gateway, &mut client);
        assert_eq!(
            events(&mut client),
            vec![MuxEvent::Reset {
                conn: ids[1],
                reason: CloseReason::ProtocolError,
                by_peer: true
            }]
        );
    }

    fn first_frame_again() -> BytesMut {
        Frame::Shutdown {
            reason: CloseReason::ClientClosed,
        }
        .encode()
    }

    #[test]
    fn shutdown_overtakes_queued_payload() {
        let (mut client, mut gateway) = pair();
        let conn = client.open();
        client.send_data(conn, payload("late"));
        client.shutdown(CloseReason::ClientClosed);
        let first = client.poll_frame().unwrap();
        assert_eq!(
            Frame::decode(first).unwrap(),
            Frame::Shutdown {
                reason: CloseReason::ClientClosed
            }
        );
        gateway.handle_message(first_frame_again());
        deliver(&mut client, &mut gateway);
        assert_eq!(
            events(&mut gateway)[0],
            MuxEvent::Shutdown {
                reason: CloseReason::ClientClosed
            }
        );
    }

    #[test]
    fn a_ping_is_answered() {
        let (mut client, mut gateway) = pair();
        client.ping(7);
        deliver(&mut client, &mut gateway);
        deliver(&mut gateway, &mut client);
        assert_eq!(events(&mut client), vec![MuxEvent::Pong { data: 7 }]);
    }

    #[test]
    fn garbage_is_malformed_and_unknown_types_are_skipped() {
        let (_, mut gateway) = pair();
        gateway.handle_message(BytesMut::from(&b"\x01"[..]));
        assert!(matches!(
            events(&mut gateway)[..],
            [MuxEvent::Malformed { .. }]
        ));
        gateway.handle_message(BytesMut::from(&b"\x42\x00\x00\x00\x01future"[..]));
        assert!(events(&mut gateway).is_empty());
    }
}
