//! Properties of the sealing, the gateway proof and the name rules, over generated inputs.

use proptest::prelude::*;
use sallyport_protocol::{
    valid_conversation_id, valid_resource_name, ConversationKeys, Direction, GatewayChallenge,
    GatewayKeyPair,
};

fn id_char(extra: &'static str) -> impl Strategy<Value = char> {
    let alphabet: Vec<char> = ('a'..='z')
        .chain('A'..='Z')
        .chain('0'..='9')
        .chain(extra.chars())
        .collect();
    proptest::sample::select(alphabet)
}

fn conversation_id() -> impl Strategy<Value = String> {
    proptest::collection::vec(id_char("-_"), 8..=64).prop_map(|c| c.into_iter().collect())
}

fn kind() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec!["start", "candidates", "close", "answer", "closed"])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sealing_round_trips_both_ways(
        id in conversation_id(),
        kind in kind(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let gateway = GatewayKeyPair::generate();
        let client = ConversationKeys::for_client(&gateway.public(), &id);
        let sealed = client.seal(Direction::ClientToGateway, kind, &plaintext);
        let at_gateway = ConversationKeys::for_gateway(&gateway, &id, &sealed).unwrap();
        prop_assert_eq!(at_gateway.open(Direction::ClientToGateway, kind, &sealed).unwrap(), plaintext.clone());
        let reply = at_gateway.seal(Direction::GatewayToClient, kind, &plaintext);
        prop_assert_eq!(client.open(Direction::GatewayToClient, kind, &reply).unwrap(), plaintext);
    }

    #[test]
    fn any_flipped_bit_is_refused(
        id in conversation_id(),
        plaintext in proptest::collection::vec(any::<u8>(), 1..512),
        bit in any::<usize>(),
    ) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let gateway = GatewayKeyPair::generate();
        let client = ConversationKeys::for_client(&gateway.public(), &id);
        let mut sealed = client.seal(Direction::ClientToGateway, "start", &plaintext);
        let keys = ConversationKeys::for_gateway(&gateway, &id, &sealed).unwrap();
        let mut ct = b64.decode(&sealed.ct).unwrap();
        let bit = bit % (ct.len() * 8);
        ct[bit / 8] ^= 1 << (bit % 8);
        sealed.ct = b64.encode(ct);
        prop_assert!(keys.open(Direction::ClientToGateway, "start", &sealed).is_err());
    }

    #[test]
    fn another_conversation_or_kind_does_not_open(
        id in conversation_id(),
        other in conversation_id(),
        kind in kind(),
        other_kind in kind(),
    ) {
        prop_assume!(id != other || kind != other_kind);
        let gateway = GatewayKeyPair::generate();
        let client = ConversationKeys::for_client(&gateway.public(), &id);
        let sealed = client.seal(Direction::ClientToGateway, kind, b"payload");
        let keys = ConversationKeys::for_gateway(&gateway, &other, &sealed).unwrap();
        prop_assert!(keys.open(Direction::ClientToGateway, other_kind, &sealed).is_err());
    }

    #[test]
    fn arbitrary_envelopes_never_panic(
        epk in proptest::option::of(".{0,60}"),
        nonce in ".{0,40}",
        ct in ".{0,200}",
    ) {
        let gateway = GatewayKeyPair::generate();
        let envelope = sallyport_protocol::SealedPayload { epk, nonce, ct };
        if let Ok(keys) = ConversationKeys::for_gateway(&gateway, "conversation", &envelope) {
            prop_assert!(keys.open(Direction::ClientToGateway, "start", &envelope).is_err());
        }
    }

    #[test]
    fn gateway_proof_round_trips_for_the_key_holder_only(id in "[a-z0-9][a-z0-9.-]{0,63}") {
        let gateway = GatewayKeyPair::generate();
        let challenge = GatewayChallenge::new();
        let proof = gateway.prove(&id, &challenge.nonce_base64(), &challenge.epk_base64()).unwrap();
        prop_assert!(challenge.verify(&gateway.public(), &id, &proof).is_ok());
        let other = GatewayKeyPair::generate().public();
        prop_assert!(challenge.verify(&other, &id, &proof).is_err());
    }

    #[test]
    fn conversation_ids_of_the_alphabet_are_valid(id in conversation_id()) {
        prop_assert!(valid_conversation_id(&id));
    }

    #[test]
    fn conversation_ids_outside_the_rule_are_invalid(s in any::<String>()) {
        let expected = (8..=64).contains(&s.len())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        prop_assert_eq!(valid_conversation_id(&s), expected);
    }

    #[test]
    fn resource_names_follow_the_rule(s in any::<String>()) {
        let expected = (1..=64).contains(&s.len())
            && !s.starts_with('.')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        prop_assert_eq!(valid_resource_name(&s), expected);
    }

    #[test]
    fn a_path_separator_or_leading_dot_is_never_a_name(
        prefix in "[a-z]{0,10}",
        bad in proptest::sample::select(vec!["/", "\\\\", "..", "\u{0}", " ", "%2e"]),
        suffix in "[a-z]{0,10}",
    ) {
        let name = format!("{prefix}{bad}{suffix}");
        if bad == ".." && !prefix.is_empty() {
            // "a..b" is an ordinary name; only a leading dot is refused.
            prop_assert!(valid_resource_name(&name));
        } else {
            prop_assert!(!valid_resource_name(&name), "{:?}", name);
        }
    }
}
