//! What the router answers, one case per test so that each fails on its own: the HTTP status
//! and code of every refusal (the registry decides the status), and how a socket that broke
//! the protocol is closed (its close code, not merely "it ended").

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sallyport_protocol::{
    ClientMessage, Code, ConversationKeys, Direction, ErrorBody, GatewayKeyPair, MessageKind,
    PROTOCOL_VERSION,
};
use sallyport_router::config::{ClientEntry, GatewayEntry};
use sallyport_router::{RouterConfig, RouterHandle};
use sallyport_tests::gateway_socket;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const CLIENT_TOKEN: &str = "alice-client-token";

/// The `mute` gateway's key (fixed, so raw test sockets can prove it).
fn mute_key() -> GatewayKeyPair {
    GatewayKeyPair::from_base64("AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=").unwrap()
}

/// A router with one client and two gateways: `ghost` never connects, `mute` connects (when a
/// test plays it) and never answers. Plain HTTP on loopback: the codes are the subject here
/// (tests/tls.rs covers the transport).
async fn bare_router() -> RouterHandle {
    let config = RouterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_body_bytes: 4096,
        gateways: vec![
            GatewayEntry {
                id: "ghost".into(),
                token: "ghost-gateway-token".into(),
                public_key: GatewayKeyPair::generate().public().to_base64(),
                resources: vec![sallyport_protocol::AnnouncedResource {
                    name: "db".into(),
                    protocol: "postgres".into(),
                }],
            },
            GatewayEntry {
                id: "mute".into(),
                token: "mute-gateway-token".into(),
                public_key: mute_key().public().to_base64(),
                resources: vec![],
            },
        ],
        clients: vec![ClientEntry {
            name: "alice".into(),
            token: CLIENT_TOKEN.into(),
            resources: vec!["*".into()],
            roles: vec![],
        }],
        ..RouterConfig::parse("plain_http = true").unwrap()
    };
    sallyport_router::spawn(config).await.unwrap()
}

fn start(resource: &str, timeout_ms: u64) -> ClientMessage {
    let keys = ConversationKeys::for_client(&GatewayKeyPair::generate().public(), "conversation-1");
    ClientMessage {
        v: PROTOCOL_VERSION,
        conversation_id: "conversation-1".into(),
        resource: resource.into(),
        kind: MessageKind::Start,
        stream_response: false,
        timeout_ms: Some(timeout_ms),
        payload: keys.seal(Direction::ClientToGateway, "start", b"{}"),
    }
}

fn json(message: &ClientMessage) -> Vec<u8> {
    serde_json::to_vec(message).unwrap()
}

/// POST `body` to `/v1/gateways/{gateway}/messages` with `token`: the status and the code.
async fn post(router: &RouterHandle, gateway: &str, token: &str, body: Vec<u8>) -> (u16, Code) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/gateways/{gateway}/messages", router.url()))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: ErrorBody = response.json().await.unwrap();
    (status, body.code)
}

/// One refusal per test: what is sent, and the status and code it must get.
macro_rules! refusal {
    ($name:ident, $gateway:expr, $token:expr, $body:expr, $status:expr, $code:expr) => {
        #[tokio::test]
        async fn $name() {
            let router = bare_router().await;
            let answer = post(&router, $gateway, $token, $body).await;
            assert_eq!(answer, ($status, $code));
            assert_eq!($code.http_status(), $status, "the registry's status");
            router.shutdown().await;
        }
    };
}

refusal!(
    a_gateway_not_connected_is_503_controller_down,
    "ghost",
    CLIENT_TOKEN,
    json(&start("db", 1000)),
    503,
    Code::ControllerDown
);
refusal!(
    an_unknown_gateway_is_404,
    "nowhere",
    CLIENT_TOKEN,
    json(&start("db", 1000)),
    404,
    Code::UnknownGateway
);
refusal!(
    a_wrong_token_is_401,
    "ghost",
    "wrong-token-here",
    json(&start("db", 1000)),
    401,
    Code::Unauthorized
);
refusal!(
    unreadable_json_is_400_malformed,
    "mute",
    CLIENT_TOKEN,
    b"{not json".to_vec(),
    400,
    Code::Malformed
);
refusal!(
    a_body_past_the_limit_is_413,
    "mute",
    CLIENT_TOKEN,
    vec![b' '; 64 * 1024],
    413,
    Code::TooLarge
);
refusal!(
    another_protocol_version_is_400,
    "ghost",
    CLIENT_TOKEN,
    json(&ClientMessage {
        v: 99,
        ..start("db", 1000)
    }),
    400,
    Code::UnsupportedVersion
);
#[tokio::test]
async fn the_resource_list_needs_a_token() {
    let router = bare_router().await;
    let response = reqwest::Client::new()
        .get(format!("{}/v1/resources", router.url()))
        .bearer_auth("wrong-token-here")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: ErrorBody = response.json().await.unwrap();
    assert_eq!(body.code, Code::Unauthorized);
    router.shutdown().await;
}

#[tokio::test]
async fn a_websocket_without_a_token_is_refused_with_401() {
    let router = bare_router().await;
    let no_token =
        sallyport_kit::connect(&router.url(), sallyport_protocol::CLIENT_WS_PATH, "", None).await;
    match no_token {
        Err(sallyport_kit::ConnectError::Handshake(
            tokio_tungstenite::tungstenite::Error::Http(response),
        )) => assert_eq!(response.status(), 401),
        other => panic!("expected a 401, got {:?}", other.map(|_| ())),
    }
    router.shutdown().await;
}

/// Play the `mute` gateway: answer the challenge, announce `slow`, and never answer.
async fn mute_gateway(router: &RouterHandle) -> sallyport_kit::WebSocket {
    let mut mute = gateway_socket(&router.url(), "mute-gateway-token", None).await;
    let challenge: serde_json::Value =
        serde_json::from_str(mute.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(challenge["type"], "challenge");
    let proof = mute_key()
        .prove(
            "mute",
            challenge["nonce"].as_str().unwrap(),
            challenge["epk"].as_str().unwrap(),
        )
        .unwrap();
    let hello = serde_json::json!({"type": "hello", "v": PROTOCOL_VERSION, "gateway_id": "mute", "proof": proof, "resources": [{"name": "slow", "protocol": "tcp"}]});
    mute.send(Message::Text(hello.to_string().into()))
        .await
        .unwrap();
    let welcome = mute.next().await.unwrap().unwrap();
    assert!(welcome.to_text().unwrap().contains("welcome"));
    mute
}

#[tokio::test]
async fn a_gateway_that_never_answers_is_504_rrc_timeout() {
    let router = bare_router().await;
    let _mute = mute_gateway(&router).await;
    let answer = post(&router, "mute", CLIENT_TOKEN, json(&start("slow", 300))).await;
    assert_eq!(answer, (504, Code::RrcTimeout));
    router.shutdown().await;
}

#[tokio::test]
async fn a_resource_the_connected_gateway_does_not_serve_is_404() {
    let router = bare_router().await;
    let _mute = mute_gateway(&router).await;
    let answer = post(
        &router,
        "mute",
        CLIENT_TOKEN,
        json(&start("elsewhere", 300)),
    )
    .await;
    assert_eq!(answer, (404, Code::UnknownResource));
    router.shutdown().await;
}

#[tokio::test]
async fn the_resource_list_shows_each_gateway_s_online_state() {
    let router = bare_router().await;
    let _mute = mute_gateway(&router).await;
    let api = sallyport_core::router_api::RouterApi::new(&router.url(), CLIENT_TOKEN).unwrap();
    let resources = api.resources().await.unwrap();
    let online = |name: &str| resources.iter().find(|r| r.name == name).unwrap().online;
    assert!(!online("db"));
    assert!(online("slow"));
    router.shutdown().await;
}

#[tokio::test]
async fn refusals_are_counted_by_code() {
    let router = bare_router().await;
    post(&router, "ghost", CLIENT_TOKEN, json(&start("db", 1000))).await;
    let metrics = sallyport_tests::metrics(&router.url(), None).await;
    assert!(
        metrics.contains("sallyport_failures_total{code=\"controller_down\"} 1"),
        "{metrics}"
    );
    router.shutdown().await;
}

/// The close frame that ends `socket`, skipping what came before it.
async fn close_code(socket: &mut sallyport_kit::WebSocket) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("the router closes the socket")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("the socket failed instead of closing: {e}"),
            None => return None,
        }
    }
}

#[tokio::test]
async fn a_garbage_client_frame_is_answered_malformed_and_closed_as_a_policy_violation() {
    let router = bare_router().await;
    let mut client = sallyport_kit::connect(
        &router.url(),
        sallyport_protocol::CLIENT_WS_PATH,
        CLIENT_TOKEN,
        None,
    )
    .await
    .unwrap();
    client
        .send(Message::Text("\u{0}\u{1}garbage{{{".into()))
        .await
        .unwrap();
    let error = loop {
        match client.next().await.unwrap().unwrap() {
            Message::Text(text) => break serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            Message::Ping(_) => continue,
            other => panic!("expected the error frame, got {other:?}"),
        }
    };
    assert_eq!(error["code"], Code::Malformed.as_str());
    assert_eq!(close_code(&mut client).await, Some(CloseCode::Policy));
    // ...and the router keeps serving everyone else.
    let health: serde_json::Value = reqwest::get(format!("{}/healthz", router.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    router.shutdown().await;
}

#[tokio::test]
async fn a_binary_frame_from_a_gateway_closes_it_as_a_policy_violation() {
    let router = bare_router().await;
    let mut mute = mute_gateway(&router).await;
    mute.send(Message::Binary(vec![0xde, 0xad].into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut mute).await, Some(CloseCode::Policy));
    router.shutdown().await;
}

#[tokio::test]
async fn a_router_shutting_down_closes_sockets_as_going_away() {
    let router = bare_router().await;
    let mut mute = mute_gateway(&router).await;
    let stopping = tokio::spawn(router.shutdown());
    assert_eq!(close_code(&mut mute).await, Some(CloseCode::Away));
    drop(mute);
    stopping.await.unwrap();
}
