//! Single sign-on: OpenID Connect ID tokens (JWT) from the configured issuer stand for a
//! `[[clients]]` entry. The issuer's discovery document and key set (JWKS) are fetched on first
//! use, cached, and fetched again when a token names a key id the cache lacks (the provider
//! rotated its keys), at most once per `jwks_refresh_secs`. A token is checked in this order:
//! its form, its issuer (`wrong_issuer`), its key and signature (`bad_signature`), its expiry
//! with `leeway_secs` (`token_expired`), its audience (`wrong_audience`), and then the groups
//! claim against `[[sso.groups]]` (`not_in_group`). Only RS256 and ES256 are accepted.
//!
//! ```toml
//! [sso]
//! issuer = "https://login.example.com"
//! audience = "sallyport"            # the client id users sign in with
//! groups_claim = "groups"           # default
//! user_claim = "preferred_username" # default; `sub` when the token lacks it
//! [[sso.groups]]
//! name = "dba"
//! resources = ["orders-*"]
//! ```

use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sallyport_protocol::Code;
use serde::Deserialize;
use serde_json::Value;

use crate::config::ClientEntry;

/// `[sso]` in the router's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoConfig {
    /// The OpenID provider's issuer URL, exactly as its tokens' `iss` says it.
    pub issuer: String,
    /// The `aud` tokens must carry: the client id users sign in with.
    pub audience: String,
    /// The claim that lists the user's groups (an array of strings, or one string).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// The claim that names the user (in the audit trail, as conversation owner).
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// The key set is fetched again for an unknown key id at most this often.
    #[serde(default = "default_refresh")]
    pub jwks_refresh_secs: u64,
    /// Timeout of each request to the provider (discovery, JWKS), in seconds.
    #[serde(default = "default_fetch_timeout")]
    pub fetch_timeout_secs: u64,
    /// Each group and the resources (names or `*` patterns) its members may launch.
    #[serde(default)]
    pub groups: Vec<SsoGroup>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoGroup {
    pub name: String,
    pub resources: Vec<String>,
    /// Roles its members have beyond launching (`support`: every user's launch reports).
    #[serde(default)]
    pub roles: Vec<String>,
}

fn default_groups_claim() -> String {
    "groups".into()
}
fn default_user_claim() -> String {
    "preferred_username".into()
}
fn default_leeway() -> u64 {
    30
}
fn default_refresh() -> u64 {
    30
}
fn default_fetch_timeout() -> u64 {
    5
}

impl SsoConfig {
    /// Checked at load; the error names the field (`sso.issuer`, `sso.groups[0].name`, ...).
    pub fn validate(&self) -> Result<(), String> {
        sallyport_ops::tls::check_router_url(&self.issuer)
            .map_err(|e| format!("sso.issuer {:?}: {e}", self.issuer))?;
        if self.audience.trim().is_empty() {
            return Err("sso.audience: is empty".into());
        }
        for (name, value) in [
            ("groups_claim", &self.groups_claim),
            ("user_claim", &self.user_claim),
        ] {
            if value.trim().is_empty() {
                return Err(format!("sso.{name}: is empty"));
            }
        }
        if self.fetch_timeout_secs == 0 || self.fetch_timeout_secs > 60 {
            return Err("sso.fetch_timeout_secs: must be from 1 to 60".into());
        }
        if self.groups.is_empty() {
            return Err("sso.groups: missing: no group may launch anything".into());
        }
        for (i, g) in self.groups.iter().enumerate() {
            if g.name.trim().is_empty() {
                return Err(format!("sso.groups[{i}].name: is empty"));
            }
            let known = sallyport_protocol::report::ROLES;
            if let Some((j, role)) = g
                .roles
                .iter()
                .enumerate()
                .find(|(_, r)| !known.contains(&r.as_str()))
            {
                return Err(format!(
                    "sso.groups[{i}].roles[{j}]: {role:?} is not a role (known: {})",
                    known.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    pub message: String,
}

impl Refusal {
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The largest discovery document or key set read.
const MAX_DOCUMENT: usize = 256 * 1024;

struct Keys {
    keys: Vec<(Option<String>, Algorithm, DecodingKey)>,
    fetched: Option<Instant>,
}

/// The issuer's keys and the token checks.
pub struct Sso {
    config: SsoConfig,
    http: reqwest::Client,
    /// The keys as last fetched, and when (held only to read or replace them).
    keys: std::sync::Mutex<Keys>,
    /// One fetch at a time, without holding up tokens whose key is already known.
    fetching: tokio::sync::Mutex<()>,
}

impl Sso {
    pub fn new(config: SsoConfig) -> Self {
        let timeout = Duration::from_secs(config.fetch_timeout_secs);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            config,
            http,
            keys: std::sync::Mutex::new(Keys {
                keys: Vec::new(),
                fetched: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether a bearer token has the form of a JWT (three base64url parts), so it is meant
    /// for this module rather than the static tokens.
    pub fn looks_like_jwt(token: &str) -> bool {
        let parts: Vec<&str> = token.split('.').collect();
        parts.len() == 3
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    }

    /// The client a valid token stands for: named by its user claim, with the resources of
    /// every configured group its groups claim names.
    pub async fn client(&self, token: &str) -> Result<ClientEntry, Refusal> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Refusal::new(Code::Unauthorized, format!("not a JWT: {e}")))?;
        let unverified = payload(token)?;
        let iss = unverified.get("iss").and_then(Value::as_str).unwrap_or("");
        if iss != self.config.issuer {
            return Err(Refusal::new(
                Code::WrongIssuer,
                format!(
                    "the token was issued by {iss:?}, not by {:?}",
                    self.config.issuer
                ),
            ));
        }
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(Refusal::new(
                Code::BadSignature,
                format!("algorithm {:?} is not accepted (RS256, ES256)", header.alg),
            ));
        }
        let key = self.key(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.config.leeway_secs;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| refusal_of(&e))?
            .claims;
        let user = claims
            .get(&self.config.user_claim)
            .and_then(Value::as_str)
            .or_else(|| claims.get("sub").and_then(Value::as_str))
            .unwrap_or_default()
            .to_owned();
        let groups: Vec<&str> = match claims.get(&self.config.groups_claim) {
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(one)) => vec![one.as_str()],
            _ => Vec::new(),
        };
        let mine: Vec<&SsoGroup> = self
            .config
            .groups
            .iter()
            .filter(|g| groups.contains(&g.name.as_str()))
            .collect();
        // A group may give only a role (a help desk that launches nothing itself).
        if mine.is_empty() {
            return Err(Refusal::new(
                Code::NotInGroup,
                format!(
                    "user {user:?} is in no group of this router (claim {:?})",
                    self.config.groups_claim
                ),
            ));
        }
        let resources: Vec<String> = mine
            .iter()
            .flat_map(|g| g.resources.iter().cloned())
            .collect();
        let mut roles: Vec<String> = mine.iter().flat_map(|g| g.roles.iter().cloned()).collect();
        roles.sort();
        roles.dedup();
        Ok(ClientEntry {
            name: user,
            token: String::new(),
            resources,
            roles,
        })
    }

    /// The decoding key for `kid`: from the cache, else from a fresh fetch of the key set
    /// (rate-limited: a token naming keys that do not exist cannot make the router hammer
    /// the provider).
    async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, Refusal> {
        let missing = || {
            Refusal::new(
                Code::BadSignature,
                format!("no key {kid:?} for {alg:?} in the issuer's key set"),
            )
        };
        // A fetch, failed or not, waits `jwks_refresh_secs` (at least 1 s) for the next: a
        // stream of tokens naming keys that do not exist, or a provider that is down, costs
        // one fetch per interval, never one per token.
        let interval = Duration::from_secs(self.config.jwks_refresh_secs.max(1));
        let may_fetch = |keys: &Keys| keys.fetched.is_none_or(|at| at.elapsed() >= interval);
        {
            let keys = self.keys.lock().unwrap();
            if let Some(key) = find(&keys.keys, kid, alg) {
                return Ok(key);
            }
            if !may_fetch(&keys) {
                return Err(missing());
            }
        }
        let _one_fetch = self.fetching.lock().await;
        {
            // Another fetch may have brought the key, or used up the interval, meanwhile.
            let keys = self.keys.lock().unwrap();
            if let Some(key) = find(&keys.keys, kid, alg) {
                return Ok(key);
            }
            if !may_fetch(&keys) {
                return Err(missing());
            }
        }
        let fetched = self.fetch_keys().await;
        let mut keys = self.keys.lock().unwrap();
        keys.fetched = Some(Instant::now());
        keys.keys = fetched?;
        find(&keys.keys, kid, alg).ok_or_else(missing)
    }

    async fn fetch_keys(&self) -> Result<Vec<(Option<String>, Algorithm, DecodingKey)>, Refusal> {
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let discovery = self.get_json(&discovery_url).await?;
        let jwks_uri = discovery
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| unavailable(&discovery_url, "no jwks_uri"))?;
        let set = self.get_json(jwks_uri).await?;
        let list = set
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| unavailable(jwks_uri, "no keys"))?;
        let keys: Vec<_> = list.iter().filter_map(decoding_key).collect();
        tracing::info!(issuer = %self.config.issuer, keys = keys.len(), "fetched the issuer's keys");
        Ok(keys)
    }

    /// A JSON document, its size capped, within the fetch timeout (the whole exchange, body
    /// included: a provider that drips its answer is cut off).
    async fn get_json(&self, url: &str) -> Result<Value, Refusal> {
        let limit = Duration::from_secs(self.config.fetch_timeout_secs);
        tokio::time::timeout(limit, self.get_json_once(url))
            .await
            .unwrap_or_else(|_| Err(unavailable(url, "no complete answer in time")))
    }

    async fn get_json_once(&self, url: &str) -> Result<Value, Refusal> {
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| unavailable(url, &sallyport_ops::tls::explain(&e)))?;
        if !response.status().is_success() {
            return Err(unavailable(url, &format!("status {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unavailable(url, &e.to_string()))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(unavailable(url, "larger than 256 KiB"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| unavailable(url, &format!("not JSON: {e}")))
    }
}

fn unavailable(url: &str, why: &str) -> Refusal {
    tracing::warn!(url, why, "OpenID provider unavailable");
    Refusal::new(Code::SsoUnavailable, format!("cannot read {url}: {why}"))
}

fn find(
    keys: &[(Option<String>, Algorithm, DecodingKey)],
    kid: Option<&str>,
    alg: Algorithm,
) -> Option<DecodingKey> {
    keys.iter()
        .find(|(id, a, _)| *a == alg && (kid.is_none() || id.as_deref() == kid))
        .map(|(_, _, k)| k.clone())
}

/// One key of a JWKS, if it is a signing key of an accepted type (RSA for RS256, P-256 for
/// ES256); others are skipped.
fn decoding_key(jwk: &Value) -> Option<(Option<String>, Algorithm, DecodingKey)> {
    if jwk
        .get("use")
        .and_then(Value::as_str)
        .is_some_and(|u| u != "sig")
    {
        return None;
    }
    let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    match (text("kty")?, text("alg")) {
        ("RSA", None | Some("RS256")) => {
            let key = DecodingKey::from_rsa_components(text("n")?, text("e")?).ok()?;
            Some((kid, Algorithm::RS256, key))
        }
        ("EC", None | Some("ES256")) if text("crv") == Some("P-256") => {
            let key = DecodingKey::from_ec_components(text("x")?, text("y")?).ok()?;
            Some((kid, Algorithm::ES256, key))
        }
        _ => None,
    }
}

/// The claims of a JWT, unverified: only to read `iss` before choosing whose keys to use.
fn payload(token: &str) -> Result<Value, Refusal> {
    let part = token.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Refusal::new(Code::Unauthorized, "the token's claims are not base64url"))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| Refusal::new(Code::Unauthorized, "the token's claims are not JSON"))
}

fn refusal_of(e: &jsonwebtoken::errors::Error) -> Refusal {
    use jsonwebtoken::errors::ErrorKind;
    let code = match e.kind() {
        ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => Code::TokenExpired,
        ErrorKind::InvalidIssuer => Code::WrongIssuer,
        ErrorKind::InvalidAudience => Code::WrongAudience,
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => Code::BadSignature,
        _ => Code::Unauthorized,
    };
    let message = match code {
        Code::TokenExpired => "the token has expired".to_owned(),
        Code::BadSignature => "the token's signature does not verify".to_owned(),
        _ => format!("the token was refused: {e}"),
    };
    Refusal::new(code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SsoConfig {
        toml::from_str(
            "issuer = \"https://login.example.com\"\naudience = \"sallyport\"\n[[groups]]\nname = \"dba\"\nresources = [\"orders-*\"]\n",
        )
        .unwrap()
    }

    #[test]
    fn the_configuration_is_checked_field_by_field() {
        assert!(config().validate().is_ok());
        let mut c = config();
        c.issuer = "http://login.example.com".into();
        assert!(c.validate().unwrap_err().starts_with("sso.issuer"));
        let mut c = config();
        c.audience = " ".into();
        assert!(c.validate().unwrap_err().starts_with("sso.audience"));
        let mut c = config();
        c.groups.clear();
        assert!(c.validate().unwrap_err().starts_with("sso.groups"));
    }

    #[test]
    fn only_jwt_shaped_tokens_are_taken_for_openid_ones() {
        assert!(Sso::looks_like_jwt("eyJh.eyJi.c2ln"));
        assert!(!Sso::looks_like_jwt("a-static-token"));
        assert!(!Sso::looks_like_jwt("a..b"));
        assert!(!Sso::looks_like_jwt("a.b.c.d"));
    }

    fn unsigned(issuer: &str) -> String {
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.{}",
            b64(r#"{"alg":"RS256","kid":"k"}"#),
            b64(&format!(
                r#"{{"iss":"{issuer}","aud":"sallyport","sub":"x","exp":9999999999}}"#
            )),
            b64("sig")
        )
    }

    #[tokio::test]
    async fn a_provider_that_never_answers_costs_one_fetch_timeout() {
        // Accepts connections and holds them without a byte.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let sso = Sso::new(SsoConfig {
            issuer: issuer.clone(),
            fetch_timeout_secs: 1,
            ..config()
        });
        let started = Instant::now();
        let refusal = sso.client(&unsigned(&issuer)).await.unwrap_err();
        assert_eq!(refusal.code, Code::SsoUnavailable, "{refusal:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        held.abort();
    }

    #[tokio::test]
    async fn another_issuer_is_refused_before_any_fetch() {
        let sso = Sso::new(config());
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let token = format!(
            "{}.{}.{}",
            b64(r#"{"alg":"RS256","kid":"k"}"#),
            b64(r#"{"iss":"https://evil.example","aud":"sallyport","sub":"x","exp":9999999999}"#),
            b64("sig")
        );
        let refusal = sso.client(&token).await.unwrap_err();
        assert_eq!(refusal.code, Code::WrongIssuer, "{refusal:?}");
        assert!(refusal.message.contains("evil.example"));
    }
}
