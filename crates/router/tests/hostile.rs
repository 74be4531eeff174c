//! Hostile and faulty peers against a real router on loopback: silent and slow connections,
//! bodies that never come, too many connections, a router short of file descriptors, and
//! gateways that hold a token but not the key.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sallyport_protocol::{Code, GatewayKeyPair};
use sallyport_router::RouterConfig;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn silent_and_half_sent_requests_are_closed_after_the_header_timeout() {
    let router = router("").await;
    let addr = router.addr;
    let mut silent = connect_from(loopback(1), addr).await;
    let mut half = connect_from(loopback(1), addr).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nhost: rou")
        .await
        .unwrap();
    // Meanwhile the router serves everyone else.
    assert_eq!(healthz(addr, loopback(1)).await, 200);

    let (status, body) = parse_response(&read_to_close(&mut half, Duration::from_secs(5)).await);
    assert_eq!(
        (status, body["code"].as_str()),
        (408, Some(Code::HeaderTimeout.as_str()))
    );
    let (status, _) = parse_response(&read_to_close(&mut silent, Duration::from_secs(5)).await);
    assert_eq!(status, 408);

    // A kept-alive connection with no next request is closed after the idle timeout, silently.
    let mut kept = connect_from(loopback(1), addr).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: router\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0u8; 4096];
    let n = kept.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let rest = read_to_close(&mut kept, Duration::from_secs(6)).await;
    assert_eq!(rest, "", "no unsolicited response on an idle close");

    let metrics = exchange(addr, loopback(1), &get("/metrics"), Duration::from_secs(5)).await;
    assert_eq!(metrics.0, 200);
    router.shutdown().await;
}

#[tokio::test]
async fn bodies_are_not_waited_for_without_a_token_or_beyond_the_limits() {
    let router = router("").await;
    let addr = router.addr;
    // No token, and the body never comes: 401 at once.
    let (status, body) = exchange(
        addr,
        loopback(1),
        &post("wrong-token-here", "1000"),
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some(Code::Unauthorized.as_str()))
    );
    // A declared length of 10^12: 413 at once, nothing read.
    let (status, body) = exchange(
        addr,
        loopback(1),
        &post(CLIENT_TOKEN, "1000000000000"),
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some(Code::TooLarge.as_str()))
    );
    // A body that stalls: 408 after the idle timeout.
    let mut stalled = connect_from(loopback(1), addr).await;
    stalled
        .write_all(format!("{}{{\"v\":1,", post(CLIENT_TOKEN, "100")).as_bytes())
        .await
        .unwrap();
    let (status, body) = parse_response(&read_to_close(&mut stalled, Duration::from_secs(6)).await);
    assert_eq!(
        (status, body["code"].as_str()),
        (408, Some(Code::RequestTimeout.as_str()))
    );
    // A version the router does not speak is the router's own refusal, not a gateway's.
    let json = r#"{"v":9,"conversation_id":"conversation-1","resource":"db","kind":"start","payload":{"nonce":"","ct":""}}"#;
    let request = format!("{}{json}", post(CLIENT_TOKEN, &json.len().to_string()));
    let (status, body) = exchange(addr, loopback(1), &request, Duration::from_secs(5)).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], Code::UnsupportedVersion.as_str());
    assert!(
        !body["message"].as_str().unwrap().starts_with("gateway"),
        "{body}"
    );
    router.shutdown().await;
}

#[tokio::test]
async fn connections_are_capped_per_source_and_in_total() {
    // Timeouts long enough that only the caps close anything here.
    let limits = "max_connections_per_source = 3\nmax_connections = 5";
    let router = router_from(&config_with(30, 30, limits)).await;
    let addr = router.addr;
    let url = router.url();
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(connect_from(loopback(2), addr).await);
    }
    // A fourth from the same address: 429, with a body that says why.
    let (status, body) =
        exchange(addr, loopback(2), &get("/healthz"), Duration::from_secs(5)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some(Code::TooManyConnections.as_str()))
    );
    // Another address still gets through.
    assert_eq!(healthz(addr, loopback(3)).await, 200);

    // At the total cap, the connection idle the longest is let go for a new one.
    idle.push(connect_from(loopback(3), addr).await);
    idle.push(connect_from(loopback(4), addr).await);
    assert_eq!(healthz(addr, loopback(5)).await, 200);
    let mut oldest = idle.remove(0);
    let _ = read_to_close(&mut oldest, Duration::from_secs(5)).await;
    let evicted = "sallyport_failures_total{code=\"evicted\"}";
    assert_eq!(metric(&url, evicted).await, "1");

    // Busy connections are not let go: with every slot in a request, a new one gets 503.
    drop(idle);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let busy = busy_connections(addr, 10, 5).await;
    let (status, body) =
        exchange(addr, loopback(20), &get("/healthz"), Duration::from_secs(5)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some(Code::Overloaded.as_str()))
    );
    // Their clients hang up, which ends the requests; shutdown waits for nothing else.
    drop(busy);
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_with_1024_descriptors_answers_healthz_past_1100_idle_connections() {
    // This test holds 1,100 sockets itself.
    sallyport_router::raise_descriptor_limit();
    // A header timeout long enough that the caps, not the timeout, meet the flood.
    let (_child, addr) = support::child_router(
        env!("CARGO_BIN_EXE_sallyport-router"),
        &config_with(5, 30, ""),
        Some(1024),
    );
    let url = format!("http://{addr}");

    // 1,100 connections that say nothing, from five addresses (220 each, under the
    // per-source cap), past what 1,024 descriptors can hold.
    let mut idle = Vec::new();
    for i in 0..1100u32 {
        idle.push(connect_from(loopback(2 + (i % 5) as u8), addr).await);
    }
    for _ in 0..3 {
        assert_eq!(healthz(addr, loopback(1)).await, 200);
    }
    // The router was at its cap (1,024 less its reserve) and let idle connections go.
    let evicted: u32 = metric(&url, "sallyport_failures_total{code=\"evicted\"}")
        .await
        .parse()
        .unwrap();
    assert!(evicted > 0, "the flood never reached the cap");
    // And every one of them is closed after the header timeout (5 s).
    let closes = idle.into_iter().map(|mut stream| {
        tokio::spawn(async move {
            let mut sink = Vec::new();
            tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut sink))
                .await
                .is_ok()
        })
    });
    for closed in futures_util::future::join_all(closes).await {
        assert!(closed.unwrap(), "an idle connection was left open");
    }
    assert_eq!(healthz(addr, loopback(1)).await, 200);
}

#[tokio::test]
async fn a_token_without_the_key_neither_registers_nor_displaces_a_gateway() {
    let router = router("").await;
    let url = router.url();
    let key = gateway_key();
    let mut real = gateway_socket(&url).await;
    assert_eq!(hello_with(&mut real, Some(&key)).await["type"], "welcome");

    // Impostors with the token: no proof, a proof from another key, a replayed proof.
    for attempt in 0..6 {
        let mut impostor = gateway_socket(&url).await;
        let forged = GatewayKeyPair::generate();
        let reply = hello_with(&mut impostor, (attempt % 2 == 1).then_some(&forged)).await;
        assert_eq!(reply["type"], "error", "{reply}");
        assert_eq!(reply["code"], Code::Unauthorized.as_str(), "{reply}");
    }
    assert_eq!(metric(&url, "sallyport_gateways_connected").await, "1");
    // The real gateway's socket is untouched: it still answers a ping.
    real.send(Message::Ping(b"still here".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match real.next().await {
                Some(Ok(Message::Ping(_))) => continue,
                other => return other,
            }
        }
    })
    .await
    .unwrap();
    assert!(matches!(pong, Some(Ok(Message::Pong(_)))), "{pong:?}");

    // The key holder reconnecting while its old connection still looks alive takes over.
    let mut again = gateway_socket(&url).await;
    assert_eq!(hello_with(&mut again, Some(&key)).await["type"], "welcome");
    let replaced = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match real.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.reason.to_string()),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(replaced.as_deref(), Some("replaced by a newer connection"));
    router.shutdown().await;
}

#[tokio::test]
async fn error_frames_on_the_client_socket_name_their_conversation() {
    let router = router("").await;
    let mut socket = sallyport_kit::connect(
        &router.url(),
        sallyport_protocol::CLIENT_WS_PATH,
        CLIENT_TOKEN,
        None,
    )
    .await
    .unwrap();
    for id in ["bad id!", "conversation-ok"] {
        let frame = serde_json::json!({"type": "subscribe", "conversation_id": id});
        socket
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
    }
    let error = next_json(&mut socket).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], Code::Malformed.as_str());
    assert_eq!(error["conversation_id"], "bad id!");
    let ok = next_json(&mut socket).await;
    assert_eq!(ok["type"], "subscribed");
    assert_eq!(ok["conversation_id"], "conversation-ok");
    router.shutdown().await;
}

#[test]
fn the_config_file_and_field_are_named_at_start() {
    let dir = std::env::temp_dir().join(format!("sallyport-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("router.toml");
    let without_key: String = config_text("")
        .lines()
        .filter(|l| !l.starts_with("public_key"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, without_key).unwrap();
    let err = RouterConfig::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("router.toml") && err.contains("public_key"),
        "{err}"
    );
    std::fs::write(
        &path,
        config_text("").replace("name = \"db\"", "name = \"../x\""),
    )
    .unwrap();
    let err = RouterConfig::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("router.toml") && err.contains("resources[0].name"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
