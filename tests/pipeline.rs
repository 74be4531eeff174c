//! The launch pipeline against the real router and gateway: order of checkpoints, the offer
//! retry with catch-up, the resource cache, a fast launch whose WebSocket is refused.

use std::time::Duration;

use sallyport_core::checkpoint::names;
use sallyport_core::{
    Checkpoint, ClientProfile, LaunchRequest, Launcher, Profile, StickyPorts, Tunables,
};
use sallyport_gateway::{GatewayConfig, ResourceConfig};
use sallyport_protocol::{AnnouncedResource, Code, GatewayKeyPair};
use sallyport_router::config::{ClientEntry, GatewayEntry};
use sallyport_router::RouterConfig;
use sallyport_tests::{echo_through, lab, launcher, request, scratch};

fn phases(checkpoints: &[Checkpoint]) -> Vec<&str> {
    checkpoints.iter().map(|c| c.phase.as_str()).collect()
}

fn position(checkpoints: &[Checkpoint], phase: &str) -> usize {
    checkpoints
        .iter()
        .position(|c| c.phase == phase)
        .unwrap_or_else(|| panic!("{phase} missing from {:?}", phases(checkpoints)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_arrive_in_pipeline_order() {
    let lab = lab(vec![]).await;
    let launcher = launcher(&lab, "order");
    // A subscriber on the stream sees the same checkpoints the session records.
    let mut stream = launcher.checkpoints().subscribe();
    let session = launcher
        .launch(request(sallyport_lab::DEMO_ECHO, Profile::Fast))
        .await
        .unwrap();
    let recorded = session.checkpoints();
    // The exact sequence the UI's tests use too (generated into ui/src/generated/ipc.ts).
    assert_eq!(phases(&recorded), names::HAPPY_PATH);
    assert!(
        position(&recorded, names::WEBSOCKET_LISTENER_STARTED_EARLY)
            < position(&recorded, names::CREATE_TUBE_OK)
    );
    let mut streamed = Vec::new();
    while let Ok(c) = stream.try_recv() {
        streamed.push(c);
    }
    assert_eq!(streamed, recorded);
    let ready = recorded.last().unwrap();
    let sum: f64 = recorded.iter().map(|c| c.step_ms).sum();
    assert!(
        (sum - ready.total_ms).abs() < 1.0,
        "steps add up to the total"
    );
    assert!(recorded.iter().all(|c| c.launch_id == session.launch_id()));

    let (a, b) = echo_through(session.local_port(), 4096, 3).await;
    assert_eq!(a, b);
    session.close().await;

    // The legacy profile starts the listener after the tube and sleeps its windows.
    let legacy = launcher
        .launch(request(sallyport_lab::DEMO_ECHO, Profile::Legacy))
        .await
        .unwrap();
    let recorded = legacy.checkpoints();
    assert!(
        position(&recorded, names::CREATE_TUBE_OK)
            < position(&recorded, names::WEBSOCKET_LISTENER_STARTED)
    );
    let delay = &recorded[position(&recorded, names::WEBSOCKET_READY_BACKEND_DELAY_DONE)];
    assert!(delay.step_ms >= 2000.0);
    legacy.close().await;
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_comes_up_during_the_catchup_window_is_reached_on_attempt_two() {
    // The router knows the resource before its gateway ever connects.
    let target_addr = sallyport_tests::echo_target().await;
    let key = GatewayKeyPair::generate();
    let pki = sallyport_tests::pki("late");
    let router = sallyport_router::spawn(RouterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: pki.tls(),
        gateways: vec![GatewayEntry {
            id: "late".into(),
            token: "late-gateway-token".into(),
            public_key: key.public().to_base64(),
            resources: vec![AnnouncedResource {
                name: "late-echo".into(),
                protocol: "tcp".into(),
            }],
        }],
        clients: vec![ClientEntry {
            name: "c".into(),
            token: "late-client-token".into(),
            resources: vec!["late-*".into()],
            roles: vec![],
        }],
        ..RouterConfig::default()
    })
    .await
    .unwrap();
    let profile = ClientProfile {
        router_url: router.url(),
        router_urls: Vec::new(),
        ca_file: Some(pki.ca_file().to_owned()),
        token: None,
        gateways: [("late".to_owned(), key.public().to_base64())].into(),
        webrtc_udp: Some(vec!["127.0.0.1:0".into()]),
        ice_servers: vec![],
        relay_only: false,
        lab: false,
        launch_reports: true,
        sso: None,
    };
    let dir = scratch("late");
    let launcher = Launcher::new(
        profile,
        "late-client-token",
        StickyPorts::new(dir.join("p.json")),
    )
    .unwrap()
    .with_state_dir(dir);

    // Start the gateway only once the first offer has failed.
    let mut stream = launcher.checkpoints().subscribe();
    let gateway_config = GatewayConfig {
        router_url: router.url(),
        router_urls: Vec::new(),
        ca_file: Some(pki.ca_file().to_owned()),
        connection_log: None,
        gateway_id: "late".into(),
        token: "late-gateway-token".into(),
        key_file: "unused".into(),
        max_sessions: 4,
        max_connections_per_session: 4,
        connect_timeout_ms: 2000,
        webrtc_udp: vec!["127.0.0.1:0".into()],
        ice_servers: vec![],
        webrtc_ports: None,
        webrtc_advertise: None,
        webrtc_max_datagram: None,
        resources: vec![ResourceConfig {
            name: "late-echo".into(),
            protocol: "tcp".into(),
            target: target_addr.to_string(),
        }],
    };
    let starter = tokio::spawn(async move {
        loop {
            let c = stream.recv().await.unwrap();
            if c.phase == names::GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_START {
                let reason = c.detail.clone().unwrap_or_default();
                let gateway = sallyport_gateway::spawn(gateway_config, key).unwrap();
                return (gateway, reason);
            }
        }
    });

    let mut tunables = Tunables::for_profile(Profile::Fast);
    // Keep the test short: 0.5 + (0.8 - 0.3) = 1.0 s of catch-up.
    tunables.offer_retry_extra = Duration::from_millis(500);
    tunables.websocket_backend_delay_legacy = Duration::from_millis(800);
    let mut req = LaunchRequest::new("late-echo", tunables);
    req.client = sallyport_core::ClientChoice::None;
    let session = launcher
        .launch(req)
        .await
        .expect("attempt 2 reaches the gateway");
    let (gateway, reason) = starter.await.unwrap();
    assert!(reason.starts_with("controller_down"), "{reason}");

    let recorded = session.checkpoints();
    let order: Vec<usize> = [
        "gateway_offer_http_attempt_1",
        names::GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_START,
        names::GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_DONE,
        "gateway_offer_http_attempt_2",
        names::GATEWAY_OFFER_HTTP_DONE,
        names::READY,
    ]
    .iter()
    .map(|p| position(&recorded, p))
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        phases(&recorded)
    );
    let catchup = &recorded[position(&recorded, names::GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_DONE)];
    assert!(
        catchup.step_ms >= 1000.0,
        "slept the catch-up: {}",
        catchup.step_ms
    );
    let (a, b) = echo_through(session.local_port(), 64 * 1024, 5).await;
    assert_eq!(a, b);
    session.close().await;
    gateway.shutdown().await;
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_transient_failure_is_not_retried_and_drops_the_cache() {
    let lab = lab(vec![]).await;
    let good = launcher(&lab, "cache");

    // The second launch is served from the cache.
    let first = good
        .launch(request(sallyport_lab::DEMO_ECHO, Profile::Fast))
        .await
        .unwrap();
    assert_eq!(first.checkpoints()[0].phase, names::RESOURCE_RESOLVED);
    first.close().await;
    let second = good
        .launch(request(sallyport_lab::DEMO_ECHO, Profile::Fast))
        .await
        .unwrap();
    assert_eq!(second.checkpoints()[0].phase, names::LAUNCH_CACHE_HIT);
    second.close().await;

    // A wrongly pinned gateway key the router does not contradict: the gateway refuses the
    // seal (400), which is final.
    let mut profile = lab.profile.clone();
    profile.gateways.insert(
        "lab".into(),
        GatewayKeyPair::generate().public().to_base64(),
    );
    let dir = scratch("wrongkey");
    let wrong = Launcher::new(
        profile,
        &lab.client_token,
        StickyPorts::new(dir.join("p.json")),
    )
    .unwrap()
    .with_state_dir(dir);
    // Listed as an older router lists them, without the gateway's key (with it, the client
    // itself refuses the changed key before any offer: `gateway_key_changed`).
    let listed: Vec<_> = wrong
        .resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| sallyport_protocol::ResourceInfo {
            gateway_key: None,
            ..r
        })
        .collect();
    wrong.cache().store_all(&listed);
    assert!(wrong.cache().contains(sallyport_lab::DEMO_ECHO));
    let mut stream = wrong.checkpoints().subscribe();
    let err = wrong
        .launch(request(sallyport_lab::DEMO_ECHO, Profile::Fast))
        .await
        .err()
        .expect("a wrong key fails");
    assert_eq!(err.code(), Code::SealRejected, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("\"lab\"")
            && message.contains("demo-echo")
            && message.contains("1 attempt"),
        "{message}"
    );
    let mut seen = Vec::new();
    while let Ok(c) = stream.try_recv() {
        seen.push(c.phase);
    }
    assert!(seen.contains(&"gateway_offer_http_attempt_1".to_string()));
    assert!(
        !seen.contains(&"gateway_offer_http_attempt_2".to_string()),
        "{seen:?}"
    );
    assert!(!seen.contains(&names::GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_START.to_string()));
    assert_eq!(seen.last().map(String::as_str), Some(names::FAILED));
    assert!(
        !wrong.cache().contains(sallyport_lab::DEMO_ECHO),
        "the failed launch dropped its cache entry"
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_ports_and_taken_ports() {
    let lab = lab(vec![]).await;
    let launcher = launcher(&lab, "sticky");
    let first = launcher
        .launch(request(sallyport_lab::DEMO_ECHO, Profile::Fast))
        .await
        .unwrap();
    let port = first.local_port();
    first.close().await;
    let again = launcher
        .launch(request(sallyport_lab::DEMO_ECHO, Profile::Fast))
        .await
        .unwrap();
    assert_eq!(again.local_port(), port, "the resource keeps its port");
    // While it is in use, an explicit request for it is a clear error, not another port.
    let mut req = request(sallyport_lab::DEMO_ECHO, Profile::Fast);
    req.port = Some(port);
    let err = launcher.launch(req).await.err().expect("taken port");
    assert_eq!(err.code(), Code::PortTaken);
    again.close().await;
    // Closed means closed: the port is free again.
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
    lab.shutdown().await;
}

/// A plain-HTTP proxy in front of a router that refuses every WebSocket upgrade (as some
/// corporate proxies do) and counts what went through: upgrades refused, and non-streamed
/// `start` messages (their envelope is plain JSON; only the payload is sealed).
struct NoWebSockets {
    addr: std::net::SocketAddr,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    inline_starts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl NoWebSockets {
    async fn start(upstream: std::net::SocketAddr) -> NoWebSockets {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let inline_starts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (r, s) = (refused.clone(), inline_starts.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (refused, inline_starts) = (r.clone(), s.clone());
                tokio::spawn(async move {
                    let mut first = vec![0u8; 64 * 1024];
                    let Ok(n) = client.read(&mut first).await else {
                        return;
                    };
                    if String::from_utf8_lossy(&first[..n]).starts_with("GET /v1/ws/") {
                        refused.fetch_add(1, Ordering::SeqCst);
                        let _ = client
                            .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                            .await;
                        return;
                    }
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.split();
                    let up = async {
                        let mut chunk = first;
                        let mut n = n;
                        loop {
                            let text = String::from_utf8_lossy(&chunk[..n]);
                            inline_starts.fetch_add(
                                text.matches(r#""kind":"start","stream_response":false"#)
                                    .count(),
                                Ordering::SeqCst,
                            );
                            if n == 0 || server_write.write_all(&chunk[..n]).await.is_err() {
                                return;
                            }
                            n = match client_read.read(&mut chunk).await {
                                Ok(n) => n,
                                Err(_) => return,
                            };
                        }
                    };
                    let down = tokio::io::copy(&mut server_read, &mut client_write);
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                });
            }
        });
        NoWebSockets {
            addr,
            refused,
            inline_starts,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_launch_without_a_websocket_still_connects_and_keeps_trying_to_subscribe() {
    use std::sync::atomic::Ordering;
    let target_addr = sallyport_tests::echo_target().await;
    let key = GatewayKeyPair::generate();
    let router = sallyport_router::spawn(RouterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        plain_http: true,
        gateways: vec![GatewayEntry {
            id: "gw".into(),
            token: "nows-gateway-token".into(),
            public_key: key.public().to_base64(),
            resources: vec![],
        }],
        clients: vec![ClientEntry {
            name: "c".into(),
            token: "nows-client-token".into(),
            resources: vec!["*".into()],
            roles: vec![],
        }],
        ..RouterConfig::default()
    })
    .await
    .unwrap();
    let gateway = sallyport_gateway::spawn(
        GatewayConfig {
            router_url: router.url(),
            router_urls: Vec::new(),
            ca_file: None,
            connection_log: None,
            gateway_id: "gw".into(),
            token: "nows-gateway-token".into(),
            key_file: "unused".into(),
            max_sessions: 4,
            max_connections_per_session: 4,
            connect_timeout_ms: 2000,
            webrtc_udp: vec!["127.0.0.1:0".into()],
            ice_servers: vec![],
            webrtc_ports: None,
            webrtc_advertise: None,
            webrtc_max_datagram: None,
            resources: vec![ResourceConfig {
                name: "echo".into(),
                protocol: "tcp".into(),
                target: target_addr.to_string(),
            }],
        },
        key.clone(),
    )
    .unwrap();
    assert!(gateway.wait_online(Duration::from_secs(10)).await);
    let proxy =
        NoWebSockets::start(router.url().trim_start_matches("http://").parse().unwrap()).await;
    let dir = scratch("no-websockets");
    let launcher = Launcher::new(
        ClientProfile {
            gateways: [("gw".to_owned(), key.public().to_base64())].into(),
            webrtc_udp: Some(vec!["127.0.0.1:0".into()]),
            ..ClientProfile::new(&format!("http://{}", proxy.addr))
        },
        "nows-client-token",
        StickyPorts::new(dir.join("p.json")),
    )
    .unwrap()
    .with_state_dir(dir);

    let session = launcher
        .launch(request("echo", Profile::Fast))
        .await
        .expect("a launch whose WebSocket is refused");
    let recorded = session.checkpoints();
    let registration = &recorded[position(&recorded, names::WEBSOCKET_READY_BACKEND_DELAY_DONE)];
    assert!(
        registration
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("inline"),
        "{registration:?}"
    );
    let (a, b) = echo_through(session.local_port(), 64 * 1024, 9).await;
    assert_eq!(a, b);
    // In the background: the offer asked again inline for the gateway's candidates, and the
    // socket keeps being tried (250 ms, doubling).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while proxy.refused.load(Ordering::SeqCst) < 3 || proxy.inline_starts.load(Ordering::SeqCst) < 1
    {
        assert!(
            std::time::Instant::now() < deadline,
            "upgrades refused {}, inline starts {}",
            proxy.refused.load(Ordering::SeqCst),
            proxy.inline_starts.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    session.close().await;
    gateway.shutdown().await;
    router.shutdown().await;
}
