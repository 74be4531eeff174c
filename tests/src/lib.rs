//! Helpers shared by the end-to-end tests: a lab, a launcher for it, byte pumps, and TLS for
//! tests that build their own router.

pub mod oidc;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sallyport_core::router_api::RouterApi;
use sallyport_core::{ClientChoice, LaunchRequest, Launcher, Profile, StickyPorts, Tunables};
use sallyport_lab::{Lab, LabOptions};
use sallyport_ops::pki::{ServerFiles, TestCa, Validity};
use sallyport_router::config::TlsFiles;
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

/// A CA and a router certificate for loopback, in a scratch directory of its own.
pub struct Pki {
    pub dir: PathBuf,
    pub files: ServerFiles,
    pub ca: TestCa,
}

/// A fresh CA with a certificate for `localhost`, `127.0.0.1` and `::1`.
pub fn pki(name: &str) -> Pki {
    let dir = scratch(name);
    let ca = TestCa::new("test CA").unwrap();
    let files = ca
        .write_server_files(&dir, &["localhost", "127.0.0.1", "::1"], Validity::Current)
        .unwrap();
    Pki { dir, files, ca }
}

impl Pki {
    /// The router's `[tls]`.
    pub fn tls(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert_file: self.files.cert_file.clone(),
            key_file: self.files.key_file.clone(),
        })
    }

    pub fn ca_file(&self) -> &Path {
        &self.files.ca_file
    }
}

/// An HTTP client trusting only the CA in `ca_file`, for raw requests.
pub fn http(ca_file: &Path) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(
            sallyport_ops::tls::client_config("ca_file", Some(ca_file)).unwrap(),
        )
        .build()
        .unwrap()
}

/// The router API of the lab, as its profile describes it.
pub fn lab_api(lab: &Lab) -> RouterApi {
    RouterApi::for_profile(&lab.profile, &lab.client_token).unwrap()
}

pub use sallyport_kit::WebSocket;

/// A raw WebSocket to `path` on the router at `url` (`https://`), with `token` if any,
/// trusting the CA in `ca_file`.
pub async fn websocket(
    url: &str,
    path: &str,
    token: Option<&str>,
    ca_file: &Path,
) -> Result<WebSocket, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = sallyport_protocol::websocket_url(url, path)
        .into_client_request()
        .unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let tls = sallyport_ops::tls::client_config("ca_file", Some(ca_file)).unwrap();
    let connector = tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(tls));
    tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector))
        .await
        .map(|(socket, _)| socket)
}

/// A raw WebSocket to the router's gateway endpoint with `token`, to play a gateway by hand;
/// an `https` router's certificate is checked against the CA in `ca_file`.
pub async fn gateway_socket(url: &str, token: &str, ca_file: Option<&Path>) -> WebSocket {
    let tls = ca_file.map(|ca| {
        std::sync::Arc::new(sallyport_ops::tls::client_config("ca_file", Some(ca)).unwrap())
    });
    sallyport_kit::connect(url, sallyport_protocol::GATEWAY_WS_PATH, token, tls)
        .await
        .unwrap()
}

/// The router's `/metrics` text (an `https` router's certificate checked against `ca_file`).
pub async fn metrics(router_url: &str, ca_file: Option<&Path>) -> String {
    let client = match ca_file {
        Some(ca) => http(ca),
        None => reqwest::Client::new(),
    };
    client
        .get(format!("{router_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The lines of the audit log at `path` until `done` holds for them (at most 15 s: the
/// gateway's reports arrive after the launches they describe).
pub async fn audit_until(
    path: &Path,
    done: impl Fn(&[sallyport_router::audit::AuditRecord]) -> bool,
) -> Vec<sallyport_router::audit::AuditRecord> {
    let query = sallyport_router::audit::AuditQuery::default();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (records, unreadable) = sallyport_router::audit::read(path, &query).unwrap();
        assert_eq!(
            unreadable,
            0,
            "every line of {} is a record",
            path.display()
        );
        if done(&records) || std::time::Instant::now() > deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The header of a JWT, decoded (no check of anything).
pub fn jwt_header(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let part = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}
