//! The router over TLS: the connection guards hold with the handshake in the way, a reload
//! (SIGHUP) serves a new certificate while connected gateways stay, and `audit` reads the log.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use sallyport_ops::pki::{write_file, TestCa, Validity};
use sallyport_ops::tokio_rustls::{client::TlsStream, TlsConnector};
use sallyport_router::RouterConfig;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sallyport-router-tls-{name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `[tls]` for the certificate files in `dir`, and `extra` settings before it.
fn serving(dir: &Path, extra: &str) -> String {
    format!(
        "{extra}\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        dir.join("router.crt").display(),
        dir.join("router.key").display()
    )
}

fn client_tls(ca_file: &Path) -> Arc<sallyport_ops::rustls::ClientConfig> {
    Arc::new(sallyport_ops::tls::client_config("ca_file", Some(ca_file)).unwrap())
}

/// A TLS connection to the router at `addr`, checking its certificate against `ca_file`.
async fn tls_connect(addr: SocketAddr, ca_file: &Path) -> std::io::Result<TlsStream<TcpStream>> {
    let socket = TcpStream::connect(addr).await?;
    let name = sallyport_ops::rustls::pki_types::ServerName::from(addr.ip());
    TlsConnector::from(client_tls(ca_file))
        .connect(name, socket)
        .await
}

/// Everything the router sends on `stream` until it closes (at most `within`).
async fn read_all<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, within: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut out))
        .await
        .expect("the router closes the connection in time");
    String::from_utf8_lossy(&out).into_owned()
}

/// An old CA whose certificate the router serves from `dir`, and a new CA (also written to
/// `new-ca.pem`) for the certificate that replaces it.
struct ChangeOfCa {
    files: sallyport_ops::pki::ServerFiles,
    old: TestCa,
    new: TestCa,
    new_ca_file: PathBuf,
}

fn change_of_ca(dir: &Path) -> ChangeOfCa {
    let (old, new) = (
        TestCa::new("old CA").unwrap(),
        TestCa::new("new CA").unwrap(),
    );
    let files = old
        .write_server_files(dir, &["127.0.0.1"], Validity::Current)
        .unwrap();
    let new_ca_file = dir.join("new-ca.pem");
    write_file(&new_ca_file, new.pem(), 0o644).unwrap();
    ChangeOfCa {
        files,
        old,
        new,
        new_ca_file,
    }
}

impl ChangeOfCa {
    /// Replace the router's certificate files with a certificate of the new CA.
    fn replace_files(&self) {
        let issued = self.new.issue(&["127.0.0.1"], Validity::Current).unwrap();
        write_file(&self.files.cert_file, &issued.cert_pem, 0o644).unwrap();
        write_file(&self.files.key_file, &issued.key_pem, 0o600).unwrap();
    }
}

async fn tls_router(dir: &Path, extra: &str) -> sallyport_router::RouterHandle {
    router_from(&tls_config_with(1, 2, &serving(dir, extra))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guards_hold_over_tls() {
    let dir = scratch("guards");
    let ca = TestCa::new("test CA").unwrap();
    let files = ca
        .write_server_files(&dir, &["127.0.0.1"], Validity::Current)
        .unwrap();
    let router = tls_router(&dir, "max_connections_per_source = 2").await;
    let addr = router.addr;
    assert!(router.url().starts_with("https://"), "{}", router.url());

    // A connection that never starts its handshake is closed at the header timeout, without
    // an answer (there is no TLS session to answer in).
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_all(&mut silent, Duration::from_secs(5)).await, "");

    // A handshake and then no request: 408 header_timeout, through TLS.
    let mut idle = tls_connect(addr, &files.ca_file).await.unwrap();
    let answer = read_all(&mut idle, Duration::from_secs(5)).await;
    assert!(
        answer.starts_with("HTTP/1.1 408") && answer.contains("header_timeout"),
        "{answer:?}"
    );

    // A request over TLS is served.
    let mut healthy = tls_connect(addr, &files.ca_file).await.unwrap();
    healthy.write_all(get("/healthz").as_bytes()).await.unwrap();
    let answer = read_all(&mut healthy, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");

    // Plain HTTP to a TLS router: the handshake fails and the connection closes.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(get("/healthz").as_bytes()).await.unwrap();
    let answer = read_all(&mut plain, Duration::from_secs(5)).await;
    assert!(!answer.contains("HTTP/1.1 200"), "{answer:?}");

    // Past the per-source cap, the refusal is answered through TLS too.
    let _first = tls_connect(addr, &files.ca_file).await.unwrap();
    let _second = tls_connect(addr, &files.ca_file).await.unwrap();
    let mut third = tls_connect(addr, &files.ca_file).await.unwrap();
    let answer = read_all(&mut third, Duration::from_secs(5)).await;
    assert!(
        answer.starts_with("HTTP/1.1 429") && answer.contains("too_many_connections"),
        "{answer:?}"
    );
    router.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_the_new_certificate_and_keeps_the_gateway() {
    let dir = scratch("reload");
    let change = change_of_ca(&dir);
    let (files, new_ca_file) = (&change.files, &change.new_ca_file);
    // The gateway trusts both, as during a planned change of CA.
    let both = dir.join("both.pem");
    let pems = format!("{}{}", change.old.pem(), change.new.pem());
    write_file(&both, &pems, 0o644).unwrap();
    let audit = dir.join("audit.jsonl");
    let router = router_from(&tls_config_with(
        10,
        30,
        &serving(&dir, &format!("audit_log = \"{}\"", audit.display())),
    ))
    .await;
    let url = router.url();

    let mut request = sallyport_protocol::websocket_url(&url, "/v1/ws/gateway")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {GATEWAY_TOKEN}").parse().unwrap(),
    );
    let connector = tokio_tungstenite::Connector::Rustls(client_tls(&both));
    let (mut gateway, _) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector))
            .await
            .unwrap();
    let welcome = hello_with(&mut gateway, Some(&gateway_key())).await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["reports"], true, "{welcome}");

    // The new certificate, from the new CA, replaces the files; then the reload.
    change.replace_files();
    assert!(
        tls_connect(router.addr, new_ca_file).await.is_err(),
        "not before the reload"
    );
    router.reload().unwrap();
    assert!(tls_connect(router.addr, new_ca_file).await.is_ok());
    let err = tls_connect(router.addr, &files.ca_file).await.unwrap_err();
    let why = sallyport_ops::tls::explain(&err);
    assert!(why.contains("not signed by a trusted CA"), "{why}");

    // A reload from broken files is refused, naming the file, and the certificate stays.
    std::fs::write(&files.key_file, "not a key\n").unwrap();
    let err = router.reload().unwrap_err().to_string();
    assert!(
        err.contains("tls.key_file") && err.contains("router.key"),
        "{err}"
    );
    assert!(tls_connect(router.addr, new_ca_file).await.is_ok());

    // The gateway's socket from before the reload still carries the router's messages: it
    // announces a resource, and a client's message for it is forwarded on it.
    let announce = serde_json::json!({"type": "hello", "v": 1, "gateway_id": "dc1",
        "resources": [{"name": "db", "protocol": "postgres"}]});
    gateway
        .send(Message::Text(announce.to_string().into()))
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured((*client_tls(new_ca_file)).clone())
        .build()
        .unwrap();
    let post = http
        .post(format!("{url}/v1/gateways/dc1/messages"))
        .bearer_auth(CLIENT_TOKEN)
        .body(
            serde_json::json!({"v": 1, "conversation_id": "conversation-1", "resource": "db",
                "kind": "start", "timeout_ms": 300,
                "payload": {"epk": "", "nonce": "", "ct": ""}})
            .to_string(),
        )
        .send();
    let (posted, forwarded) = tokio::join!(post, next_json(&mut gateway));
    assert_eq!(forwarded["type"], "forward", "{forwarded}");
    assert_eq!(
        posted.unwrap().status(),
        504,
        "the test gateway never replies"
    );
    let log = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(
        log.matches("\"gateway_connected\"").count(),
        1,
        "one connection all along: {log}"
    );
    assert_eq!(log.matches("\"gateway_disconnected\"").count(), 0, "{log}");
    router.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sighup_reloads_the_running_binary() {
    let dir = scratch("sighup");
    let change = change_of_ca(&dir);
    let (files, new_ca_file) = (&change.files, &change.new_ca_file);
    let (child, addr) = child_router(
        env!("CARGO_BIN_EXE_sallyport-router"),
        &tls_config_with(10, 30, &serving(&dir, "")),
        None,
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    assert!(runtime.block_on(tls_connect(addr, &files.ca_file)).is_ok());
    change.replace_files();
    // SAFETY: signalling the child process this test started.
    unsafe {
        libc::kill(child.0.id() as libc::pid_t, libc::SIGHUP);
    }
    // The signal is handled asynchronously: wait (bounded) for the new certificate.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while runtime.block_on(tls_connect(addr, new_ca_file)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the router did not reload on SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(runtime.block_on(tls_connect(addr, &files.ca_file)).is_err());
    drop(child);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_bad_certificate_file_is_named_at_start() {
    let dir = scratch("bad-cert");
    let ca = TestCa::new("test CA").unwrap();
    let files = ca
        .write_server_files(&dir, &["127.0.0.1"], Validity::Current)
        .unwrap();
    std::fs::write(&files.cert_file, "garbage\n").unwrap();
    let path = dir.join("router.toml");
    std::fs::write(&path, tls_config_with(10, 30, &serving(&dir, ""))).unwrap();
    let err = RouterConfig::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("router.toml: tls.cert_file")
            && err.contains("router.crt")
            && err.contains("no PEM certificate"),
        "{err}"
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sallyport-router"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("tls.cert_file"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn audit_reads_back_what_was_asked_for() {
    let dir = scratch("audit-cli");
    let path = dir.join("audit.jsonl");
    let now = sallyport_ops::jsonl::timestamp(std::time::SystemTime::now());
    std::fs::write(
        &path,
        format!(
            "{{\"ts\":\"2001-01-01T00:00:00.000Z\",\"event\":\"sign_in\",\"user\":\"alice\"}}\n\
             {{\"ts\":\"{now}\",\"event\":\"launch_requested\",\"user\":\"alice\",\"resource\":\"db\",\"gateway\":\"dc1\",\"conversation_id\":\"conversation-1\"}}\n\
             {{\"ts\":\"{now}\",\"event\":\"launch_refused\",\"user\":\"bob\",\"resource\":\"web\",\"code\":\"forbidden\"}}\n\
             cut off by a full dis\n"
        ),
    )
    .unwrap();
    let config = dir.join("router.toml");
    std::fs::write(&config, "plain_http = true\naudit_log = \"audit.jsonl\"\n").unwrap();
    let audit = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sallyport-router"))
            .arg("audit")
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (out, err) = audit(&["--since", "1h"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.contains("launch_requested") && out.contains("user=alice"),
        "{out}"
    );
    assert!(
        out.contains("code=forbidden") && !out.contains("sign_in"),
        "{out}"
    );
    assert!(err.contains("1 line(s) are not audit records"), "{err}");
    let (out, _) = audit(&["--since", "1h", "--user", "bob"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let (out, _) = audit(&["--since", "2000-01-01", "--resource", "db", "--json"]);
    let record: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(record["conversation_id"], "conversation-1");
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_sallyport-router"))
        .args(["audit", "--since", "yesterday", "--file"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since"));
    let _ = std::fs::remove_dir_all(dir);
}
