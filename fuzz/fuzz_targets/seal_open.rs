//! Opening a sealed payload at the gateway: any envelope (as JSON, or raw fields) either
//! opens to what was sealed or is refused, never panics.
#![no_main]

use std::sync::OnceLock;

use sallyport_protocol::{ConversationKeys, Direction, GatewayKeyPair, SealedPayload, StartBody};

fn gateway() -> &'static GatewayKeyPair {
    static KEY: OnceLock<GatewayKeyPair> = OnceLock::new();
    KEY.get_or_init(|| {
        GatewayKeyPair::from_base64("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").unwrap()
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let envelope = match serde_json::from_slice::<SealedPayload>(data) {
        Ok(envelope) => envelope,
        // Not JSON: split the bytes into the three fields instead.
        Err(_) => {
            let text = String::from_utf8_lossy(data);
            let mut parts = text.splitn(3, '|');
            SealedPayload {
                epk: parts.next().map(str::to_owned),
                nonce: parts.next().unwrap_or_default().to_owned(),
                ct: parts.next().unwrap_or_default().to_owned(),
            }
        }
    };
    if let Ok(keys) = ConversationKeys::for_gateway(gateway(), "fuzz-conversation", &envelope) {
        let _ = keys.open_from_client::<StartBody>(&envelope);
        // A well-formed envelope sealed by a real client always opens.
        let client = ConversationKeys::for_client(&gateway().public(), "fuzz-conversation");
        let sealed = client.seal(Direction::ClientToGateway, "start", data);
        let at_gateway =
            ConversationKeys::for_gateway(gateway(), "fuzz-conversation", &sealed).unwrap();
        assert_eq!(
            at_gateway
                .open(Direction::ClientToGateway, "start", &sealed)
                .unwrap(),
            data
        );
    }
});
