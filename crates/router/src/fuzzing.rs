//! Entry points for the fuzz targets in `fuzz/`: the router's own code for a request body and
//! for client and gateway WebSocket frames, run against one long-lived router state (so state
//! that builds up across inputs is exercised too). Not part of the router's API.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use sallyport_protocol::{GatewayChallenge, GatewayKeyPair, PROTOCOL_VERSION};
use tokio::sync::mpsc;

use crate::config::{ClientEntry, GatewayEntry};
use crate::{RouterConfig, Shared};

struct Fuzzer {
    shared: Shared,
    key: GatewayKeyPair,
    link: crate::ws::Registered,
    client_tx: mpsc::Sender<sallyport_protocol::ClientWsEvent>,
    client_rx: Mutex<mpsc::Receiver<sallyport_protocol::ClientWsEvent>>,
    subscriptions: Mutex<HashSet<String>>,
    _stopper: sallyport_kit::Stopper,
}

fn fuzzer() -> &'static Fuzzer {
    static FUZZER: OnceLock<Fuzzer> = OnceLock::new();
    FUZZER.get_or_init(|| {
        let key = GatewayKeyPair::from_base64("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
            .expect("a fixed key");
        let config = RouterConfig {
            gateways: vec![GatewayEntry {
                id: "g".into(),
                token: "gateway-token".into(),
                public_key: key.public().to_base64(),
                resources: vec![],
            }],
            clients: vec![ClientEntry {
                name: "fuzz".into(),
                token: "client-token".into(),
                resources: vec!["*".into()],
                roles: vec![],
            }],
            ..RouterConfig::default()
        };
        let stopper = sallyport_kit::Stopper::new();
        let shared = Shared::new(config, stopper.shutdown());
        let (gateway_tx, gateway_rx) = mpsc::channel(1024);
        // Nothing reads the gateway's queue; keep its receiver so sends fail only when full.
        std::mem::forget(gateway_rx);
        let link = crate::ws::register(&shared, "g", gateway_tx, vec![], None);
        let (client_tx, client_rx) = mpsc::channel(256);
        Fuzzer {
            shared,
            key,
            link,
            client_tx,
            client_rx: Mutex::new(client_rx),
            subscriptions: Mutex::new(HashSet::new()),
            _stopper: stopper,
        }
    })
}

/// A `POST /v1/gateways/g/messages` body from client `fuzz`, up to forwarding.
pub fn request_body(data: &[u8]) {
    let f = fuzzer();
    let client = &f.shared.config.clients[0];
    if let Ok(message) = f.shared.check_message(client, "g", data) {
        let _ = f.shared.claim(&message.conversation_id, &client.name);
    }
}

/// A text frame on client `fuzz`'s socket.
pub fn client_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let f = fuzzer();
    let mut subscriptions = f.subscriptions.lock().unwrap();
    let _ = crate::ws::client_frame(&f.shared, "fuzz", 1, &f.client_tx, &mut subscriptions, text);
    // Drain what the frame queued, as the socket loop would send it.
    let mut rx = f.client_rx.lock().unwrap();
    while rx.try_recv().is_ok() {}
}

/// A text frame from gateway `g`: as the first frame of a connection (a hello, checked against
/// a fresh challenge; every 16th input with a valid proof spliced in), and as a frame on the
/// welcomed connection.
pub fn gateway_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let f = fuzzer();
    let challenge = GatewayChallenge::new();
    let _ = crate::ws::check_hello(&f.shared, "g", &challenge, text);
    if data.len().is_multiple_of(16) {
        let proof = f
            .key
            .prove("g", &challenge.nonce_base64(), &challenge.epk_base64())
            .expect("a fresh challenge is valid");
        let hello = serde_json::json!({
            "type": "hello", "v": PROTOCOL_VERSION, "gateway_id": "g", "proof": proof,
            "resources": serde_json::from_str::<serde_json::Value>(text).unwrap_or_default(),
        });
        let _ = crate::ws::check_hello(&f.shared, "g", &challenge, &hello.to_string());
    }
    let _ = crate::ws::gateway_frame(&f.shared, "g", &f.link.link, text);
}

/// The fuzz entry points run in a test too, so they keep compiling and never panic on a few
/// representative inputs.
#[cfg(test)]
mod tests {
    #[test]
    fn entry_points_take_any_input() {
        let inputs: [&[u8]; 6] = [
            b"",
            b"\xff\xfe",
            br#"{"type":"subscribe","conversation_id":"conversation-1"}"#,
            br#"{"type":"reply","request_id":1,"status":"ok"}"#,
            br#"{"v":1,"conversation_id":"conversation-1","resource":"r","kind":"start","payload":{"nonce":"","ct":""}}"#,
            br#"{"type":"hello","v":1,"gateway_id":"g","resources":[]}"#,
        ];
        for input in inputs {
            super::request_body(input);
            super::client_frame(input);
            super::gateway_frame(input);
        }
    }

    #[test]
    fn a_spliced_proof_is_accepted() {
        let f = super::fuzzer();
        let challenge = sallyport_protocol::GatewayChallenge::new();
        let proof = f
            .key
            .prove("g", &challenge.nonce_base64(), &challenge.epk_base64())
            .unwrap();
        let hello = serde_json::json!({"type": "hello", "v": 1, "gateway_id": "g", "proof": proof, "resources": []});
        assert!(crate::ws::check_hello(&f.shared, "g", &challenge, &hello.to_string()).is_ok());
    }
}
