//! The gateway proves to the router that it holds its long-term key (`docs/PROTOCOL.md` 4.2).
//!
//! A gateway token alone must not be enough to take a gateway's place: tokens sit in config
//! files and logs and leak. The router therefore knows each gateway's public key and asks, on
//! every gateway connection, for proof that the other end holds the matching secret.
//!
//! The gateway key is an X25519 key (clients already pin it for sealing), and X25519 cannot
//! sign. Possession is proven the way Noise's static-key patterns and HPKE's auth mode do it,
//! from the same well-reviewed primitives the sealing uses (x25519-dalek, HKDF-SHA256,
//! HMAC-SHA256):
//!
//! 1. the router draws a fresh ephemeral X25519 key `r` and a 32-byte random `nonce`, and sends
//!    `challenge{nonce, epk = R}` as its first frame;
//! 2. both ends compute `shared = X25519(gateway_sk, R) = X25519(r, gateway_pk)`, and only the
//!    holder of `gateway_sk` (or of `r`, which never leaves the router) can;
//! 3. `key = HKDF-SHA256(salt = nonce, IKM = shared, info = LABEL || R || gateway_pk)`, 32 bytes;
//! 4. the gateway's `hello` carries `proof = HMAC-SHA256(key, LABEL || 0x00 || gateway_id)`,
//!    which the router recomputes and compares in constant time.
//!
//! The nonce and `R` are fresh for each connection, so a proof cannot be replayed on another
//! connection or for another gateway id; a low-order `R` (whose shared secret is all zeros and
//! would let anyone compute the proof) is refused by the gateway, and the router never sends
//! one.

use aes_gcm::aead::Generate;
use aes_gcm::{Aes256Gcm, Key};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::seal::decode_32;
use crate::{GatewayKeyPair, GatewayPublicKey, ProtocolError};

/// Domain-separation label of the gateway proof; versioned apart from `PROTOCOL_VERSION`.
pub const GATEWAY_AUTH_LABEL: &[u8] = b"sallyport/gateway-auth/v1";
const NONCE_LEN: usize = 32;

/// The router's half of one gateway connection's challenge.
pub struct GatewayChallenge {
    secret: StaticSecret,
    nonce: [u8; NONCE_LEN],
}

impl std::fmt::Debug for GatewayChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayChallenge").finish_non_exhaustive()
    }
}

impl GatewayChallenge {
    /// A fresh ephemeral key and nonce, for one connection.
    pub fn new() -> Self {
        // 32 bytes from the operating system's generator, as an AES-256 key is drawn.
        let nonce: [u8; NONCE_LEN] = Key::<Aes256Gcm>::generate().into();
        Self {
            secret: StaticSecret::random(),
            nonce,
        }
    }

    /// The `nonce` field of the challenge frame (base64 of 32 bytes).
    pub fn nonce_base64(&self) -> String {
        B64.encode(self.nonce)
    }

    /// The `epk` field of the challenge frame (base64 of the 32-byte ephemeral public key).
    pub fn epk_base64(&self) -> String {
        B64.encode(PublicKey::from(&self.secret).as_bytes())
    }

    /// Check a hello's `proof` for `gateway_id`, against the key configured for it.
    pub fn verify(
        &self,
        gateway: &GatewayPublicKey,
        gateway_id: &str,
        proof: &str,
    ) -> Result<(), ProtocolError> {
        let proof = B64
            .decode(proof.as_bytes())
            .map_err(|_| ProtocolError::Seal("gateway proof is not base64"))?;
        let shared = self.secret.diffie_hellman(&gateway.0);
        if !shared.was_contributory() {
            return Err(ProtocolError::Seal(
                "configured gateway key is a low-order point",
            ));
        }
        let ephemeral = PublicKey::from(&self.secret);
        proof_mac(
            shared.as_bytes(),
            &self.nonce,
            &ephemeral,
            gateway,
            gateway_id,
        )
        .verify_slice(&proof)
        .map_err(|_| ProtocolError::Seal("gateway proof does not match the configured key"))
    }
}

impl Default for GatewayChallenge {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayKeyPair {
    /// The gateway's answer to a challenge: the `proof` field of its hello (base64 of 32 bytes).
    pub fn prove(&self, gateway_id: &str, nonce: &str, epk: &str) -> Result<String, ProtocolError> {
        let nonce = decode_32(nonce, "challenge nonce")?;
        let ephemeral = PublicKey::from(decode_32(epk, "challenge epk")?);
        let shared = self.secret.diffie_hellman(&ephemeral);
        if !shared.was_contributory() {
            return Err(ProtocolError::Seal("challenge epk is a low-order point"));
        }
        let tag = proof_mac(
            shared.as_bytes(),
            &nonce,
            &ephemeral,
            &self.public(),
            gateway_id,
        )
        .finalize()
        .into_bytes();
        Ok(B64.encode(tag))
    }
}

fn proof_mac(
    shared: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    ephemeral: &PublicKey,
    gateway: &GatewayPublicKey,
    gateway_id: &str,
) -> Hmac<Sha256> {
    let mut info = Vec::with_capacity(GATEWAY_AUTH_LABEL.len() + 64);
    info.extend_from_slice(GATEWAY_AUTH_LABEL);
    info.extend_from_slice(ephemeral.as_bytes());
    info.extend_from_slice(gateway.0.as_bytes());
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(nonce), shared)
        .expand(&info, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("HMAC takes any key");
    mac.update(GATEWAY_AUTH_LABEL);
    mac.update(&[0]);
    mac.update(gateway_id.as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_holder_proves_and_no_one_else() {
        let gateway = GatewayKeyPair::generate();
        let challenge = GatewayChallenge::new();
        let proof = gateway
            .prove("dc1", &challenge.nonce_base64(), &challenge.epk_base64())
            .unwrap();
        challenge.verify(&gateway.public(), "dc1", &proof).unwrap();
        // Another id, another key, another connection's challenge: refused.
        assert!(challenge.verify(&gateway.public(), "dc2", &proof).is_err());
        let impostor = GatewayKeyPair::generate();
        let forged = impostor
            .prove("dc1", &challenge.nonce_base64(), &challenge.epk_base64())
            .unwrap();
        assert!(challenge.verify(&gateway.public(), "dc1", &forged).is_err());
        assert!(GatewayChallenge::new()
            .verify(&gateway.public(), "dc1", &proof)
            .is_err());
        assert!(challenge
            .verify(&gateway.public(), "dc1", "not base64!")
            .is_err());
    }

    #[test]
    fn a_low_order_challenge_key_is_refused() {
        let gateway = GatewayKeyPair::generate();
        let err = gateway
            .prove("dc1", &B64.encode([7u8; 32]), &B64.encode([0u8; 32]))
            .unwrap_err();
        assert_eq!(err.code(), crate::Code::SealRejected);
    }

    /// A fixed vector, so a second implementation can check itself against this one.
    #[test]
    fn known_answer() {
        let gateway = GatewayKeyPair::from_base64(&B64.encode([1u8; 32])).unwrap();
        let router_secret = StaticSecret::from([2u8; 32]);
        let challenge = GatewayChallenge {
            secret: router_secret,
            nonce: [3u8; 32],
        };
        let proof = gateway
            .prove("dc1", &challenge.nonce_base64(), &challenge.epk_base64())
            .unwrap();
        challenge.verify(&gateway.public(), "dc1", &proof).unwrap();
        assert_eq!(proof, KNOWN_PROOF, "gateway pk {}", gateway.public());
    }

    /// Computed independently (Python `cryptography`) from the description in PROTOCOL.md.
    const KNOWN_PROOF: &str = "WzNNRhmd441gASPdD5L+VsdagmSmeJIrCr5oP7dinJg=";
}
