//! The engine end to end: a real router and gateway on loopback, real WebRTC, real TCP.

use std::time::{Duration, Instant};

use sallyport_core::router_api::{RouterApi, SendFailure};
use sallyport_core::Profile;
use sallyport_protocol::{
    AnswerBody, ClientMessage, Code, ConversationKeys, GatewayKeyPair, MessageKind, StartBody,
    PROTOCOL_VERSION,
};
use sallyport_router::config::{ClientEntry, GatewayEntry};
use sallyport_router::RouterConfig;
use sallyport_tests::{echo_through, lab, lab_api, launcher, pki, request};

const MIB: usize = 1024 * 1024;

/// The session's counters once both reach `expected` (or after 5 s, for the assert to show).
async fn settled_counters(
    session: &sallyport_core::Session,
    expected: u64,
) -> sallyport_core::SessionInfo {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let info = session.info();
        if (info.bytes_in >= expected && info.bytes_out >= expected) || Instant::now() > deadline {
            return info;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn sixteen_mib_through(trickle: bool) {
    let lab = lab(vec![]).await;
    let launcher = launcher(&lab, "16mib");
    let mut req = request(sallyport_lab::DEMO_ECHO, Profile::Fast);
    req.trickle = trickle;
    let started = Instant::now();
    let session = launcher.launch(req).await.expect("launch succeeds");
    eprintln!(
        "trickle={trickle}: launch ready in {:?} (ready checkpoint {:.1} ms)",
        started.elapsed(),
        session.info().ready_ms
    );
    let (sent, received) = echo_through(session.local_port(), 16 * MIB, 7).await;
    assert_eq!(sent, received, "SHA-256 of 16 MiB sent and echoed match");
    // A chunk is counted once written to the local socket, which can trail its reading.
    let info = settled_counters(&session, 16 * MIB as u64).await;
    assert_eq!(info.bytes_out, 16 * MIB as u64);
    assert_eq!(info.bytes_in, 16 * MIB as u64);
    session.close().await;
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_over_the_streamed_answer_path() {
    sixteen_mib_through(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_over_the_inline_answer_path() {
    sixteen_mib_through(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_connections_share_one_tube() {
    let lab = lab(vec![]).await;
    let launcher = launcher(&lab, "multi");
    let session = launcher
        .launch(request(sallyport_lab::DEMO_ECHO, Profile::Fast))
        .await
        .unwrap();
    let port = session.local_port();
    let transfers: Vec<_> = (0..4u64)
        .map(|i| tokio::spawn(echo_through(port, 2 * MIB, i + 11)))
        .collect();
    for transfer in transfers {
        let (sent, received) = transfer.await.unwrap();
        assert_eq!(sent, received);
    }
    assert_eq!(
        settled_counters(&session, 8 * MIB as u64).await.bytes_in,
        8 * MIB as u64
    );
    session.close().await;
    lab.shutdown().await;
}

/// A start message for `resource`, sealed to `gateway_key`, with a real WebRTC offer.
async fn start_message(
    keys: &ConversationKeys,
    conversation_id: &str,
    resource: &str,
    stream: bool,
) -> (ClientMessage, sallyport_tube::Tube) {
    let (peer, _events, offer) = sallyport_tube::Tube::offer(&Default::default())
        .await
        .unwrap();
    let message = ClientMessage {
        v: PROTOCOL_VERSION,
        conversation_id: conversation_id.into(),
        resource: resource.into(),
        kind: MessageKind::Start,
        stream_response: stream,
        timeout_ms: Some(5_000),
        payload: keys.seal_to_gateway(&StartBody {
            offer,
            resource: resource.into(),
            max_datagram: None,
            open_first: false,
        }),
    };
    (message, peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_offer_gets_the_same_answer() {
    let lab = lab(vec![]).await;
    let api = lab_api(&lab);
    let key =
        sallyport_protocol::GatewayPublicKey::from_base64(&lab.profile.gateways["lab"]).unwrap();
    let conversation = uuid::Uuid::new_v4().simple().to_string();
    let keys = ConversationKeys::for_client(&key, &conversation);
    let (message, peer) =
        start_message(&keys, &conversation, sallyport_lab::DEMO_ECHO, false).await;

    let open = |reply: sallyport_protocol::ClientReply| {
        keys.open_from_gateway::<AnswerBody>(&reply.payload.expect("inline answer"))
            .unwrap()
            .answer
    };
    let first = open(
        api.send("lab", &message, Duration::from_secs(10))
            .await
            .unwrap(),
    );
    let second = open(
        api.send("lab", &message, Duration::from_secs(10))
            .await
            .unwrap(),
    );
    assert_eq!(first.kind, "answer");
    assert_eq!(first, second, "the same answer, not a second peer");
    let metrics = sallyport_tests::metrics(&lab.router.url(), Some(&lab.ca_file)).await;
    assert!(
        metrics.contains("sallyport_messages_forwarded_total 2"),
        "{metrics}"
    );
    drop(peer);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_sealed_payload_is_refused_by_the_gateway() {
    let lab = lab(vec![]).await;
    let api = lab_api(&lab);
    let key =
        sallyport_protocol::GatewayPublicKey::from_base64(&lab.profile.gateways["lab"]).unwrap();
    let conversation = uuid::Uuid::new_v4().simple().to_string();
    let keys = ConversationKeys::for_client(&key, &conversation);
    let (mut message, peer) =
        start_message(&keys, &conversation, sallyport_lab::DEMO_ECHO, false).await;
    // Flip one character of the ciphertext, as a router in the middle would.
    let mut ct: Vec<char> = message.payload.ct.chars().collect();
    ct[10] = if ct[10] == 'A' { 'B' } else { 'A' };
    message.payload.ct = ct.into_iter().collect();
    let err = api
        .send("lab", &message, Duration::from_secs(10))
        .await
        .unwrap_err();
    match err {
        SendFailure::Http { status, code, .. } => {
            assert_eq!((status, code.as_str()), (400, Code::SealRejected.as_str()));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A payload sealed to another key is refused the same way.
    let impostor = GatewayKeyPair::generate().public();
    let keys = ConversationKeys::for_client(&impostor, &conversation);
    let (message, peer2) =
        start_message(&keys, &conversation, sallyport_lab::DEMO_ECHO, false).await;
    let err = api
        .send("lab", &message, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::SealRejected);
    drop((peer, peer2));
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_target_reports_its_close_reason() {
    // A port nobody listens on: bind, learn the port, close.
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let lab = lab(vec![(
        "refused".into(),
        "tcp".into(),
        format!("127.0.0.1:{closed_port}"),
    )])
    .await;
    let launcher = launcher(&lab, "refused");
    let err = launcher
        .launch(request("refused", Profile::Fast))
        .await
        .err()
        .expect("the launch fails");
    assert_eq!(err.code(), Code::TargetRefused, "{err}");
    assert!(err.to_string().contains("target_refused"), "{err}");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_reconnects_when_the_router_comes_back() {
    let echo_addr = sallyport_tests::echo_target().await;
    let key = GatewayKeyPair::generate();
    let public = key.public();
    let pki = pki("reconnect-tls");
    let config = RouterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: pki.tls(),
        gateways: vec![GatewayEntry {
            id: "dc1".into(),
            token: "dc1-gateway-token".into(),
            public_key: public.to_base64(),
            resources: vec![],
        }],
        clients: vec![ClientEntry {
            name: "alice".into(),
            token: "alice-client-token".into(),
            resources: vec!["*".into()],
            roles: vec![],
        }],
        ..RouterConfig::default()
    };
    let router = sallyport_router::spawn(config.clone()).await.unwrap();
    let addr = router.addr;
    let gateway = sallyport_gateway::spawn(
        sallyport_gateway::GatewayConfig {
            router_url: router.url(),
            router_urls: Vec::new(),
            ca_file: Some(pki.ca_file().to_owned()),
            connection_log: None,
            gateway_id: "dc1".into(),
            token: "dc1-gateway-token".into(),
            key_file: "unused".into(),
            max_sessions: 4,
            max_connections_per_session: 4,
            connect_timeout_ms: 2000,
            webrtc_udp: vec!["127.0.0.1:0".into()],
            ice_servers: vec![],
            webrtc_ports: None,
            webrtc_advertise: None,
            webrtc_max_datagram: None,
            resources: vec![sallyport_gateway::ResourceConfig {
                name: "echo".into(),
                protocol: "tcp".into(),
                target: echo_addr.to_string(),
            }],
        },
        key,
    )
    .unwrap();
    assert!(gateway.wait_online(Duration::from_secs(10)).await);

    // The router goes away (closing every socket) and comes back on the same address.
    router.shutdown().await;
    let router = sallyport_router::spawn(RouterConfig {
        listen: addr,
        ..config
    })
    .await
    .unwrap();
    let api =
        RouterApi::with_ca_file(&router.url(), "alice-client-token", Some(pki.ca_file())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let online = api
            .resources()
            .await
            .map(|list| list.iter().any(|r| r.name == "echo" && r.online))
            .unwrap_or(false);
        if online {
            break;
        }
        assert!(Instant::now() < deadline, "the gateway did not reconnect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // And launches go through it again.
    let dir = sallyport_tests::scratch("reconnect");
    let launcher = sallyport_core::Launcher::new(
        sallyport_core::ClientProfile {
            router_url: router.url(),
            router_urls: Vec::new(),
            ca_file: Some(pki.ca_file().to_owned()),
            token: None,
            gateways: [("dc1".to_owned(), public.to_base64())].into(),
            webrtc_udp: Some(vec!["127.0.0.1:0".into()]),
            ice_servers: vec![],
            relay_only: false,
            lab: false,
            launch_reports: true,
            sso: None,
        },
        "alice-client-token",
        sallyport_core::StickyPorts::new(dir.join("ports.json")),
    )
    .unwrap()
    .with_state_dir(dir);
    let session = launcher
        .launch(request("echo", Profile::Fast))
        .await
        .unwrap();
    let (sent, received) = echo_through(session.local_port(), 256 * 1024, 9).await;
    assert_eq!(sent, received);
    session.close().await;
    gateway.shutdown().await;
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_enforces_its_session_limit() {
    let lab = sallyport_lab::Lab::start(sallyport_lab::LabOptions {
        include_local_services: false,
        max_sessions: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let launcher = launcher(&lab, "limit");
    let first = launcher
        .launch(request(sallyport_lab::DEMO_ECHO, Profile::Fast))
        .await
        .unwrap();
    let err = launcher
        .launch(request(sallyport_lab::DEMO_WEB, Profile::Fast))
        .await
        .err()
        .expect("a second tube is over the limit");
    assert_eq!(err.code(), Code::SessionLimit, "{err}");
    assert!(err.to_string().contains("1 attempt"), "not retried: {err}");
    first.close().await;
    // Closing the first frees its slot.
    let deadline = Instant::now() + Duration::from_secs(10);
    let second = loop {
        match launcher
            .launch(request(sallyport_lab::DEMO_WEB, Profile::Fast))
            .await
        {
            Ok(session) => break session,
            Err(e) if e.code() == Code::SessionLimit && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("the slot was not freed: {e}"),
        }
    };
    second.close().await;
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_stopped_gracefully_is_reported_as_gateway_shutdown() {
    let lab = lab(vec![]).await;
    let launcher = launcher(&lab, "graceful");
    let session = launcher
        .launch(request(sallyport_lab::DEMO_ECHO, Profile::Fast))
        .await
        .unwrap();
    let sallyport_lab::Lab {
        router, gateway, ..
    } = lab;
    gateway.shutdown().await;
    let end = tokio::time::timeout(Duration::from_secs(5), session.wait_tunnel())
        .await
        .expect("the session learns at once");
    assert_eq!(
        end,
        sallyport_core::SessionEnd::TubeEnded {
            reason: Code::GatewayShutdown
        }
    );
    router.shutdown().await;
}
