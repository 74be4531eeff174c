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
    /// The socket failed (reset, broken pipe) rather than closing cleanly.
    pub socket_failed: bool,
}

/// Text message on a connection channel meaning "no more bytes this way" (TCP half-close).
/// Payload bytes always travel as binary messages, so the two cannot be confused.
pub const EOF_MARKER: &str = "eof";

/// How long the last sender waits for the peer to close before closing itself.
const LINGER: std::time::Duration = std::time::Duration::from_secs(30);

enum End {
    /// This direction finished cleanly with an EOF (sent or received).
    Eof,
    /// The channel broke or closed.
    Broken,
    /// The socket failed (reset, broken pipe).
    SocketError,
}

/// Run until both directions are done. A socket EOF is forwarded as [`EOF_MARKER`] so the far
/// side can half-close its socket and still deliver the reply. The two directions run
/// concurrently: a blocked write one way must never stop reads the other way, or an echoing
/// target deadlocks against us once the socket buffers fill.
pub async fn bridge(
    stream: TcpStream,
    channel: Channel,
    counters: Arc<ByteCounters>,
) -> BridgeStats {
    let (mut reader, mut writer) = stream.into_split();

    // Socket → channel, then the EOF marker.
    let upstream = {
        let channel = channel.clone();
        let counters = counters.clone();
        async move {
            let mut buf = vec![0u8; DATA_CHUNK_BYTES];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) => {
                        return match channel.send_text(EOF_MARKER).await {
                            Ok(()) => End::Eof,
                            Err(_) => End::Broken,
                        }
                    }
                    Err(_) => return End::SocketError,
                    Ok(n) => {
                        if channel.send(&buf[..n]).await.is_err() {
                            return End::Broken;
                        }
                        counters.to_channel.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
        }
    };

    // Channel → socket, until the EOF marker (then half-close the socket) or the channel ends.
    let downstream = {
        let channel = channel.clone();
        let counters = counters.clone();
        async move {
            loop {
                match channel.next_event().await {
                    ChannelEvent::Message(data) => {
                        if writer.write_all(&data).await.is_err() {
                            return End::SocketError;
                        }
                        counters
                            .from_channel
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    ChannelEvent::Text(text) if text == EOF_MARKER => {
                        let _ = writer.shutdown().await;
                        return End::Eof;
                    }
                    ChannelEvent::Open => {}
                    ChannelEvent::Text(_) | ChannelEvent::Closed => {
                        let _ = writer.shutdown().await;
                        return End::Broken;
                    }
                }
            }
        }
    };

    tokio::pin!(upstream);
    tokio::pin!(downstream);
    let mut sent: Option<End> = None;
    let mut received: Option<End> = None;
    // Whoever receives the last EOF closes the channel: closing right after *sending* could
    // reset the stream before the queued bytes are delivered.
    let close_now = loop {
        let received_last = tokio::select! {
            end = &mut upstream, if sent.is_none() => {
                sent = Some(end);
                false
            }
            end = &mut downstream, if received.is_none() => {
                received = Some(end);
                true
            }
        };
        match (&sent, &received) {
            (Some(End::Broken | End::SocketError), _)
            | (_, Some(End::Broken | End::SocketError)) => break true,
            // Both EOFs: close if ours went first and theirs arrived after (all is here).
            (Some(End::Eof), Some(End::Eof)) => break received_last,
            _ => continue,
        }
    };
    if !close_now {
        // We sent the last EOF: let the peer close once it has everything, within reason.
        let _ = tokio::time::timeout(LINGER, async {
            while !matches!(channel.next_event().await, ChannelEvent::Closed) {}
        })
        .await;
    }
    channel.close().await;
    BridgeStats {
        from_channel: counters.from_channel.load(Ordering::Relaxed),
        to_channel: counters.to_channel.load(Ordering::Relaxed),
        socket_failed: matches!(sent, Some(End::SocketError))
            || matches!(received, Some(End::SocketError)),
    }
}
