//! Two tubes in one process over loopback UDP, a gateway side that bridges every incoming
//! connection to a target, and TCP targets to bridge to.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sallyport_protocol::CloseReason;
use sallyport_tube::{ByteCounters, Milestone, Tube, TubeConfig, TubeEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// How candidates travel: inside the descriptions, trickled late, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signalling {
    InDescriptions,
    TrickledOnly,
}

pub struct Pair {
    pub client: Arc<Tube>,
    pub gateway: Arc<Tube>,
    pub gateway_events: Option<UnboundedReceiver<TubeEvent>>,
}

/// Strip every `a=candidate` line, as a peer that trickles everything would send.
pub fn without_candidates(sdp: &str) -> String {
    sdp.lines()
        .filter(|l| !l.starts_with("a=candidate") && !l.starts_with("a=end-of-candidates"))
        .map(|l| format!("{l}\r\n"))
        .collect()
}

async fn drain_candidates(
    events: &mut UnboundedReceiver<TubeEvent>,
) -> Vec<sallyport_protocol::IceCandidate> {
    let mut out = Vec::new();
    while let Some(event) = events.recv().await {
        match event {
            TubeEvent::LocalCandidate(c) => out.push(c),
            TubeEvent::GatheringComplete => break,
            TubeEvent::Incoming(_) => panic!("no connection before the offer"),
        }
    }
    out
}

pub async fn pair_with(config: &TubeConfig, signalling: Signalling) -> Pair {
    pair_of(config, config, signalling).await
}

/// Two ends configured differently, candidates in the descriptions.
pub async fn pair_between(client: &TubeConfig, gateway: &TubeConfig) -> Pair {
    pair_of(client, gateway, Signalling::InDescriptions).await
}

async fn pair_of(
    client_config: &TubeConfig,
    gateway_config: &TubeConfig,
    signalling: Signalling,
) -> Pair {
    let (client, mut client_events, mut offer) = Tube::offer(client_config).await.unwrap();
    let client_candidates = drain_candidates(&mut client_events).await;
    if signalling == Signalling::TrickledOnly {
        offer.sdp = without_candidates(&offer.sdp);
    }
    let (gateway, mut gateway_events, mut answer) =
        Tube::answer(gateway_config, &offer).await.unwrap();
    let gateway_candidates = drain_candidates(&mut gateway_events).await;
    if signalling == Signalling::TrickledOnly {
        answer.sdp = without_candidates(&answer.sdp);
    }
    client.apply_answer(&answer).await.unwrap();
    if signalling == Signalling::TrickledOnly {
        for c in &gateway_candidates {
            client.add_remote_candidate(c).await.unwrap();
        }
        for c in &client_candidates {
            gateway.add_remote_candidate(c).await.unwrap();
        }
    }
    Pair {
        client: Arc::new(client),
        gateway: Arc::new(gateway),
        gateway_events: Some(gateway_events),
    }
}

/// Two ends whose first connection the gateway opens at once (`open_first`), adopted by the
/// client before it applies the answer, as the launch does.
pub async fn pair_opening_first(
    client_config: &TubeConfig,
    gateway_config: &TubeConfig,
) -> (Pair, sallyport_tube::Connection) {
    let (client, mut client_events, offer) = Tube::offer(client_config).await.unwrap();
    drain_candidates(&mut client_events).await;
    let (gateway, mut gateway_events, answer) = Tube::answer(gateway_config, &offer).await.unwrap();
    drain_candidates(&mut gateway_events).await;
    gateway.open_first();
    let first = client.adopt_first().await.unwrap();
    client.apply_answer(&answer).await.unwrap();
    let pair = Pair {
        client: Arc::new(client),
        gateway: Arc::new(gateway),
        gateway_events: Some(gateway_events),
    };
    (pair, first)
}

pub async fn pair() -> Pair {
    pair_with(&TubeConfig::default(), Signalling::InDescriptions).await
}

impl Pair {
    pub async fn connected(&self) {
        self.client
            .reached(Milestone::ChannelOpen, TIMEOUT)
            .await
            .unwrap();
        self.gateway
            .reached(Milestone::ChannelOpen, TIMEOUT)
            .await
            .unwrap();
    }

    /// Serve the gateway side: every incoming connection is dialed to `target` and bridged.
    pub fn serve(&mut self, target: SocketAddr) -> Arc<ByteCounters> {
        let mut events = self.gateway_events.take().expect("served once");
        let counters = Arc::new(ByteCounters::default());
        let shared = counters.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let TubeEvent::Incoming(connection) = event {
                    let counters = shared.clone();
                    tokio::spawn(async move {
                        match TcpStream::connect(target).await {
                            Ok(stream) => {
                                connection.accept();
                                connection.bridge(stream, counters).await;
                            }
                            Err(_) => connection.refuse(CloseReason::TargetRefused),
                        }
                    });
                }
            }
        });
        counters
    }

    /// A local listener whose connections each become one tube connection.
    pub async fn local_port(&self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tube = self.client.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let Ok(connection) = tube.open().await else {
                    break;
                };
                tokio::spawn(connection.bridge(stream, Arc::new(ByteCounters::default())));
            }
        });
        addr
    }
}

/// An echo target.
pub async fn echo_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Send `len` pseudo-random bytes through `stream` and read the echo; both SHA-256 digests.
pub async fn echo_round_trip(stream: TcpStream, len: usize, seed: u64) -> ([u8; 32], [u8; 32]) {
    use sha2::{Digest, Sha256};
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        let mut hasher = Sha256::new();
        let mut state = seed | 1;
        let mut sent = 0;
        let mut chunk = vec![0u8; 64 * 1024];
        while sent < len {
            let n = chunk.len().min(len - sent);
            for b in chunk[..n].iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            hasher.update(&chunk[..n]);
            w.write_all(&chunk[..n]).await.unwrap();
            sent += n;
        }
        w.shutdown().await.unwrap();
        <[u8; 32]>::from(hasher.finalize())
    });
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    (writer.await.unwrap(), hasher.finalize().into())
}

/// Serve the gateway side with a target per connection, in the order they open: the first
/// goes to `targets[0]`, the second to `targets[1]`, and every later one to the last target.
impl Pair {
    pub fn serve_each(&mut self, targets: Vec<SocketAddr>) {
        let mut events = self.gateway_events.take().expect("served once");
        tokio::spawn(async move {
            let mut i = 0usize;
            while let Some(event) = events.recv().await {
                if let TubeEvent::Incoming(connection) = event {
                    let target = targets[i.min(targets.len() - 1)];
                    i += 1;
                    tokio::spawn(async move {
                        match TcpStream::connect(target).await {
                            Ok(stream) => {
                                connection.accept();
                                connection
                                    .bridge(stream, Arc::new(ByteCounters::default()))
                                    .await;
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                                connection.refuse(CloseReason::TargetRefused)
                            }
                            Err(_) => connection.refuse(CloseReason::TargetUnreachable),
                        }
                    });
                }
            }
        });
    }

    /// Wait until neither end carries a connection any more.
    pub async fn settle(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            let (c, g) = (
                self.client.traffic().connections.load(Relaxed),
                self.gateway.traffic().connections.load(Relaxed),
            );
            if c == 0 && g == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "connections left open: client {c}, gateway {g}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A target that streams pseudo-random bytes until the peer goes away.
pub async fn source_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let chunk = vec![0x5au8; 64 * 1024];
                while stream.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    addr
}

/// A target that reads `before` bytes, then resets the connection.
pub async fn resetting_target(before: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = 0;
                while got < before {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                reset(stream);
            });
        }
    });
    addr
}

/// Close `stream` with a reset (RST) instead of an orderly close.
pub fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}

/// An address where nothing listens.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// One short exchange through the local port: send `text`, read it back, close.
pub async fn ping(port: SocketAddr, text: &[u8]) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(port).await?;
    stream.write_all(text).await?;
    let mut back = vec![0u8; text.len()];
    tokio::time::timeout(TIMEOUT, stream.read_exact(&mut back))
        .await
        .map_err(|_| std::io::Error::other("no echo in time"))??;
    assert_eq!(back, text);
    Ok(())
}
