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
