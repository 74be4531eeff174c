//! Measures what a user sees for each fault and hostile input the router and gateway handle,
//! against real router processes on loopback, and prints the rows of docs/RELIABILITY.md.
//!
//! `scripts/reliability.sh` builds the binaries and runs this:
//! `reliability ROUTER_BINARY GATEWAY_BINARY`. It uses the default timeouts (a 10 s header
//! read timeout, a 30 s idle timeout), so it takes about a minute.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sallyport_protocol::GatewayKeyPair;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IDLE_CONNECTIONS: usize = 2000;
const SOURCES: usize = 10;
const PROBES: usize = 200;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// p50, p99 and max of `PROBES` fresh-connection `/healthz` requests.
async fn healthz_latency(addr: SocketAddr) -> String {
    let mut times = Vec::with_capacity(PROBES);
    for _ in 0..PROBES {
        let started = Instant::now();
        assert_eq!(healthz(addr, loopback(1)).await, 200, "/healthz failed");
        times.push(started.elapsed());
    }
    times.sort();
    format!(
        "p50 {}, p99 {}, max {} ({PROBES} requests)",
        ms(times[PROBES / 2]),
        ms(times[PROBES * 99 / 100]),
        ms(times[PROBES - 1])
    )
}

/// Open `count` connections that say nothing, spread over `SOURCES` loopback addresses.
async fn idle_flood(addr: SocketAddr, count: usize) -> Vec<tokio::net::TcpStream> {
    let mut idle = Vec::with_capacity(count);
    for i in 0..count {
        idle.push(connect_from(loopback(2 + (i % SOURCES) as u8), addr).await);
    }
    idle
}

/// How long until the router answers (or closes) after `request` was sent, and what it said.
async fn timed(addr: SocketAddr, request: &str) -> (Duration, u16, String) {
    let started = Instant::now();
    let (status, body) = exchange(addr, loopback(1), request, Duration::from_secs(60)).await;
    (
        started.elapsed(),
        status,
        body["code"].as_str().unwrap_or("").to_owned(),
    )
}

/// Run `binary args` with a bad configuration: time to exit, and its error line.
fn config_error(binary: &str, args: &[&str], file: &str, text: &str) -> (Duration, String) {
    let dir = std::env::temp_dir().join(format!("sallyport-reliability-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    let started = Instant::now();
    let output = std::process::Command::new(binary)
        .args(args)
        .arg(&path)
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(!output.status.success(), "{binary} accepted {text}");
    let line = String::from_utf8_lossy(&output.stderr)
        .lines()
        .last()
        .unwrap_or("")
        .replace(dir.to_str().unwrap(), "…");
    let _ = std::fs::remove_dir_all(dir);
    (elapsed, line)
}

fn row(fault: &str, sees: &str, figure: &str) {
    println!("| {fault} | {sees} | {figure} |");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let router_bin = args.next().expect("usage: reliability ROUTER GATEWAY");
    let gateway_bin = args.next().expect("usage: reliability ROUTER GATEWAY");
    sallyport_router::raise_descriptor_limit();
    let (_router, addr) = child_router(&router_bin, &config_with(10, 30, ""), None);

    println!("| fault or hostile input | what the user sees | measured |");
    println!("|---|---|---|");
    row(
        "none (baseline)",
        "`/healthz` 200",
        &healthz_latency(addr).await,
    );

    // Faults that take the configured timeouts, started together.
    let half = tokio::spawn(async move {
        let mut stream = connect_from(loopback(1), addr).await;
        let started = Instant::now();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: ro")
            .await
            .unwrap();
        let response = read_to_close(&mut stream, Duration::from_secs(60)).await;
        (started.elapsed(), parse_response(&response))
    });
    let stalled = tokio::spawn(async move {
        let mut stream = connect_from(loopback(1), addr).await;
        let started = Instant::now();
        stream
            .write_all(format!("{}{{\"v\":1,", post(CLIENT_TOKEN, "100")).as_bytes())
            .await
            .unwrap();
        let response = read_to_close(&mut stream, Duration::from_secs(60)).await;
        (started.elapsed(), parse_response(&response))
    });

    let flood_started = Instant::now();
    let idle = idle_flood(addr, IDLE_CONNECTIONS).await;
    let opened = flood_started.elapsed();
    let open = metric(&format!("http://{addr}"), "sallyport_connections_open").await;
    let under_flood = healthz_latency(addr).await;
    row(
        &format!("{IDLE_CONNECTIONS} idle connections that send nothing (from {SOURCES} addresses, opened in {}; the router reported {open} open)", secs(opened)),
        "`/healthz` keeps answering 200",
        &under_flood,
    );
    let closes = idle.into_iter().map(|mut stream| {
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut buf)).await;
            (
                flood_started.elapsed(),
                String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"),
            )
        })
    });
    let closed: Vec<(Duration, bool)> = futures_util::future::join_all(closes)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let last = closed.iter().map(|c| c.0).max().unwrap();
    let answered = closed.iter().filter(|c| c.1).count();
    row(
        "a connection that sends nothing",
        "`408 header_timeout` written, then closed",
        &format!("all {IDLE_CONNECTIONS} closed by {} after the flood began ({answered} got the 408); `header_read_timeout_secs` = 10", secs(last)),
    );
    let (elapsed, (status, body)) = half.await.unwrap();
    row(
        "half a request head, then silence",
        &format!(
            "`{status} {}`, then closed",
            body["code"].as_str().unwrap_or("")
        ),
        &format!("{} (`header_read_timeout_secs` = 10)", secs(elapsed)),
    );

    let (elapsed, status, code) = timed(addr, &post("wrong-token-here", "1000")).await;
    row(
        "POST with a wrong token whose body never comes",
        &format!("`{status} {code}` at once"),
        &ms(elapsed),
    );
    let (elapsed, status, code) = timed(addr, &post(CLIENT_TOKEN, "1000000000000")).await;
    row(
        "POST declaring `Content-Length: 10^12`",
        &format!("`{status} {code}` at once, nothing read"),
        &ms(elapsed),
    );
    let (elapsed, (status, body)) = stalled.await.unwrap();
    row(
        "authenticated POST whose body stalls",
        &format!("`{status} {}`", body["code"].as_str().unwrap_or("")),
        &format!("{} (`idle_timeout_secs` = 30)", secs(elapsed)),
    );
    let json = r#"{"v":9,"conversation_id":"conversation-1","resource":"db","kind":"start","payload":{"nonce":"","ct":""}}"#;
    let (elapsed, status, code) = timed(
        addr,
        &format!("{}{json}", post(CLIENT_TOKEN, &json.len().to_string())),
    )
    .await;
    row(
        "POST with protocol version 9",
        &format!("`{status} {code}` (the router's own message)"),
        &ms(elapsed),
    );

    // The per-source cap (256 by default).
    let mut held = Vec::new();
    for _ in 0..256 {
        held.push(connect_from(loopback(30), addr).await);
    }
    refused_at_once("a 257th connection from one address", addr, loopback(30)).await;
    drop(held);

    // Gateways: an impostor with the token, a gateway without proof, the real key.
    let url = format!("http://{addr}");
    let mut real = gateway_socket(&url).await;
    let started = Instant::now();
    let welcome = hello_with(&mut real, Some(&gateway_key())).await;
    row(
        "the real gateway (token and key)",
        &format!("`{}`", welcome["type"].as_str().unwrap()),
        &ms(started.elapsed()),
    );
    let mut refusals = Vec::new();
    for _ in 0..6 {
        let mut impostor = gateway_socket(&url).await;
        let started = Instant::now();
        let verdict = hello_with(&mut impostor, Some(&GatewayKeyPair::generate())).await;
        refusals.push((
            started.elapsed(),
            verdict["code"].as_str().unwrap_or("").to_owned(),
        ));
    }
    let connected = metric(&url, "sallyport_gateways_connected").await;
    row(
        "6 impostors with the gateway's token and another key",
        &format!(
            "`error {}` and close 1008; the real gateway stays (`sallyport_gateways_connected {connected}`)",
            refusals[0].1
        ),
        &format!("max {}", ms(refusals.iter().map(|r| r.0).max().unwrap())),
    );
    let mut unproven = gateway_socket(&url).await;
    let started = Instant::now();
    let verdict = hello_with(&mut unproven, None).await;
    row(
        "a hello without a proof (a gateway from before the key check)",
        &format!("`error {}`", verdict["code"].as_str().unwrap_or("")),
        &ms(started.elapsed()),
    );

    // A router whose open-file limit is 1,024, past 1,100 idle connections.
    let (_small, small_addr) = child_router(&router_bin, &config_with(10, 30, ""), Some(1024));
    let idle = idle_flood(small_addr, 1100).await;
    row(
        "1,100 idle connections against a router limited to 1,024 descriptors",
        "`/healthz` 200 (the longest-idle connections are let go)",
        &healthz_latency(small_addr).await,
    );
    drop(idle);

    // A router whose every connection is busy.
    let (_busy, busy_addr) = child_router(
        &router_bin,
        &config_with(10, 30, "max_connections = 4"),
        None,
    );
    let busy = busy_connections(busy_addr, 40, 4).await;
    refused_at_once(
        "a new connection while all `max_connections` are busy",
        busy_addr,
        loopback(1),
    )
    .await;
    drop(busy);

    // Configuration mistakes, caught at start.
    let no_key: String = config_with(10, 30, "")
        .lines()
        .filter(|l| !l.starts_with("public_key"))
        .map(|l| format!("{l}\n"))
        .collect();
    for (what, binary, args, file, text) in [
        (
            "router: a gateway without `public_key`",
            router_bin.as_str(),
            vec!["--config"],
            "router.toml",
            no_key,
        ),
        (
            "router: a declared resource named `../x`",
            router_bin.as_str(),
            vec!["--config"],
            "router.toml",
            config_with(10, 30, "").replace("name = \"db\"", "name = \"../x\""),
        ),
        (
            "gateway: `gateway_id = \"../x\"`",
            gateway_bin.as_str(),
            vec!["run", "--config"],
            "gateway.toml",
            gateway_config("gateway_id = \"../x\"", ""),
        ),
        (
            "gateway: `gateway_id = \"\"`",
            gateway_bin.as_str(),
            vec!["run", "--config"],
            "gateway.toml",
            gateway_config("gateway_id = \"\"", ""),
        ),
        (
            "gateway: `webrtc_udp = [\"not-an-address\"]`",
            gateway_bin.as_str(),
            vec!["run", "--config"],
            "gateway.toml",
            gateway_config(
                "gateway_id = \"dc1\"",
                "webrtc_udp = [\"not-an-address\"]\n",
            ),
        ),
    ] {
        let (elapsed, line) = config_error(binary, &args, file, &text);
        row(what, &format!("exits 2: `` {line} ``"), &ms(elapsed));
    }
}

/// A `/healthz` from `source` that the router refuses: how fast, and with what.
async fn refused_at_once(what: &str, addr: SocketAddr, source: std::net::IpAddr) {
    let started = Instant::now();
    let (status, body) = exchange(addr, source, &get("/healthz"), Duration::from_secs(10)).await;
    let code = body["code"].as_str().unwrap_or("");
    row(
        what,
        &format!("`{status} {code}` at once"),
        &ms(started.elapsed()),
    );
}

fn gateway_config(id_line: &str, extra: &str) -> String {
    format!(
        "router_url = \"http://127.0.0.1:9\"\n{id_line}\ntoken = \"{GATEWAY_TOKEN}\"\nkey_file = \"gateway.key\"\n{extra}"
    )
}
