//! A leaked gateway token against the real gateway: an impostor that holds the token but not
//! the key, flapping while clients launch, never takes the gateway's place.

use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sallyport_core::Profile;
use sallyport_protocol::{Code, GatewayKeyPair, PROTOCOL_VERSION};
use sallyport_tests::{echo_through, gateway_socket, lab, launcher, request};
use tokio_tungstenite::tungstenite::Message;

/// One impostor connection with the lab gateway's token: answers the challenge with a key of
/// its own and returns the router's verdict.
async fn impostor_attempt(url: &str, token: &str, ca_file: &Path) -> serde_json::Value {
    let mut socket = gateway_socket(url, token, Some(ca_file)).await;
    let challenge = next_text(&mut socket).await;
    let proof = GatewayKeyPair::generate()
        .prove(
            sallyport_lab::LAB_GATEWAY,
            challenge["nonce"].as_str().unwrap(),
            challenge["epk"].as_str().unwrap(),
        )
        .unwrap();
    let hello = serde_json::json!({"type": "hello", "v": PROTOCOL_VERSION,
        "gateway_id": sallyport_lab::LAB_GATEWAY, "proof": proof,
        "resources": [{"name": "trap", "protocol": "tcp"}]});
    socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .unwrap();
    next_text(&mut socket).await
}

async fn next_text<S>(socket: &mut S) -> serde_json::Value
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("no text frame: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_impostor_with_the_token_fails_no_launch() {
    let lab = lab(vec![]).await;
    let url = lab.router.url();
    let token = lab.gateway_token.clone();
    let ca_file = lab.ca_file.clone();
    let impostor = tokio::spawn(async move {
        let mut verdicts = Vec::new();
        for _ in 0..12 {
            verdicts.push(impostor_attempt(&url, &token, &ca_file).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        verdicts
    });
    let launcher = launcher(&lab, "impostor");
    for i in 0..6 {
        let session = launcher
            .launch(request(sallyport_lab::DEMO_ECHO, Profile::Fast))
            .await
            .unwrap_or_else(|e| panic!("launch {i} failed: {e}"));
        let (sent, received) = echo_through(session.local_port(), 64 * 1024, i + 1).await;
        assert_eq!(sent, received);
        session.close().await;
    }
    for verdict in impostor.await.unwrap() {
        assert_eq!(verdict["type"], "error", "{verdict}");
        assert_eq!(verdict["code"], Code::Unauthorized.as_str(), "{verdict}");
    }
    // The impostor's announced resource never reached the list.
    let api = sallyport_tests::lab_api(&lab);
    let resources = api.resources().await.unwrap();
    assert!(resources.iter().all(|r| r.name != "trap" && r.online));
    lab.shutdown().await;
}

#[test]
fn a_profile_names_a_bad_udp_address_and_its_file() {
    let dir = sallyport_tests::scratch("profile");
    let path = dir.join("profile.toml");
    std::fs::write(
        &path,
        "router_url = \"http://127.0.0.1:1\"\nwebrtc_udp = [\"0.0.0.0:0\", \"not-an-address\"]\n",
    )
    .unwrap();
    let err = sallyport_core::ClientProfile::load(&path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("profile.toml") && err.contains("webrtc_udp[1]"),
        "{err}"
    );
    std::fs::write(
        &path,
        "router_url = \"http://127.0.0.1:1\"\nice_servers = [\"stun.example.org\"]\n",
    )
    .unwrap();
    let err = sallyport_core::ClientProfile::load(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ice_servers[0]"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
