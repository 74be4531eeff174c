//! The router's TOML configuration: listen address, limits, gateway and client tokens, and
//! each gateway's public key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sallyport_protocol::GatewayPublicKey;
use serde::Deserialize;

use crate::RouterError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Address to listen on, e.g. `127.0.0.1:8740`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Largest accepted HTTP body, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Largest accepted WebSocket message, in bytes.
    #[serde(default = "default_max_frame")]
    pub max_frame_bytes: usize,
    /// How long to wait for a gateway's reply when the client names no timeout.
    #[serde(default = "default_timeout_ms")]
    pub default_timeout_ms: u64,
    /// Upper bound on a client-requested timeout.
    #[serde(default = "default_max_timeout_ms")]
    pub max_timeout_ms: u64,
    /// WebSocket keepalive ping interval.
    #[serde(default = "default_ping_secs")]
    pub ping_interval_secs: u64,
    /// A new connection must send a complete request head within this many seconds, and so
    /// must a kept-alive one once the first byte of its next request has arrived.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_secs: u64,
    /// A kept-alive connection with no request for this many seconds is closed, and a request
    /// body of which no byte arrives for this long is answered 408 `request_timeout`.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// At most this many connections at once (HTTP and WebSocket). The router also keeps it
    /// below its open-file limit. When it is reached, the connection that has waited longest
    /// without sending a request is let go for the new one; if none is idle, the new one gets
    /// 503 `overloaded`.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// At most this many connections from one source IP address (429 `too_many_connections`).
    #[serde(default = "default_max_connections_per_source")]
    pub max_connections_per_source: usize,
    /// The certificate and key the router serves HTTPS and WSS with. Required unless
    /// `plain_http` is set.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Serve plain HTTP instead of TLS. Allowed only on a loopback `listen` address, and only
    /// without `[tls]`: tokens must never cross a network in clear.
    #[serde(default)]
    pub plain_http: bool,
    /// `redis://HOST:PORT[/DB]` (or `rediss://` for TLS) of the Redis this router shares with
    /// the other routers of its fleet (PROTOCOL.md, "Fleet"). Absent: this router is the only
    /// one.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// The CA certificates (PEM) that a `rediss://` Redis's certificate must chain to.
    /// Absent: the system's root certificates.
    #[serde(default)]
    pub redis_ca_file: Option<PathBuf>,
    /// This router's name in the fleet (letters, digits, `.`, `_`, `-`; unique per router).
    /// Absent: the host name and a random suffix, new at every start.
    #[serde(default)]
    pub router_id: Option<String>,
    /// The prefix of every Redis key and channel of the fleet (several fleets may share one
    /// Redis under different prefixes).
    #[serde(default = "default_fleet_prefix")]
    pub fleet_prefix: String,
    /// Append one JSON line per event here (PROTOCOL.md section 9). Absent: no audit trail.
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
    #[serde(default)]
    pub gateways: Vec<GatewayEntry>,
    #[serde(default)]
    pub clients: Vec<ClientEntry>,
    /// Launch reports (`[reports]`, see `reports.rs`).
    #[serde(default)]
    pub reports: crate::reports::ReportsConfig,
    /// Single sign-on: OpenID Connect tokens of this issuer stand for clients (sso.rs).
    #[serde(default)]
    pub sso: Option<crate::sso::SsoConfig>,
}

/// `[tls]`: PEM files, read at start and again on every reload (SIGHUP).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The router's certificate, then any intermediate certificates.
    pub cert_file: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl Default for RouterConfig {
    /// Every setting at its default: no gateways, no clients, and neither `[tls]` nor
    /// `plain_http`, which [`RouterConfig::validate`] requires one of.
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayEntry {
    pub id: String,
    pub token: String,
    /// The gateway's long-term public key (base64 of 32 bytes, as `sallyport-gateway keygen`
    /// prints it). The gateway proves it holds the secret on every connection, so a leaked
    /// token alone cannot take the gateway's place.
    pub public_key: String,
    /// Resources known before the gateway first connects (it replaces them when it does), so
    /// clients can list and launch them while it is offline and be told it is down.
    #[serde(default)]
    pub resources: Vec<sallyport_protocol::AnnouncedResource>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    pub name: String,
    pub token: String,
    /// Resource names or patterns (`*` matches any run of characters) this client may launch.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Roles beyond launching: `support` reads every user's launch reports.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `url` with its password (if any) replaced by `***`, for messages and logs.
pub(crate) fn redacted_redis_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) if credentials.contains(':') => {
            let user = credentials.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

fn default_fleet_prefix() -> String {
    "sallyport".into()
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8740".parse().expect("valid default address")
}
fn default_max_body() -> usize {
    sallyport_protocol::DEFAULT_MAX_BODY_BYTES
}
fn default_max_frame() -> usize {
    sallyport_protocol::DEFAULT_MAX_FRAME_BYTES
}
fn default_timeout_ms() -> u64 {
    10_000
}
fn default_max_timeout_ms() -> u64 {
    60_000
}
fn default_ping_secs() -> u64 {
    15
}
fn default_header_read_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    30
}
fn default_max_connections() -> usize {
    8192
}
fn default_max_connections_per_source() -> usize {
    256
}

impl RouterConfig {
    /// Read and check `path`. Relative file names in it are relative to its directory; the
    /// files it names (certificate, key, audit log) are checked too.
    pub fn load(path: &Path) -> Result<Self, RouterError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RouterError::Config(format!("cannot read {}: {e}", path.display())))?;
        let in_file = |e: RouterError| match e {
            RouterError::Config(msg) => RouterError::Config(format!("{}: {msg}", path.display())),
            other => other,
        };
        let mut config = Self::parse(&text).map_err(in_file)?;
        let tls = config
            .tls
            .iter_mut()
            .flat_map(|tls| [&mut tls.cert_file, &mut tls.key_file]);
        let files = tls
            .chain(config.audit_log.as_mut())
            .chain(config.reports.path.as_mut())
            .chain(config.redis_ca_file.as_mut());
        sallyport_ops::relative_to_config(path, files);
        config.check_files().map_err(in_file)?;
        Ok(config)
    }

    /// Check that the files the configuration names are usable: the certificate and key load
    /// and belong together, and the audit log's directory exists (the reports' store is
    /// opened, and named when it cannot be, as the router starts).
    pub fn check_files(&self) -> Result<(), RouterError> {
        if let Some(tls) = &self.tls {
            sallyport_ops::tls::ServerTls::load(&tls.cert_file, &tls.key_file)
                .map_err(|e| RouterError::Config(e.to_string()))?;
        }
        if let Some(audit) = &self.audit_log {
            sallyport_ops::jsonl::check_directory("audit_log", audit)
                .map_err(RouterError::Config)?;
        }
        if let Some(ca) = &self.redis_ca_file {
            sallyport_ops::tls::check_ca_file("redis_ca_file", ca)
                .map_err(|e| RouterError::Config(e.to_string()))?;
        }
        Ok(())
    }

    pub fn parse(text: &str) -> Result<Self, RouterError> {
        let config: RouterConfig = toml::from_str(text).map_err(|e| {
            RouterError::Config(sallyport_protocol::config_error_at(
                text,
                e.span(),
                e.message(),
            ))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Check every field; the message names the field (`gateways[1].public_key`, ...).
    /// This router's name in the fleet: `router_id`, or the host name with a random suffix.
    pub fn router_id(&self) -> String {
        self.router_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| fleet_name_ok(h))
                .unwrap_or_else(|| "router".into());
            format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
        })
    }

    pub fn validate(&self) -> Result<(), RouterError> {
        let bad = |field: String, why: String| Err(RouterError::Config(format!("{field}: {why}")));
        if let Some(url) = &self.redis_url {
            let shown = redacted_redis_url(url);
            if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                return bad(
                    "redis_url".into(),
                    format!(
                        "{shown:?} must start with redis:// or rediss:// (TLS; keep Redis on a \
                         private network either way)"
                    ),
                );
            }
            if url.contains('#') {
                return bad(
                    "redis_url".into(),
                    format!(
                        "{shown:?}: a fragment (such as #insecure) is not supported: Redis's \
                         certificate is always checked"
                    ),
                );
            }
        }
        if self.redis_ca_file.is_some()
            && !self
                .redis_url
                .as_deref()
                .is_some_and(|u| u.starts_with("rediss://"))
        {
            return bad(
                "redis_ca_file".into(),
                "is only for a rediss:// redis_url".into(),
            );
        }
        if let Some(id) = &self.router_id {
            if !fleet_name_ok(id) {
                return bad(
                    "router_id".into(),
                    format!("{id:?} must be 1-64 letters, digits, '.', '_' or '-'"),
                );
            }
        }
        if !fleet_name_ok(&self.fleet_prefix) {
            return bad(
                "fleet_prefix".into(),
                format!(
                    "{:?} must be 1-64 letters, digits, '.', '_' or '-'",
                    self.fleet_prefix
                ),
            );
        }
        if let Some(sso) = &self.sso {
            sso.validate().map_err(RouterError::Config)?;
        }
        let mut tokens = std::collections::HashSet::new();
        let mut ids = std::collections::HashSet::new();
        for (i, g) in self.gateways.iter().enumerate() {
            let at = format!("gateways[{i}]");
            if !sallyport_protocol::valid_resource_name(&g.id) {
                return bad(
                    format!("{at}.id"),
                    format!("{:?} {}", g.id, sallyport_protocol::RESOURCE_NAME_RULE),
                );
            }
            if !ids.insert(g.id.as_str()) {
                return bad(format!("{at}.id"), format!("{:?} is listed twice", g.id));
            }
            if g.token.len() < 8 {
                return bad(
                    format!("{at}.token"),
                    "must be at least 8 characters".into(),
                );
            }
            if !tokens.insert(g.token.as_str()) {
                return bad(format!("{at}.token"), "is used twice".into());
            }
            if let Err(e) = GatewayPublicKey::from_base64(&g.public_key) {
                return bad(
                    format!("{at}.public_key"),
                    format!("{e} (put the key `sallyport-gateway pubkey` prints here)"),
                );
            }
            for (j, r) in g.resources.iter().enumerate() {
                if !sallyport_protocol::valid_resource_name(&r.name) {
                    return bad(
                        format!("{at}.resources[{j}].name"),
                        format!("{:?} {}", r.name, sallyport_protocol::RESOURCE_NAME_RULE),
                    );
                }
                if !sallyport_protocol::RESOURCE_PROTOCOLS.contains(&r.protocol.as_str()) {
                    return bad(
                        format!("{at}.resources[{j}].protocol"),
                        format!(
                            "{:?} is not one of {}",
                            r.protocol,
                            sallyport_protocol::RESOURCE_PROTOCOLS.join(", ")
                        ),
                    );
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, c) in self.clients.iter().enumerate() {
            let at = format!("clients[{i}]");
            if c.name.trim().is_empty() {
                return bad(format!("{at}.name"), "must not be empty".into());
            }
            if !names.insert(c.name.as_str()) {
                return bad(
                    format!("{at}.name"),
                    format!("{:?} is listed twice", c.name),
                );
            }
            if c.token.len() < 8 {
                return bad(
                    format!("{at}.token"),
                    "must be at least 8 characters".into(),
                );
            }
            if !tokens.insert(c.token.as_str()) {
                return bad(format!("{at}.token"), "is used twice".into());
            }
            let roles = sallyport_protocol::report::ROLES;
            if let Some((j, role)) = c
                .roles
                .iter()
                .enumerate()
                .find(|(_, r)| !roles.contains(&r.as_str()))
            {
                return bad(
                    format!("{at}.roles[{j}]"),
                    format!("{role:?} is not a role (known: {})", roles.join(", ")),
                );
            }
        }
        self.reports.validate()?;
        let at_least = |field: &str, value: u64, min: u64| {
            if value < min {
                bad(field.into(), format!("must be at least {min}"))
            } else {
                Ok(())
            }
        };
        match (&self.tls, self.plain_http) {
            (Some(_), true) => {
                return bad(
                    "plain_http".into(),
                    "cannot be set together with [tls]: choose one".into(),
                )
            }
            (None, false) => {
                return bad(
                    "tls".into(),
                    "missing: set tls.cert_file and tls.key_file, or plain_http = true on a loopback listen address".into(),
                )
            }
            (None, true) if !self.listen.ip().is_loopback() => {
                return bad(
                    "plain_http".into(),
                    format!(
                        "is allowed only on a loopback listen address, not {} (serve TLS with [tls])",
                        self.listen
                    ),
                )
            }
            _ => {}
        }
        at_least("default_timeout_ms", self.default_timeout_ms, 1)?;
        at_least("max_timeout_ms", self.max_timeout_ms, 1)?;
        at_least("max_body_bytes", self.max_body_bytes as u64, 1024)?;
        at_least("max_frame_bytes", self.max_frame_bytes as u64, 1024)?;
        at_least("ping_interval_secs", self.ping_interval_secs, 1)?;
        at_least("header_read_timeout_secs", self.header_read_timeout_secs, 1)?;
        at_least("idle_timeout_secs", self.idle_timeout_secs, 1)?;
        at_least("max_connections", self.max_connections as u64, 1)?;
        at_least(
            "max_connections_per_source",
            self.max_connections_per_source as u64,
            1,
        )?;
        Ok(())
    }

    /// The configured public key of gateway `id`.
    pub(crate) fn gateway_key(&self, id: &str) -> Option<GatewayPublicKey> {
        let entry = self.gateways.iter().find(|g| g.id == id)?;
        GatewayPublicKey::from_base64(&entry.public_key).ok()
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// A router id or key prefix: safe inside a Redis key and a log line.
fn fleet_name_ok(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("demo-*", "demo-echo"));
        assert!(!pattern_matches("demo-*", "ssh-local"));
        assert!(pattern_matches("*-db", "orders-db"));
        assert!(pattern_matches("exact", "exact"));
        assert!(!pattern_matches("exact", "exactly"));
    }

    const KEY: &str = "pOCSkrZRwni5dyxWn1+puxPZBrRqtoyd+dwrRAn4ogk=";

    /// One `[[gateways]]` entry.
    fn entry(extra: &str) -> String {
        format!(
            "[[gateways]]\nid = \"g\"\ntoken = \"gateway-token\"\npublic_key = \"{KEY}\"\n{extra}"
        )
    }

    /// A configuration serving plain HTTP on loopback with one gateway.
    fn gateway(extra: &str) -> String {
        format!("plain_http = true\n{}", entry(extra))
    }

    fn error_of(text: &str) -> String {
        RouterConfig::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn config_errors_name_the_problem() {
        assert!(error_of("listen = 5").contains("listen"));
        let err = error_of(&gateway("").replace("gateway-token", "short"));
        assert!(
            err.contains("gateways[0].token") && err.contains("at least 8"),
            "{err}"
        );
        assert!(error_of("bogus = 1").contains("bogus"));
        let ok = RouterConfig::parse(&format!(
            "{}[[clients]]\nname = \"a\"\ntoken = \"client-token\"\nresources = [\"*\"]\n",
            gateway("")
        ))
        .unwrap();
        assert_eq!(ok.gateways.len(), 1);
        assert_eq!(ok.gateway_key("g").unwrap().to_base64(), KEY);
    }

    #[test]
    fn every_gateway_field_is_checked() {
        let err = error_of(&gateway("").replace(&format!("public_key = \"{KEY}\"\n"), ""));
        assert!(err.contains("public_key"), "missing key: {err}");
        let err = error_of(&gateway("").replace(KEY, "not-a-key"));
        assert!(err.contains("gateways[0].public_key"), "{err}");
        let err = error_of(&gateway("").replace("id = \"g\"", "id = \"../x\""));
        assert!(
            err.contains("gateways[0].id") && err.contains("../x"),
            "{err}"
        );
        let err = error_of(&gateway("").replace("id = \"g\"", "id = \"\""));
        assert!(err.contains("gateways[0].id"), "{err}");
        let err = error_of(&gateway(
            "resources = [{ name = \"../x\", protocol = \"tcp\" }]\n",
        ));
        assert!(err.contains("gateways[0].resources[0].name"), "{err}");
        let err = error_of(&gateway(
            "resources = [{ name = \"x\", protocol = \"gopher\" }]\n",
        ));
        assert!(err.contains("gateways[0].resources[0].protocol"), "{err}");
        let twice = format!(
            "{}{}",
            gateway(""),
            entry("").replace("gateway-token", "other-token")
        );
        assert!(error_of(&twice).contains("listed twice"));
        let err = error_of(&format!("idle_timeout_secs = 0\n{}", gateway("")));
        assert!(err.contains("idle_timeout_secs"), "{err}");
    }

    #[test]
    fn roles_and_reports_are_checked() {
        let client = "plain_http = true\n[[clients]]\nname = \"a\"\ntoken = \"client-token\"\n";
        let err = error_of(&format!("{client}roles = [\"support\", \"admin\"]\n"));
        assert!(
            err.contains("clients[0].roles[1]") && err.contains("admin"),
            "{err}"
        );
        let ok = RouterConfig::parse(&format!("{client}roles = [\"support\"]\n")).unwrap();
        assert_eq!(ok.clients[0].roles, ["support"]);
        assert!(!ok.reports.enabled, "reports are off unless configured");
        let err = error_of("plain_http = true\n[reports]\nenabled = true\nmax_reports = 0\n");
        assert!(err.contains("reports.max_reports"), "{err}");
        let err = error_of("plain_http = true\n[reports]\nkeep = true\n");
        assert!(err.contains("keep"), "{err}");
    }

    #[test]
    fn plain_http_only_when_asked_for_on_loopback() {
        let err = error_of("");
        assert!(err.contains("tls: missing"), "{err}");
        let err = error_of("listen = \"0.0.0.0:8740\"\nplain_http = true\n");
        assert!(
            err.contains("plain_http") && err.contains("loopback") && err.contains("0.0.0.0:8740"),
            "{err}"
        );
        let err =
            error_of("plain_http = true\n[tls]\ncert_file = \"a.crt\"\nkey_file = \"a.key\"\n");
        assert!(err.contains("plain_http") && err.contains("[tls]"), "{err}");
        assert!(RouterConfig::parse("listen = \"[::1]:1\"\nplain_http = true\n").is_ok());
        let tls = RouterConfig::parse(
            "listen = \"0.0.0.0:443\"\n[tls]\ncert_file = \"a.crt\"\nkey_file = \"a.key\"\n",
        )
        .unwrap();
        assert_eq!(tls.tls.unwrap().cert_file, PathBuf::from("a.crt"));
    }

    #[test]
    fn load_names_the_file_a_setting_points_to() {
        let dir =
            std::env::temp_dir().join(format!("sallyport-router-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("router.toml");
        std::fs::write(
            &path,
            "[tls]\ncert_file = \"missing.crt\"\nkey_file = \"missing.key\"\n",
        )
        .unwrap();
        let err = RouterConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("router.toml: tls.cert_file")
                && err.contains(&dir.join("missing.crt").display().to_string()),
            "{err}"
        );
        std::fs::write(
            &path,
            "plain_http = true\naudit_log = \"nowhere/audit.jsonl\"\n",
        )
        .unwrap();
        let err = RouterConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("router.toml: audit_log") && err.contains("nowhere"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_fleet_settings_are_checked() {
        let parse = |extra: &str| RouterConfig::parse(&format!("plain_http = true\n{extra}"));
        let ok = parse("redis_url = \"redis://127.0.0.1:6379\"\nrouter_id = \"r-1\"").unwrap();
        assert_eq!(ok.router_id(), "r-1");
        assert_eq!(ok.fleet_prefix, "sallyport");
        let err = parse("redis_url = \"http://127.0.0.1:6379\"").unwrap_err();
        assert!(err.to_string().contains("redis_url"), "{err}");
        assert!(parse("redis_url = \"rediss://127.0.0.1:6380\"").is_ok());
        let err = parse("redis_url = \"rediss://:s3cret@127.0.0.1:6380/#insecure\"").unwrap_err();
        assert!(
            err.to_string().contains("#insecure") && !err.to_string().contains("s3cret"),
            "{err}"
        );
        let err = parse("redis_url = \"http://:s3cret@127.0.0.1:6379\"").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let err = parse("redis_url = \"redis://127.0.0.1:6379\"\nredis_ca_file = \"ca.pem\"")
            .unwrap_err();
        assert!(err.to_string().contains("redis_ca_file"), "{err}");
        let err = parse("router_id = \"a b\"").unwrap_err();
        assert!(err.to_string().contains("router_id"), "{err}");
        let err = parse("fleet_prefix = \"x:y\"").unwrap_err();
        assert!(err.to_string().contains("fleet_prefix"), "{err}");
        // Without a router_id, each start names itself anew.
        let unnamed = parse("").unwrap();
        assert_ne!(unnamed.router_id(), unnamed.router_id());
    }
}
