//! Copying bytes between a TCP stream and a data channel, both ways, with back-pressure:
//! a full data-channel send buffer stops reads from the socket, and a slow socket stops
//! reads from the channel (the driver then shrinks the SCTP window toward the sender).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sallyport_protocol::DATA_CHUNK_BYTES;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Channel, ChannelEvent};

/// Byte counters shared with whoever reports on the connection (a session, the gateway).
#[derive(Debug, Default)]
pub struct ByteCounters {
    /// Bytes read from the data channel and written to the socket.
    pub from_channel: AtomicU64,
    /// Bytes read from the socket and sent on the data channel.
    pub to_channel: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeStats {
    pub from_channel: u64,
    pub to_channel: u64,
}

/// Text message on a connection channel meaning "no more bytes this way" (TCP half-close).
/// Payload bytes always travel as binary messages, so the two cannot be confused.
pub const EOF_MARKER: &str = "eof";

/// How long the last sender waits for the peer to close before closing itself.
const LINGER: std::time::Duration = std::time::Duration::from_secs(30);

enum UpstreamEnd {
    Eof,
    Broken,
}

/// Run until both directions are done. A socket EOF is forwarded as [`EOF_MARKER`] so the far
/// side can half-close its socket and still deliver the reply; the channel is closed once both
/// directions have ended, or at once when either side breaks.
pub async fn bridge(
    stream: TcpStream,
    channel: Channel,
    counters: Arc<ByteCounters>,
) -> BridgeStats {
    let (mut reader, mut writer) = stream.into_split();

    let upstream = {
        let channel = channel.clone();
        let counters = counters.clone();
        async move {
            let mut buf = vec![0u8; DATA_CHUNK_BYTES];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) => return UpstreamEnd::Eof,
                    Err(_) => return UpstreamEnd::Broken,
                    Ok(n) => {
                        if channel.send(&buf[..n]).await.is_err() {
                            return UpstreamEnd::Broken;
                        }
                        counters.to_channel.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
        }
    };
    tokio::pin!(upstream);

    // Whoever receives the last EOF closes the channel: closing right after *sending* could
    // reset the stream before the queued bytes are delivered.
    let mut sent_eof = false;
    let mut got_eof = false;
    loop {
        let linger = async {
            if sent_eof && got_eof {
                tokio::time::sleep(LINGER).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            end = &mut upstream, if !sent_eof => match end {
                UpstreamEnd::Eof => {
                    sent_eof = true;
                    if channel.send_text(EOF_MARKER).await.is_err() {
                        break;
                    }
                }
                UpstreamEnd::Broken => break,
            },
            event = channel.next_event() => match event {
                ChannelEvent::Message(data) => {
                    if got_eof || writer.write_all(&data).await.is_err() {
                        break;
                    }
                    counters
                        .from_channel
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                ChannelEvent::Text(text) if text == EOF_MARKER => {
                    got_eof = true;
                    let _ = writer.shutdown().await;
                    if sent_eof {
                        break;
                    }
                }
                ChannelEvent::Text(_) => break,
                ChannelEvent::Open => {}
                ChannelEvent::Closed => break,
            },
            // Both EOFs are done but the peer never closed: don't hold the channel forever.
            _ = linger => break,
        }
    }
    let _ = writer.shutdown().await;
    channel.close().await;
    BridgeStats {
        from_channel: counters.from_channel.load(Ordering::Relaxed),
        to_channel: counters.to_channel.load(Ordering::Relaxed),
    }
}
