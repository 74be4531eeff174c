//! Helpers shared by the hostile-peer tests and the reliability measurement
//! (`examples/reliability.rs`): a configured router, raw HTTP over loopback sockets bound to
//! chosen source addresses, a child router process with an open-file limit, and gateway
//! sockets that answer the router's challenge.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sallyport_protocol::{GatewayKeyPair, PROTOCOL_VERSION};
use sallyport_router::{RouterConfig, RouterHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

pub const CLIENT_TOKEN: &str = "alice-client-token";
pub const GATEWAY_TOKEN: &str = "dc1-gateway-token";

pub fn gateway_key() -> GatewayKeyPair {
    GatewayKeyPair::from_base64("BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU=").unwrap()
}

/// A configuration with one client and one gateway (`dc1`), the given timeouts, and `extra`
/// settings on top; plain HTTP on loopback, so the tests can speak raw HTTP (tests/tls.rs
/// covers the same guards over TLS).
pub fn config_with(header_secs: u64, idle_secs: u64, extra: &str) -> String {
    tls_config_with(
        header_secs,
        idle_secs,
        &format!("plain_http = true\n{extra}"),
    )
}

/// As [`config_with`], but `extra` must say how to serve (`plain_http` or `[tls]`, last).
pub fn tls_config_with(header_secs: u64, idle_secs: u64, extra: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
header_read_timeout_secs = {header_secs}
idle_timeout_secs = {idle_secs}
{extra}
[[gateways]]
id = "dc1"
token = "{GATEWAY_TOKEN}"
public_key = "{}"
resources = [{{ name = "db", protocol = "postgres" }}]

[[clients]]
name = "alice"
token = "{CLIENT_TOKEN}"
resources = ["*"]
"#,
        gateway_key().public()
    )
}

/// The tests' configuration: a 1 s header timeout and a 2 s idle timeout.
pub fn config_text(extra: &str) -> String {
    config_with(1, 2, extra)
}

pub async fn router(extra: &str) -> RouterHandle {
    router_from(&config_text(extra)).await
}

pub async fn router_from(config: &str) -> RouterHandle {
    sallyport_router::spawn(RouterConfig::parse(config).unwrap())
        .await
        .unwrap()
}

pub fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A TCP connection to `addr` from the loopback address `source`.
pub async fn connect_from(source: IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Everything the router sends until it closes the connection (at most `within`).
pub async fn read_to_close(stream: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut out))
        .await
        .expect("the router closes the connection in time")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

/// Send a raw request and return the response's status and JSON body.
pub async fn exchange(
    addr: SocketAddr,
    source: IpAddr,
    request: &str,
    within: Duration,
) -> (u16, serde_json::Value) {
    let mut stream = connect_from(source, addr).await;
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = read_to_close(&mut stream, within).await;
    parse_response(&response)
}

pub fn parse_response(response: &str) -> (u16, serde_json::Value) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or_default())
}

/// The head of a client POST to gateway `dc1` declaring `length` body bytes (none sent).
pub fn post(token: &str, length: &str) -> String {
    format!(
        "POST /v1/gateways/dc1/messages HTTP/1.1\r\nhost: router\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {length}\r\n\r\n"
    )
}

/// `count` connections, from 127.0.0.`first`.., each in the middle of a POST whose body has
/// stopped coming: busy until the idle timeout.
pub async fn busy_connections(addr: SocketAddr, first: u8, count: u8) -> Vec<TcpStream> {
    let mut busy = Vec::new();
    for i in 0..count {
        let mut stream = connect_from(loopback(first + i), addr).await;
        stream
            .write_all(format!("{}{{", post(CLIENT_TOKEN, "50")).as_bytes())
            .await
            .unwrap();
        busy.push(stream);
    }
    // Until the router has read each head and is waiting for its body.
    tokio::time::sleep(Duration::from_millis(300)).await;
    busy
}

pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: router\r\nconnection: close\r\n\r\n")
}

pub async fn healthz(addr: SocketAddr, source: IpAddr) -> u16 {
    exchange(addr, source, &get("/healthz"), Duration::from_secs(10))
        .await
        .0
}

/// Set the open-file limit of a child process before it starts.
pub fn limit_descriptors(command: &mut std::process::Command, limit: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe and touches nothing but the child's limits.
    unsafe {
        command.pre_exec(move || {
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Kills the child router however the test ends.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the router binary at `binary` with `config` and an open-file limit of `fd_limit`
/// (hard and soft, so it cannot raise it); returns it with its address.
pub fn child_router(binary: &str, config: &str, fd_limit: Option<u64>) -> (Child, SocketAddr) {
    let dir = std::env::temp_dir().join(format!(
        "sallyport-router-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("router.toml");
    std::fs::write(&path, config).unwrap();
    let mut command = std::process::Command::new(binary);
    command
        .arg("--config")
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    if let Some(limit) = fd_limit {
        limit_descriptors(&mut command, limit);
    }
    let mut child = Child(command.spawn().unwrap());
    let mut banner = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.0.stdout.take().unwrap()),
        &mut banner,
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(dir);
    let addr = banner
        .trim()
        .rsplit("://")
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {banner:?}"));
    (child, addr)
}

pub async fn gateway_socket(url: &str) -> Socket {
    sallyport_kit::connect(
        url,
        sallyport_protocol::GATEWAY_WS_PATH,
        GATEWAY_TOKEN,
        None,
    )
    .await
    .unwrap()
}

pub type Socket = sallyport_kit::WebSocket;

pub async fn next_json(socket: &mut Socket) -> serde_json::Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a frame in time")
            .expect("the socket is open")
            .unwrap();
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// Answer the router's challenge with `key` (the real one or not); returns the router's reply.
pub async fn hello_with(socket: &mut Socket, key: Option<&GatewayKeyPair>) -> serde_json::Value {
    let challenge = next_json(socket).await;
    assert_eq!(challenge["type"], "challenge");
    let mut hello = serde_json::json!({"type": "hello", "v": PROTOCOL_VERSION, "gateway_id": "dc1", "resources": []});
    if let Some(key) = key {
        hello["proof"] = key
            .prove(
                "dc1",
                challenge["nonce"].as_str().unwrap(),
                challenge["epk"].as_str().unwrap(),
            )
            .unwrap()
            .into();
    }
    socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .unwrap();
    next_json(socket).await
}

/// The value of the router's metric `name` (a gauge or counter without labels).
pub async fn metric(url: &str, name: &str) -> String {
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no metric {name}"))
        .to_owned()
}
