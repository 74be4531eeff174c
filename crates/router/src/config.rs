//! The router's TOML configuration: listen address, limits, gateway and client tokens.

use std::net::SocketAddr;
use std::path::Path;

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
    #[serde(default)]
    pub gateways: Vec<GatewayEntry>,
    #[serde(default)]
    pub clients: Vec<ClientEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayEntry {
    pub id: String,
    pub token: String,
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

impl RouterConfig {
    pub fn load(path: &Path) -> Result<Self, RouterError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RouterError::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| match e {
            RouterError::Config(msg) => RouterError::Config(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, RouterError> {
        let config: RouterConfig =
            toml::from_str(text).map_err(|e| RouterError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), RouterError> {
        let mut tokens = std::collections::HashSet::new();
        for g in &self.gateways {
            if g.id.is_empty() || !sallyport_protocol::valid_resource_name(&g.id) {
                return Err(RouterError::Config(format!(
                    "invalid gateway id {:?}",
                    g.id
                )));
            }
            if g.token.len() < 8 {
                return Err(RouterError::Config(format!(
                    "gateway {:?}: token must be at least 8 characters",
                    g.id
                )));
            }
            if !tokens.insert(g.token.clone()) {
                return Err(RouterError::Config(format!(
                    "gateway {:?}: token is used twice",
                    g.id
                )));
            }
        }
        for c in &self.clients {
            if c.token.len() < 8 {
                return Err(RouterError::Config(format!(
                    "client {:?}: token must be at least 8 characters",
                    c.name
                )));
            }
            if !tokens.insert(c.token.clone()) {
                return Err(RouterError::Config(format!(
                    "client {:?}: token is used twice",
                    c.name
                )));
            }
        }
        if self.default_timeout_ms == 0 || self.max_timeout_ms == 0 {
            return Err(RouterError::Config(
                "default_timeout_ms and max_timeout_ms must be at least 1".into(),
            ));
        }
        if self.max_body_bytes < 1024 || self.max_frame_bytes < 1024 {
            return Err(RouterError::Config(
                "max_body_bytes and max_frame_bytes must be at least 1024".into(),
            ));
        }
        Ok(())
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

    #[test]
    fn config_errors_name_the_problem() {
        let err = RouterConfig::parse("listen = 5").unwrap_err().to_string();
        assert!(err.contains("listen"), "{err}");
        let err = RouterConfig::parse("[[gateways]]\nid = \"g\"\ntoken = \"short\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 8"), "{err}");
        let err = RouterConfig::parse("bogus = 1").unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
        let ok = RouterConfig::parse(
            "[[gateways]]\nid = \"g\"\ntoken = \"gateway-token\"\n[[clients]]\nname = \"a\"\ntoken = \"client-token\"\nresources = [\"*\"]\n",
        )
        .unwrap();
        assert_eq!(ok.gateways.len(), 1);
    }
}
