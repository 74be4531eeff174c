//! The client and the gateway check the router's certificate: a wrong CA, an expired
//! certificate and another host name each fail with an error that names the router URL and
//! says what is wrong, on the client's HTTP requests, on its WebSocket and at the gateway.

use std::path::Path;
use std::time::{Duration, Instant};

use sallyport_core::router_api::{RouterApi, SignalEvent};
use sallyport_core::{ClientProfile, Launcher, StickyPorts};
use sallyport_ops::pki::{write_file, TestCa, Validity};
use sallyport_protocol::{Code, GatewayKeyPair};
use sallyport_router::config::{ClientEntry, GatewayEntry, TlsFiles};
use sallyport_router::{RouterConfig, RouterHandle};
use sallyport_tests::scratch;

const CLIENT_TOKEN: &str = "alice-client-token";
const GATEWAY_TOKEN: &str = "dc1-gateway-token";

/// A router serving `cert_pem`/`key_pem` (written into `dir`), with client `alice` and gateway
/// `dc1` (key `key`).
async fn router_with(
    dir: &Path,
    cert_pem: &str,
    key_pem: &str,
    key: &GatewayKeyPair,
) -> RouterHandle {
    let (cert_file, key_file) = (dir.join("router.crt"), dir.join("router.key"));
    write_file(&cert_file, cert_pem, 0o644).unwrap();
    write_file(&key_file, key_pem, 0o600).unwrap();
    sallyport_router::spawn(RouterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(TlsFiles {
            cert_file,
            key_file,
        }),
        gateways: vec![GatewayEntry {
            id: "dc1".into(),
            token: GATEWAY_TOKEN.into(),
            public_key: key.public().to_base64(),
            resources: vec![],
        }],
        clients: vec![ClientEntry {
            name: "alice".into(),
            token: CLIENT_TOKEN.into(),
            resources: vec!["*".into()],
            roles: vec![],
        }],
        ..RouterConfig::default()
    })
    .await
    .unwrap()
}

/// What a client and a gateway that trust `ca_file` say about the router at `url`; each must
/// name the URL and say `why`.
async fn refused_everywhere(url: &str, ca_file: &Path, key: GatewayKeyPair, why: &str) {
    let check = |what: &str, message: &str| {
        assert!(
            message.contains(url) && message.contains(why),
            "{what}: {message:?} should name {url} and say {why:?}"
        );
    };
    // The launcher's first request (what `sallyport resources` and a launch do).
    let dir = scratch("tls-client");
    let profile = ClientProfile {
        ca_file: Some(ca_file.to_owned()),
        ..ClientProfile::new(url)
    };
    let launcher = Launcher::new(profile, CLIENT_TOKEN, StickyPorts::new(dir.join("p.json")))
        .unwrap()
        .with_state_dir(dir);
    let err = launcher.resources().await.unwrap_err();
    assert_eq!(err.code(), Code::RouterUnreachable);
    check("resources", &err.to_string());

    // A message POST is refused for good (no retry can mend a certificate).
    let api = RouterApi::with_ca_file(url, CLIENT_TOKEN, Some(ca_file)).unwrap();
    let message = sallyport_protocol::ClientMessage {
        v: sallyport_protocol::PROTOCOL_VERSION,
        conversation_id: "conversation-1".into(),
        resource: "db".into(),
        kind: sallyport_protocol::MessageKind::Close,
        stream_response: false,
        timeout_ms: None,
        payload: sallyport_protocol::SealedPayload {
            epk: None,
            nonce: String::new(),
            ct: String::new(),
        },
    };
    let failure = api
        .send("dc1", &message, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(failure.code(), Code::RouterTls);
    assert!(!failure.is_transient());
    check("send", &failure.message());

    // The client's WebSocket.
    let mut events = api.listen("conversation-1");
    match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
        Ok(Some(SignalEvent::Lost(message))) => check("websocket", &message),
        other => panic!("websocket: {other:?}"),
    }

    // The gateway keeps trying, and says why it cannot connect.
    let gateway = sallyport_gateway::spawn(
        sallyport_gateway::GatewayConfig::parse(&format!(
            "router_url = \"{url}\"\nca_file = \"{}\"\ngateway_id = \"dc1\"\ntoken = \"{GATEWAY_TOKEN}\"\nkey_file = \"unused\"\n",
            ca_file.display()
        ))
        .unwrap(),
        key,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let error = loop {
        if let Some(error) = gateway.last_error() {
            break error;
        }
        assert!(Instant::now() < deadline, "the gateway reports no error");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!gateway.wait_online(Duration::from_millis(100)).await);
    check("gateway", &error);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_named() {
    let dir = scratch("tls-wrong-ca");
    let (ca, other) = (
        TestCa::new("router CA").unwrap(),
        TestCa::new("other CA").unwrap(),
    );
    let issued = ca.issue(&["127.0.0.1"], Validity::Current).unwrap();
    let key = GatewayKeyPair::generate();
    let router = router_with(&dir, &issued.cert_pem, &issued.key_pem, &key).await;
    let other_file = dir.join("other-ca.pem");
    write_file(&other_file, other.pem(), 0o644).unwrap();
    refused_everywhere(
        &router.url(),
        &other_file,
        key,
        "not signed by a trusted CA",
    )
    .await;

    // With the right CA, the same client and gateway get through.
    let ca_file = dir.join("ca.pem");
    write_file(&ca_file, ca.pem(), 0o644).unwrap();
    let api = RouterApi::with_ca_file(&router.url(), CLIENT_TOKEN, Some(&ca_file)).unwrap();
    assert!(api.resources().await.unwrap().is_empty());
    router.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A router whose certificate, from a CA the client and the gateway trust, is for `names`
/// and `validity`: both refuse it, saying `why`.
async fn refused_certificate(name: &str, names: &[&str], validity: Validity, why: &str) {
    let dir = scratch(name);
    let ca = TestCa::new("router CA").unwrap();
    let issued = ca.issue(names, validity).unwrap();
    let key = GatewayKeyPair::generate();
    let router = router_with(&dir, &issued.cert_pem, &issued.key_pem, &key).await;
    let ca_file = dir.join("ca.pem");
    write_file(&ca_file, ca.pem(), 0o644).unwrap();
    refused_everywhere(&router.url(), &ca_file, key, why).await;
    router.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_named() {
    refused_certificate(
        "tls-expired",
        &["127.0.0.1"],
        Validity::Expired,
        "has expired",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_host_name_is_named() {
    refused_certificate(
        "tls-host",
        &["router.example"],
        Validity::Current,
        "not valid for the host name in the router URL",
    )
    .await;
}

#[test]
fn a_bad_ca_file_is_named_before_any_connection() {
    let dir = scratch("tls-bad-ca");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let config = sallyport_gateway::GatewayConfig::parse(&format!(
        "router_url = \"https://router.example\"\nca_file = \"{}\"\ngateway_id = \"dc1\"\ntoken = \"{GATEWAY_TOKEN}\"\nkey_file = \"unused\"\n",
        garbage.display()
    ))
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let err = sallyport_gateway::spawn(config, GatewayKeyPair::generate())
        .err()
        .expect("refused at start")
        .to_string();
    assert!(
        err.contains("ca_file") && err.contains("garbage.pem"),
        "{err}"
    );
    let err = RouterApi::with_ca_file("https://router.example", CLIENT_TOKEN, Some(&garbage))
        .err()
        .expect("refused at start")
        .to_string();
    assert!(
        err.contains("ca_file") && err.contains("garbage.pem"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
