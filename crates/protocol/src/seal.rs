//! End-to-end sealing of signalling payloads between a client and a gateway.
//!
//! The router forwards sealed envelopes and can neither read nor alter them:
//!
//! * each gateway has a long-term X25519 key pair; clients pin its public key;
//! * each conversation, the client draws a fresh ephemeral X25519 key;
//! * HKDF-SHA256 over the shared secret (salt: the conversation id; info: the protocol label and
//!   both public keys) yields one AES-256-GCM key per direction;
//! * every message carries a random 96-bit nonce, and its associated data binds the protocol
//!   version, the conversation id, the direction and the message kind, so an envelope replayed
//!   into another conversation, turned around, or relabelled fails to open.

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use x25519_dalek::{EphemeralSecret, PublicKey, StaticSecret};

use crate::ProtocolError;

const KDF_LABEL: &[u8] = b"sallyport/seal/v1";
const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;

/// Which way a sealed payload travels; part of the associated data so that a gateway's
/// message cannot be reflected back to it as if it came from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToGateway,
    GatewayToClient,
}

impl Direction {
    fn tag(self) -> &'static [u8] {
        match self {
            Direction::ClientToGateway => b"c2g",
            Direction::GatewayToClient => b"g2c",
        }
    }
}

/// A body the client seals for the gateway; its type carries the kind it is sealed under (the
/// kind is authenticated with it), so no call site names a kind.
pub trait ToGateway: Serialize + serde::de::DeserializeOwned {
    const KIND: crate::MessageKind;
}

/// A body the gateway seals for the client, with the stream kind it is sealed under.
pub trait ToClient: Serialize + serde::de::DeserializeOwned {
    const KIND: crate::StreamKind;
}

/// A sealed payload as it travels through the router (JSON, binary fields in base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPayload {
    /// The client's ephemeral public key for this conversation (32 bytes, base64). Present on
    /// every client-to-gateway envelope so that any of them can open the conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epk: Option<String>,
    /// 12-byte AES-GCM nonce, base64.
    pub nonce: String,
    /// Ciphertext with its 16-byte tag, base64.
    pub ct: String,
}

/// A gateway's long-term public key, as pinned in a client profile (base64 of 32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayPublicKey(pub(crate) PublicKey);

impl GatewayPublicKey {
    pub fn from_base64(text: &str) -> Result<Self, ProtocolError> {
        let bytes = decode_32(text.trim(), "gateway public key")?;
        Ok(Self(PublicKey::from(bytes)))
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.0.as_bytes())
    }

    /// The key's fingerprint as users compare it, in SSH's format: `SHA256:` and the
    /// unpadded standard base64 of the SHA-256 of the 32 key bytes (43 characters).
    pub fn fingerprint(&self) -> String {
        use base64::engine::general_purpose::STANDARD_NO_PAD;
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.0.as_bytes());
        format!("SHA256:{}", STANDARD_NO_PAD.encode(digest))
    }
}

impl std::fmt::Display for GatewayPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// A gateway's long-term key pair. Stored as the base64 of the 32-byte secret.
#[derive(Clone)]
pub struct GatewayKeyPair {
    pub(crate) secret: StaticSecret,
}

impl std::fmt::Debug for GatewayKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayKeyPair")
            .field("public", &self.public().to_base64())
            .finish_non_exhaustive()
    }
}

impl GatewayKeyPair {
    pub fn generate() -> Self {
        Self {
            secret: StaticSecret::random(),
        }
    }

    pub fn from_base64(text: &str) -> Result<Self, ProtocolError> {
        let bytes = decode_32(text.trim(), "gateway secret key")?;
        Ok(Self {
            secret: StaticSecret::from(bytes),
        })
    }

    pub fn secret_to_base64(&self) -> String {
        B64.encode(self.secret.as_bytes())
    }

    pub fn public(&self) -> GatewayPublicKey {
        GatewayPublicKey(PublicKey::from(&self.secret))
    }
}

/// The two directional keys of one conversation, held by either end.
#[derive(Clone)]
pub struct ConversationKeys {
    conversation_id: String,
    client_to_gateway: Key<Aes256Gcm>,
    gateway_to_client: Key<Aes256Gcm>,
    /// Set on the client side: the ephemeral public key to attach to outgoing envelopes.
    client_epk: Option<String>,
}

impl std::fmt::Debug for ConversationKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConversationKeys")
            .field("conversation_id", &self.conversation_id)
            .finish_non_exhaustive()
    }
}

fn derive(
    shared: &[u8; 32],
    conversation_id: &str,
    client_epk: &PublicKey,
    gateway_pk: &PublicKey,
) -> (Key<Aes256Gcm>, Key<Aes256Gcm>) {
    let hk = Hkdf::<Sha256>::new(Some(conversation_id.as_bytes()), shared);
    let mut info = Vec::with_capacity(KDF_LABEL.len() + 64);
    info.extend_from_slice(KDF_LABEL);
    info.extend_from_slice(client_epk.as_bytes());
    info.extend_from_slice(gateway_pk.as_bytes());
    let mut okm = [0u8; 2 * KEY_LEN];
    hk.expand(&info, &mut okm)
        .expect("64 bytes is a valid HKDF-SHA256 output length");
    let c2g = Key::<Aes256Gcm>::try_from(&okm[..KEY_LEN]).expect("32-byte key");
    let g2c = Key::<Aes256Gcm>::try_from(&okm[KEY_LEN..]).expect("32-byte key");
    (c2g, g2c)
}

impl ConversationKeys {
    /// Client side: a fresh ephemeral key for a new conversation with the pinned gateway.
    pub fn for_client(gateway: &GatewayPublicKey, conversation_id: &str) -> Self {
        let ephemeral = EphemeralSecret::random();
        let epk = PublicKey::from(&ephemeral);
        let shared = ephemeral.diffie_hellman(&gateway.0);
        let (c2g, g2c) = derive(shared.as_bytes(), conversation_id, &epk, &gateway.0);
        Self {
            conversation_id: conversation_id.to_owned(),
            client_to_gateway: c2g,
            gateway_to_client: g2c,
            client_epk: Some(B64.encode(epk.as_bytes())),
        }
    }

    /// Gateway side: the keys of the conversation a client envelope belongs to.
    pub fn for_gateway(
        gateway: &GatewayKeyPair,
        conversation_id: &str,
        envelope: &SealedPayload,
    ) -> Result<Self, ProtocolError> {
        let epk_text = envelope
            .epk
            .as_deref()
            .ok_or(ProtocolError::Seal("envelope has no ephemeral key"))?;
        // An unusable epk is a seal failure like any other (`seal_rejected`), not a key error.
        let epk = decode_32(epk_text, "ephemeral key")
            .map_err(|_| ProtocolError::Seal("ephemeral key is not base64 of 32 bytes"))?;
        let epk = PublicKey::from(epk);
        let shared = gateway.secret.diffie_hellman(&epk);
        if !shared.was_contributory() {
            return Err(ProtocolError::Seal("ephemeral key is a low-order point"));
        }
        let (c2g, g2c) = derive(
            shared.as_bytes(),
            conversation_id,
            &epk,
            &gateway.public().0,
        );
        Ok(Self {
            conversation_id: conversation_id.to_owned(),
            client_to_gateway: c2g,
            gateway_to_client: g2c,
            client_epk: None,
        })
    }

    fn key(&self, direction: Direction) -> &Key<Aes256Gcm> {
        match direction {
            Direction::ClientToGateway => &self.client_to_gateway,
            Direction::GatewayToClient => &self.gateway_to_client,
        }
    }

    fn aad(&self, direction: Direction, kind: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(KDF_LABEL);
        aad.push(0);
        aad.extend_from_slice(self.conversation_id.as_bytes());
        aad.push(0);
        aad.extend_from_slice(direction.tag());
        aad.push(0);
        aad.extend_from_slice(kind.as_bytes());
        aad
    }

    /// Seal `plaintext` for `direction`; `kind` names the message and is authenticated.
    pub fn seal(&self, direction: Direction, kind: &str, plaintext: &[u8]) -> SealedPayload {
        let cipher = Aes256Gcm::new(self.key(direction));
        let nonce = Nonce::generate();
        let aad = self.aad(direction, kind);
        let ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        SealedPayload {
            epk: match direction {
                Direction::ClientToGateway => self.client_epk.clone(),
                Direction::GatewayToClient => None,
            },
            nonce: B64.encode(nonce.as_slice()),
            ct: B64.encode(ct),
        }
    }

    /// Open an envelope travelling in `direction` with message kind `kind`.
    pub fn open(
        &self,
        direction: Direction,
        kind: &str,
        envelope: &SealedPayload,
    ) -> Result<Vec<u8>, ProtocolError> {
        let nonce_bytes = B64
            .decode(envelope.nonce.as_bytes())
            .map_err(|_| ProtocolError::Seal("nonce is not base64"))?;
        if nonce_bytes.len() != NONCE_LEN {
            return Err(ProtocolError::Seal("nonce is not 12 bytes"));
        }
        let ct = B64
            .decode(envelope.ct.as_bytes())
            .map_err(|_| ProtocolError::Seal("ciphertext is not base64"))?;
        let nonce = Nonce::try_from(nonce_bytes.as_slice())
            .map_err(|_| ProtocolError::Seal("nonce is not 12 bytes"))?;
        let aad = self.aad(direction, kind);
        Aes256Gcm::new(self.key(direction))
            .decrypt(
                &nonce,
                Payload {
                    msg: &ct,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                ProtocolError::Seal(
                    "authentication failed (tampered, truncated, wrong key or wrong conversation)",
                )
            })
    }

    /// Seal `body` for the gateway, under the kind its type carries.
    pub fn seal_to_gateway<T: ToGateway>(&self, body: &T) -> SealedPayload {
        self.seal_json(Direction::ClientToGateway, T::KIND.as_str(), body)
    }

    /// Open a body the client sealed for the gateway, as the type the kind promises.
    pub fn open_from_client<T: ToGateway>(
        &self,
        envelope: &SealedPayload,
    ) -> Result<T, ProtocolError> {
        self.open_json(Direction::ClientToGateway, T::KIND.as_str(), envelope)
    }

    /// Seal `body` for the client, under the kind its type carries.
    pub fn seal_to_client<T: ToClient>(&self, body: &T) -> SealedPayload {
        self.seal_json(Direction::GatewayToClient, T::KIND.as_str(), body)
    }

    /// Open a body the gateway sealed for the client, as the type the kind promises.
    pub fn open_from_gateway<T: ToClient>(
        &self,
        envelope: &SealedPayload,
    ) -> Result<T, ProtocolError> {
        self.open_json(Direction::GatewayToClient, T::KIND.as_str(), envelope)
    }

    fn seal_json<T: Serialize>(
        &self,
        direction: Direction,
        kind: &str,
        value: &T,
    ) -> SealedPayload {
        let bytes = serde_json::to_vec(value).expect("signalling types serialize");
        self.seal(direction, kind, &bytes)
    }

    fn open_json<T: serde::de::DeserializeOwned>(
        &self,
        direction: Direction,
        kind: &str,
        envelope: &SealedPayload,
    ) -> Result<T, ProtocolError> {
        let bytes = self.open(direction, kind, envelope)?;
        serde_json::from_slice(&bytes).map_err(|e| ProtocolError::Malformed(e.to_string()))
    }
}

pub(crate) fn decode_32(text: &str, what: &'static str) -> Result<[u8; 32], ProtocolError> {
    let bytes = B64
        .decode(text.as_bytes())
        .map_err(|_| ProtocolError::Key(format!("{what} is not valid base64")))?;
    bytes
        .try_into()
        .map_err(|_| ProtocolError::Key(format!("{what} is not 32 bytes")))
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_fingerprint_is_ssh_s_sha256_format() {
        let bytes: Vec<u8> = (0u8..32).collect();
        let key = GatewayPublicKey::from_base64(&B64.encode(&bytes)).unwrap();
        assert_eq!(
            key.fingerprint(),
            "SHA256:Yw3NKWbEM2aRElRIu7JbT/QSpJxzLbLIq8G4WBvXEN0"
        );
    }

    use super::*;

    fn pair(conv: &str) -> (GatewayKeyPair, ConversationKeys) {
        let gw = GatewayKeyPair::generate();
        let client = ConversationKeys::for_client(&gw.public(), conv);
        (gw, client)
    }

    #[test]
    fn round_trip_both_directions() {
        let (gw, client) = pair("conv-1");
        let sealed = client.seal(Direction::ClientToGateway, "start", b"offer sdp");
        let gateway = ConversationKeys::for_gateway(&gw, "conv-1", &sealed).unwrap();
        assert_eq!(
            gateway
                .open(Direction::ClientToGateway, "start", &sealed)
                .unwrap(),
            b"offer sdp"
        );
        let reply = gateway.seal(Direction::GatewayToClient, "answer", b"answer sdp");
        assert!(reply.epk.is_none());
        assert_eq!(
            client
                .open(Direction::GatewayToClient, "answer", &reply)
                .unwrap(),
            b"answer sdp"
        );
    }

    #[test]
    fn tampered_ciphertext_is_rejected() {
        let (gw, client) = pair("c");
        let mut sealed = client.seal(Direction::ClientToGateway, "start", b"hello world");
        let mut ct = B64.decode(&sealed.ct).unwrap();
        ct[3] ^= 0x01;
        sealed.ct = B64.encode(ct);
        let gateway = ConversationKeys::for_gateway(&gw, "c", &sealed).unwrap();
        assert!(gateway
            .open(Direction::ClientToGateway, "start", &sealed)
            .is_err());
    }

    #[test]
    fn truncated_ciphertext_is_rejected() {
        let (gw, client) = pair("c");
        let mut sealed = client.seal(Direction::ClientToGateway, "start", b"hello world");
        let ct = B64.decode(&sealed.ct).unwrap();
        sealed.ct = B64.encode(&ct[..ct.len() - 1]);
        let gateway = ConversationKeys::for_gateway(&gw, "c", &sealed).unwrap();
        assert!(gateway
            .open(Direction::ClientToGateway, "start", &sealed)
            .is_err());
        sealed.ct = String::new();
        assert!(gateway
            .open(Direction::ClientToGateway, "start", &sealed)
            .is_err());
    }

    #[test]
    fn replay_into_another_conversation_is_rejected() {
        let (gw, client) = pair("conv-a");
        let sealed = client.seal(Direction::ClientToGateway, "start", b"offer");
        let other = ConversationKeys::for_gateway(&gw, "conv-b", &sealed).unwrap();
        assert!(other
            .open(Direction::ClientToGateway, "start", &sealed)
            .is_err());
    }

    #[test]
    fn wrong_gateway_key_is_rejected() {
        let (_gw, client) = pair("c");
        let impostor = GatewayKeyPair::generate();
        let sealed = client.seal(Direction::ClientToGateway, "start", b"offer");
        let keys = ConversationKeys::for_gateway(&impostor, "c", &sealed).unwrap();
        assert!(keys
            .open(Direction::ClientToGateway, "start", &sealed)
            .is_err());
    }

    #[test]
    fn relabelled_kind_and_reflected_direction_are_rejected() {
        let (gw, client) = pair("c");
        let sealed = client.seal(Direction::ClientToGateway, "start", b"offer");
        let gateway = ConversationKeys::for_gateway(&gw, "c", &sealed).unwrap();
        assert!(gateway
            .open(Direction::ClientToGateway, "close", &sealed)
            .is_err());
        let reply = gateway.seal(Direction::GatewayToClient, "answer", b"x");
        assert!(gateway
            .open(Direction::ClientToGateway, "answer", &reply)
            .is_err());
    }

    #[test]
    fn keys_round_trip_through_base64() {
        let gw = GatewayKeyPair::generate();
        let again = GatewayKeyPair::from_base64(&gw.secret_to_base64()).unwrap();
        assert_eq!(gw.public(), again.public());
        let pk = GatewayPublicKey::from_base64(&gw.public().to_base64()).unwrap();
        assert_eq!(pk, gw.public());
        assert!(GatewayPublicKey::from_base64("not base64!").is_err());
        assert!(GatewayPublicKey::from_base64("AAAA").is_err());
    }

    #[test]
    fn low_order_ephemeral_key_is_rejected() {
        let gw = GatewayKeyPair::generate();
        let envelope = SealedPayload {
            epk: Some(B64.encode([0u8; 32])),
            nonce: B64.encode([0u8; 12]),
            ct: B64.encode([0u8; 32]),
        };
        assert!(ConversationKeys::for_gateway(&gw, "c", &envelope).is_err());
    }
}
