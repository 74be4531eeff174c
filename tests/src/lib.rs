//! Helpers shared by the end-to-end tests: a lab, a launcher for it, byte pumps.

use std::time::Duration;

use sallyport_core::{ClientChoice, LaunchRequest, Launcher, Profile, StickyPorts, Tunables};
use sallyport_lab::{Lab, LabOptions};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A lab with only the demo target (plus `extra` resources), on loopback.
pub async fn lab(extra: Vec<(String, String, String)>) -> Lab {
    Lab::start(LabOptions {
        include_local_services: false,
        extra_resources: extra,
        ..LabOptions::default()
    })
    .await
    .expect("lab starts")
}

/// A scratch directory for sticky ports and state.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sallyport-test-{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn launcher(lab: &Lab, name: &str) -> Launcher {
    let dir = scratch(name);
    Launcher::new(
        lab.profile.clone(),
        &lab.client_token,
        StickyPorts::new(dir.join("ports.json")),
    )
    .unwrap()
    .with_state_dir(dir)
}

pub fn request(resource: &str, profile: Profile) -> LaunchRequest {
    let mut request = LaunchRequest::new(resource, Tunables::for_profile(profile));
    request.client = ClientChoice::None;
    request
}

/// Send `len` pseudo-random bytes through `port` to an echo target while reading them
/// back; returns (sha256 sent, sha256 received).
pub async fn echo_through(port: u16, len: usize, seed: u64) -> ([u8; 32], [u8; 32]) {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        let mut hasher = Sha256::new();
        let mut state = seed | 1;
        let mut sent = 0;
        let mut chunk = vec![0u8; 64 * 1024];
        while sent < len {
            let n = chunk.len().min(len - sent);
            for b in chunk[..n].iter_mut() {
                // xorshift: cheap, deterministic, not compressible
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
        let digest: [u8; 32] = hasher.finalize().into();
        digest
    });
    let mut hasher = Sha256::new();
    let mut received = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while received < len {
        let n = tokio::time::timeout(Duration::from_secs(60), r.read(&mut buf))
            .await
            .expect("echo keeps flowing")
            .unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        received += n;
    }
    assert_eq!(received, len, "every byte came back");
    let sent = writer.await.unwrap();
    (sent, hasher.finalize().into())
}

/// A TCP echo target on loopback, for tests that build their own router and gateway.
pub async fn echo_target() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A raw WebSocket to the router's gateway endpoint with `token`, to play a gateway by hand.
pub async fn gateway_socket(url: &str, token: &str) -> sallyport_kit::WebSocket {
    sallyport_kit::connect(url, sallyport_protocol::GATEWAY_WS_PATH, token)
        .await
        .unwrap()
}

/// The router's `/metrics` text.
pub async fn metrics(router_url: &str) -> String {
    reqwest::get(format!("{router_url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
