//! The tube's data plane: every TCP connection of a tube is multiplexed over one pre-negotiated,
//! ordered and reliable data channel, as binary messages of one frame each. See section 6 of
//! `docs/PROTOCOL.md`, which this module implements.
//!
//! ```text
//! frame = type (u8) || conn (u32, big endian) || body
//! ```
//!
//! One channel instead of a channel per connection: opening a connection costs one message
//! instead of a DCEP round trip, a closed connection never waits on an SCTP stream reset before
//! its id can be reused (ids are never reused), and flow control is per connection (a reader
//! that stops stalls only its own connection, never the association).

use bytes::{BufMut, Bytes, BytesMut};

use crate::CloseReason;

/// SCTP stream id of the tube's one data channel (pre-negotiated on both sides).
pub const TUBE_CHANNEL_ID: u16 = 0;
/// Its label; pre-negotiated channels do not transmit it, so it only names the channel locally.
pub const TUBE_CHANNEL_LABEL: &str = "sallyport";
/// Bytes of the frame header: type and connection id.
pub const FRAME_HEADER_BYTES: usize = 5;
/// Largest frame (one data-channel message) either side sends: the `max-message-size` both
/// sides advertise in their SDP.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Largest payload of one `DATA` frame.
pub const MAX_DATA_BYTES: usize = MAX_FRAME_BYTES - FRAME_HEADER_BYTES;
/// Bytes each side may send on a new connection before the receiver grants more with `WINDOW`.
pub const INITIAL_WINDOW: u32 = 256 * 1024;

/// Frame types on the wire.
pub mod kind {
    pub const OPEN: u8 = 0x01;
    pub const OPENED: u8 = 0x02;
    pub const DATA: u8 = 0x03;
    pub const WINDOW: u8 = 0x04;
    pub const EOF: u8 = 0x05;
    pub const RESET: u8 = 0x06;
    pub const SHUTDOWN: u8 = 0x07;
    pub const PING: u8 = 0x08;
    pub const PONG: u8 = 0x09;
}

/// One frame of the tube channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Client → gateway: connect connection `conn` to the resource's target. Ids start at 1
    /// and strictly increase within a tube; they are never reused.
    Open { conn: u32 },
    /// Gateway → client: the target accepted connection `conn`.
    Opened { conn: u32 },
    /// Payload bytes of connection `conn` (never empty).
    Data { conn: u32, data: Bytes },
    /// The receiver of connection `conn` grants the sender `increment` more bytes.
    Window { conn: u32, increment: u32 },
    /// No more payload in this direction (a TCP half-close).
    Eof { conn: u32 },
    /// Connection `conn` is aborted in both directions, with the reason.
    Reset { conn: u32, reason: CloseReason },
    /// The whole tube is ending, with the reason (`conn` is 0 on the wire).
    Shutdown { reason: CloseReason },
    /// Is the peer still there? It answers `PONG` with the same 8 bytes (`conn` is 0).
    Ping { data: u64 },
    /// The answer to a `PING`.
    Pong { data: u64 },
}

/// Why bytes did not decode as a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a frame is at least {FRAME_HEADER_BYTES} bytes, got {0}")]
    Short(usize),
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    #[error("frame type 0x{kind:02x} has a body of {len} bytes, expected {expected}")]
    BodyLength {
        kind: u8,
        len: usize,
        expected: &'static str,
    },
    #[error("unknown close reason {0:?}")]
    Reason(String),
    #[error("connection id 0 is reserved for the tube")]
    ReservedConnection,
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
}

impl Frame {
    /// The connection the frame belongs to; 0 for `SHUTDOWN`.
    pub fn conn(&self) -> u32 {
        match self {
            Frame::Open { conn }
            | Frame::Opened { conn }
            | Frame::Data { conn, .. }
            | Frame::Window { conn, .. }
            | Frame::Eof { conn }
            | Frame::Reset { conn, .. } => *conn,
            Frame::Shutdown { .. } | Frame::Ping { .. } | Frame::Pong { .. } => 0,
        }
    }

    /// Encode into one message.
    pub fn encode(&self) -> BytesMut {
        let (kind, body_len) = match self {
            Frame::Open { .. } => (kind::OPEN, 0),
            Frame::Opened { .. } => (kind::OPENED, 0),
            Frame::Data { data, .. } => (kind::DATA, data.len()),
            Frame::Window { .. } => (kind::WINDOW, 4),
            Frame::Eof { .. } => (kind::EOF, 0),
            Frame::Reset { reason, .. } => (kind::RESET, reason.as_str().len()),
            Frame::Shutdown { reason } => (kind::SHUTDOWN, reason.as_str().len()),
            Frame::Ping { .. } => (kind::PING, 8),
            Frame::Pong { .. } => (kind::PONG, 8),
        };
        let mut out = BytesMut::with_capacity(FRAME_HEADER_BYTES + body_len);
        out.put_u8(kind);
        out.put_u32(self.conn());
        match self {
            Frame::Data { data, .. } => out.put_slice(data),
            Frame::Window { increment, .. } => out.put_u32(*increment),
            Frame::Reset { reason, .. } | Frame::Shutdown { reason } => {
                out.put_slice(reason.as_str().as_bytes())
            }
            Frame::Ping { data } | Frame::Pong { data } => out.put_u64(*data),
            Frame::Open { .. } | Frame::Opened { .. } | Frame::Eof { .. } => {}
        }
        out
    }

    /// Decode one message. `DATA` payloads are split off without copying.
    pub fn decode(mut message: BytesMut) -> Result<Frame, FrameError> {
        if message.len() < FRAME_HEADER_BYTES {
            return Err(FrameError::Short(message.len()));
        }
        if message.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge(message.len()));
        }
        let kind = message[0];
        let conn = u32::from_be_bytes([message[1], message[2], message[3], message[4]]);
        let body = message.split_off(FRAME_HEADER_BYTES).freeze();
        let expect_len = |expected: &'static str, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(FrameError::BodyLength {
                    kind,
                    len: body.len(),
                    expected,
                })
            }
        };
        let reason = |body: &Bytes| {
            let text = std::str::from_utf8(body)
                .map_err(|_| FrameError::Reason(String::from_utf8_lossy(body).into_owned()))?;
            CloseReason::parse(text).ok_or_else(|| FrameError::Reason(text.to_owned()))
        };
        if conn == 0 && (kind::OPEN..=kind::RESET).contains(&kind) {
            return Err(FrameError::ReservedConnection);
        }
        let eight = |body: &Bytes| -> Result<u64, FrameError> {
            let bytes: [u8; 8] = body[..].try_into().map_err(|_| FrameError::BodyLength {
                kind,
                len: body.len(),
                expected: "8",
            })?;
            Ok(u64::from_be_bytes(bytes))
        };
        match kind {
            kind::OPEN => expect_len("0", body.is_empty()).map(|_| Frame::Open { conn }),
            kind::OPENED => expect_len("0", body.is_empty()).map(|_| Frame::Opened { conn }),
            kind::DATA => {
                expect_len("at least 1", !body.is_empty()).map(|_| Frame::Data { conn, data: body })
            }
            kind::WINDOW => {
                expect_len("4", body.len() == 4)?;
                let increment = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                Ok(Frame::Window { conn, increment })
            }
            kind::EOF => expect_len("0", body.is_empty()).map(|_| Frame::Eof { conn }),
            kind::RESET => Ok(Frame::Reset {
                conn,
                reason: reason(&body)?,
            }),
            kind::SHUTDOWN => Ok(Frame::Shutdown {
                reason: reason(&body)?,
            }),
            kind::PING => Ok(Frame::Ping {
                data: eight(&body)?,
            }),
            kind::PONG => Ok(Frame::Pong {
                data: eight(&body)?,
            }),
            other => Err(FrameError::UnknownType(other)),
        }
    }

    /// Encode a `DATA` frame whose payload already sits after [`FRAME_HEADER_BYTES`] of
    /// reserved room at the front of `buf`: the header is written in place, nothing is copied.
    pub fn data_in_place(conn: u32, buf: &mut BytesMut) {
        debug_assert!(buf.len() > FRAME_HEADER_BYTES);
        buf[0] = kind::DATA;
        buf[1..FRAME_HEADER_BYTES].copy_from_slice(&conn.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: Frame) {
        let encoded = frame.encode();
        assert_eq!(Frame::decode(encoded).unwrap(), frame);
    }

    #[test]
    fn every_frame_round_trips() {
        round_trip(Frame::Open { conn: 1 });
        round_trip(Frame::Opened { conn: u32::MAX });
        round_trip(Frame::Data {
            conn: 7,
            data: Bytes::from_static(b"hello"),
        });
        round_trip(Frame::Window {
            conn: 7,
            increment: 65536,
        });
        round_trip(Frame::Eof { conn: 9 });
        round_trip(Frame::Reset {
            conn: 9,
            reason: CloseReason::TargetRefused,
        });
        round_trip(Frame::Shutdown {
            reason: CloseReason::GatewayShutdown,
        });
        round_trip(Frame::Ping { data: 42 });
        round_trip(Frame::Pong { data: u64::MAX });
    }

    #[test]
    fn the_wire_layout_is_type_then_big_endian_id() {
        let bytes = Frame::Window {
            conn: 0x0102_0304,
            increment: 0x10,
        }
        .encode();
        assert_eq!(&bytes[..], &[0x04, 1, 2, 3, 4, 0, 0, 0, 0x10]);
        let bytes = Frame::Reset {
            conn: 2,
            reason: CloseReason::TargetError,
        }
        .encode();
        assert_eq!(&bytes[..], b"\x06\x00\x00\x00\x02target_error");
    }

    #[test]
    fn data_in_place_matches_encode() {
        let mut buf = BytesMut::from(&b"\0\0\0\0\0payload"[..]);
        Frame::data_in_place(5, &mut buf);
        assert_eq!(
            buf,
            Frame::Data {
                conn: 5,
                data: Bytes::from_static(b"payload")
            }
            .encode()
        );
    }

    #[test]
    fn bad_frames_are_named() {
        assert_eq!(
            Frame::decode(BytesMut::from(&[1u8, 0, 0][..])),
            Err(FrameError::Short(3))
        );
        assert_eq!(
            Frame::decode(BytesMut::from(&[0x7f, 0, 0, 0, 1][..])),
            Err(FrameError::UnknownType(0x7f))
        );
        assert!(matches!(
            Frame::decode(BytesMut::from(&[kind::DATA, 0, 0, 0, 1][..])),
            Err(FrameError::BodyLength { .. })
        ));
        assert!(matches!(
            Frame::decode(BytesMut::from(&[kind::WINDOW, 0, 0, 0, 1, 0][..])),
            Err(FrameError::BodyLength { .. })
        ));
        assert_eq!(
            Frame::decode(BytesMut::from(&b"\x06\x00\x00\x00\x01nonsense"[..])),
            Err(FrameError::Reason("nonsense".into()))
        );
        assert_eq!(
            Frame::decode(BytesMut::from(&[kind::OPEN, 0, 0, 0, 0][..])),
            Err(FrameError::ReservedConnection)
        );
        let mut big = BytesMut::zeroed(MAX_FRAME_BYTES + 1);
        big[0] = kind::DATA;
        big[4] = 1;
        assert_eq!(
            Frame::decode(big),
            Err(FrameError::TooLarge(MAX_FRAME_BYTES + 1))
        );
    }
}
