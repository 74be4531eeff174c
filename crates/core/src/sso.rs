//! Signing in with the organisation's OpenID Connect provider, and keeping the session's
//! token fresh. The CLI uses the device authorization grant (RFC 8628: it prints a URL and a
//! code, the user confirms in any browser); the app uses the authorization code with PKCE
//! (RFC 7636) through the system browser and a loopback redirect (RFC 8252). Either way the
//! router gets the provider's ID token as its bearer token; the refresh token goes into the OS
//! keyring only (secrets.rs), never a file or a log, and the ID token is refreshed before it
//! expires.

use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{CoreError, Result};
use crate::profile::SsoSettings;

/// A token is refreshed when less than this is left of it.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// How long the user has to finish a browser sign-in.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(300);
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The provider's endpoints, from its discovery document.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
}

/// What the device grant asks the user to do.
#[derive(Debug, Clone, Deserialize)]
pub struct DevicePrompt {
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    pub user_code: String,
    pub expires_in: u64,
}

/// A sign-in's result. `Debug` shows no token.
#[derive(Clone)]
pub struct Tokens {
    /// The ID token: the router's bearer token.
    pub id_token: String,
    pub refresh_token: Option<String>,
    /// The ID token's `exp` (Unix seconds).
    pub expires_at: u64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_at", &self.expires_at)
            .field("refresh_token", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Seconds left before the ID token expires (0 when it has).
    pub fn remaining(&self) -> Duration {
        Duration::from_secs(self.expires_at.saturating_sub(unix_now()))
    }
}

/// The provider of a profile's `[sso]`.
#[derive(Clone)]
pub struct SsoClient {
    settings: SsoSettings,
    http: reqwest::Client,
}

impl SsoClient {
    pub fn new(settings: &SsoSettings) -> Result<Self> {
        settings
            .check()
            .map_err(|(field, e)| CoreError::Profile(format!("{field}: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| fail(settings, format!("HTTP client: {e}")))?;
        Ok(Self {
            settings: settings.clone(),
            http,
        })
    }

    fn fail(&self, message: impl Into<String>) -> CoreError {
        fail(&self.settings, message)
    }

    pub async fn discover(&self) -> Result<Discovery> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| self.fail(format!("{url}: {}", sallyport_ops::tls::explain(&e))))?;
        if !response.status().is_success() {
            return Err(self.fail(format!("{url}: status {}", response.status())));
        }
        let discovery: Discovery = response
            .json()
            .await
            .map_err(|e| self.fail(format!("{url}: not a discovery document: {e}")))?;
        if discovery.issuer != self.settings.issuer {
            return Err(self.fail(format!(
                "the discovery document names issuer {:?}",
                discovery.issuer
            )));
        }
        Ok(discovery)
    }

    /// A form POST; the provider's JSON answer, or its `error` as `Err(Ok(error))`.
    async fn post(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<std::result::Result<Value, (String, String)>> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.fail(format!("{url}: {}", sallyport_ops::tls::explain(&e))))?;
        let status = response.status();
        let value: Value = response
            .json()
            .await
            .map_err(|e| self.fail(format!("{url}: status {status}, not JSON: {e}")))?;
        if status.is_success() {
            return Ok(Ok(value));
        }
        let text = |k: &str| {
            value
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        Ok(Err((text("error"), text("error_description"))))
    }

    fn tokens(&self, value: Value, previous_refresh: Option<&str>) -> Result<Tokens> {
        let id_token = value
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                self.fail("the token response has no id_token (is `openid` in the scope?)")
            })?
            .to_owned();
        let expires_at =
            id_token_exp(&id_token).ok_or_else(|| self.fail("the ID token has no exp"))?;
        let refresh_token = value
            .get("refresh_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| previous_refresh.map(str::to_owned));
        Ok(Tokens {
            id_token,
            refresh_token,
            expires_at,
        })
    }

    /// The device authorization grant: `on_prompt` shows the URL and code; returns once the
    /// user has confirmed (or fails when they deny it or the code expires).
    pub async fn device_login(&self, on_prompt: impl FnOnce(&DevicePrompt)) -> Result<Tokens> {
        let discovery = self.discover().await?;
        let endpoint = discovery
            .device_authorization_endpoint
            .ok_or_else(|| self.fail("the provider offers no device authorization endpoint"))?;
        let client_id = self.settings.client_id.as_str();
        let answer = self
            .post(
                &endpoint,
                &[("client_id", client_id), ("scope", self.settings.scope())],
            )
            .await?
            .map_err(|(e, d)| self.fail(format!("device authorization refused: {e} {d}")))?;
        let prompt: DevicePrompt = serde_json::from_value(answer.clone())
            .map_err(|e| self.fail(format!("device authorization answer: {e}")))?;
        let device_code = answer
            .get("device_code")
            .and_then(Value::as_str)
            .ok_or_else(|| self.fail("device authorization answer without device_code"))?
            .to_owned();
        let mut interval = answer
            .get("interval")
            .and_then(Value::as_u64)
            .unwrap_or(5)
            .max(1);
        on_prompt(&prompt);
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(prompt.expires_in.min(1800));
        loop {
            tokio::time::sleep(Duration::from_secs(interval)).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(self.fail("the code expired before it was confirmed"));
            }
            let answer = self
                .post(
                    &discovery.token_endpoint,
                    &[
                        ("grant_type", DEVICE_GRANT),
                        ("device_code", &device_code),
                        ("client_id", client_id),
                    ],
                )
                .await?;
            match answer {
                Ok(value) => return self.tokens(value, None),
                Err((e, _)) if e == "authorization_pending" => {}
                Err((e, _)) if e == "slow_down" => interval += 5,
                Err((e, d)) => return Err(self.fail(format!("sign-in refused: {e} {d}"))),
            }
        }
    }

    /// The authorization code grant with PKCE, through the browser and a loopback redirect:
    /// `open` opens the authorization URL (the system browser); the provider redirects back
    /// to a one-request server on 127.0.0.1.
    pub async fn browser_login(&self, open: impl FnOnce(&str) -> Result<()>) -> Result<Tokens> {
        let discovery = self.discover().await?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let redirect_uri = format!(
            "http://127.0.0.1:{}/callback",
            listener.local_addr()?.port()
        );
        let verifier = random_urlsafe();
        let state = random_urlsafe();
        let challenge = {
            use sha2::Digest;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()))
        };
        let mut url = url::Url::parse(&discovery.authorization_endpoint)
            .map_err(|e| self.fail(format!("authorization_endpoint: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", self.settings.scope())
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            // A refresh token (offline_access) is granted only with consent asked.
            .append_pair("prompt", "consent");
        open(url.as_str())?;
        let code = tokio::time::timeout(BROWSER_TIMEOUT, receive_code(&listener, &state))
            .await
            .map_err(|_| self.fail("no answer from the browser within 5 minutes"))?
            .map_err(|e| self.fail(e))?;
        let value = self
            .post(
                &discovery.token_endpoint,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", &redirect_uri),
                    ("client_id", &self.settings.client_id),
                    ("code_verifier", &verifier),
                ],
            )
            .await?
            .map_err(|(e, d)| self.fail(format!("code exchange refused: {e} {d}")))?;
        self.tokens(value, None)
    }

    /// A fresh ID token for a refresh token (the provider may rotate the refresh token too).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens> {
        let discovery = self.discover().await?;
        let value = self
            .post(
                &discovery.token_endpoint,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                    ("client_id", &self.settings.client_id),
                ],
            )
            .await?
            .map_err(|(e, d)| self.fail(format!("refresh refused: {e} {d} (sign in again)")))?;
        self.tokens(value, Some(refresh_token))
    }
}

fn fail(settings: &SsoSettings, message: impl Into<String>) -> CoreError {
    CoreError::Sso {
        issuer: settings.issuer.clone(),
        message: message.into(),
    }
}

/// 32 random bytes, base64url: a PKCE verifier or a state.
fn random_urlsafe() -> String {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Serve the loopback redirect: the first `GET /callback` with our `state` gives the code
/// (or the provider's error). Other requests (a favicon) get 404; each request must arrive
/// within 10 s of its connection and fit in 8 KiB.
async fn receive_code(
    listener: &tokio::net::TcpListener,
    state: &str,
) -> std::result::Result<String, String> {
    loop {
        let (mut stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            std::io::Result::Ok(())
        })
        .await;
        if !matches!(read, Ok(Ok(()))) {
            continue;
        }
        let line = String::from_utf8_lossy(&head);
        let target = line
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("GET "))
            .and_then(|l| l.split(' ').next())
            .unwrap_or("");
        let Ok(url) = url::Url::parse(&format!("http://127.0.0.1{target}")) else {
            continue;
        };
        if url.path() != "/callback" {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            continue;
        }
        let param = |k: &str| {
            url.query_pairs()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.into_owned())
        };
        if param("state").as_deref() != Some(state) {
            let _ = respond(
                &mut stream,
                "This sign-in answer is not for Sallyport's request.",
            )
            .await;
            continue;
        }
        if let Some(error) = param("error") {
            let _ = respond(&mut stream, "Sign-in failed; see Sallyport.").await;
            return Err(format!(
                "the provider answered {error}: {}",
                param("error_description").unwrap_or_default()
            ));
        }
        let Some(code) = param("code") else {
            continue;
        };
        let _ = respond(
            &mut stream,
            "Signed in to Sallyport. You can close this window.",
        )
        .await;
        return Ok(code);
    }
}

async fn respond(stream: &mut tokio::net::TcpStream, text: &str) -> std::io::Result<()> {
    let body = format!("<!doctype html><title>Sallyport</title><p>{text}</p>");
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await
}

/// The `exp` of a JWT, unverified (the client only schedules its refresh by it; the router
/// verifies the token).
pub fn id_token_exp(token: &str) -> Option<u64> {
    let part = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Keep a sign-in: the refresh token and the current ID token in the OS keyring, under the
/// router's URL.
pub fn store(router_url: &str, tokens: &Tokens) -> Result<crate::secrets::Keyring> {
    if let Some(refresh) = &tokens.refresh_token {
        crate::secrets::store_secret(&refresh_account(router_url), refresh)?;
    }
    crate::secrets::store_secret(&id_account(router_url), &tokens.id_token)
}

fn refresh_account(router_url: &str) -> String {
    format!("{router_url}#sso-refresh")
}

fn id_account(router_url: &str) -> String {
    format!("{router_url}#sso-id")
}

/// The ID token for a profile with `[sso]`: the kept one while more than
/// [`REFRESH_MARGIN`] is left of it, else a refreshed one (kept in turn). `None` when nobody
/// has signed in for this router.
pub async fn current_tokens(profile: &crate::ClientProfile) -> Result<Option<Tokens>> {
    let Some(settings) = &profile.sso else {
        return Ok(None);
    };
    // Keyring calls run on a thread of their own (secrets.rs), off the runtime's.
    let id = crate::secrets::load_secret(&id_account(&profile.router_url))?;
    let refresh = crate::secrets::load_secret(&refresh_account(&profile.router_url))?;
    if let Some(id) = &id {
        if let Some(exp) = id_token_exp(id) {
            let tokens = Tokens {
                id_token: id.clone(),
                refresh_token: refresh.clone(),
                expires_at: exp,
            };
            if tokens.remaining() > REFRESH_MARGIN {
                return Ok(Some(tokens));
            }
        }
    }
    let Some(refresh) = refresh else {
        return Ok(None);
    };
    let tokens = SsoClient::new(settings)?.refresh(&refresh).await?;
    store(&profile.router_url, &tokens)?;
    Ok(Some(tokens))
}

/// Open `url` in the system browser (`xdg-open`; `$BROWSER` when set).
pub fn open_in_browser(url: &str) -> Result<()> {
    let program = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "xdg-open".into());
    std::process::Command::new(&program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|mut child| {
            // Reaped when it exits (xdg-open returns at once; a browser may stay).
            std::thread::spawn(move || child.wait());
        })
        .map_err(|e| CoreError::Sso {
            issuer: String::new(),
            message: format!(
                "cannot open the browser ({program}): {e}; open this URL yourself: {url}"
            ),
        })
}
