//! The gateway's TOML configuration.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::GatewayError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Base URL of the router: `https://host:port`, or `http://` for a router on loopback.
    pub router_url: String,
    /// PEM file of the CA(s) to trust for the router's certificate, instead of the system's
    /// roots. Relative paths are relative to the configuration file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Append one JSON line per connection to a target (and per tube connected and closed)
    /// here. Relative paths are relative to the configuration file.
    #[serde(default)]
    pub connection_log: Option<PathBuf>,
    /// This gateway's id, as the router's configuration names it.
    pub gateway_id: String,
    /// The gateway token the router expects for `gateway_id`.
    pub token: String,
    /// File holding the gateway's long-term secret key (base64); `sallyport-gateway keygen`
    /// writes one. Relative paths are relative to the configuration file.
    pub key_file: PathBuf,
    /// At most this many tubes (conversations) at once.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// At most this many TCP connections per tube.
    #[serde(default = "default_max_connections")]
    pub max_connections_per_session: usize,
    /// How long to wait for a target to accept a connection.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Local UDP addresses for WebRTC host candidates.
    #[serde(default = "default_udp")]
    pub webrtc_udp: Vec<String>,
    /// STUN/TURN servers, if the gateway sits behind NAT.
    #[serde(default)]
    pub ice_servers: Vec<sallyport_protocol::IceServer>,
    /// `"LOW-HIGH"`: bind the tubes' UDP sockets within these ports (for a firewall that opens
    /// only them) instead of any free port.
    #[serde(default)]
    pub webrtc_ports: Option<String>,
    /// The address a 1:1 NAT in front of the gateway maps its own to: announced instead of the
    /// bound addresses (with `webrtc_ports`, the NAT forwards the same port numbers).
    #[serde(default)]
    pub webrtc_advertise: Option<std::net::IpAddr>,
    /// Largest UDP payload to send; by default it comes from the path (see PROTOCOL.md).
    #[serde(default)]
    pub webrtc_max_datagram: Option<usize>,
    #[serde(default)]
    pub resources: Vec<ResourceConfig>,
}

/// A resource this gateway serves. Its target never leaves the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    pub name: String,
    /// `ssh`, `postgres`, `mysql`, `kubernetes`, `rdp` or `tcp`: tells the client which native
    /// client to start.
    pub protocol: String,
    /// `host:port` the gateway dials for each connection.
    pub target: String,
}

/// `"LOW-HIGH"` → `(LOW, HIGH)`.
fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("webrtc_ports {text:?} must be LOW-HIGH, such as \"40000-40099\"");
    let (low, high) = text.split_once('-').ok_or_else(bad)?;
    let low: u16 = low.trim().parse().map_err(|_| bad())?;
    let high: u16 = high.trim().parse().map_err(|_| bad())?;
    if low == 0 || low > high {
        return Err(bad());
    }
    Ok((low, high))
}

fn default_max_sessions() -> usize {
    64
}
fn default_max_connections() -> usize {
    64
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_udp() -> Vec<String> {
    vec!["0.0.0.0:0".into()]
}

pub const PROTOCOLS: &[&str] = sallyport_protocol::RESOURCE_PROTOCOLS;

impl GatewayConfig {
    pub fn load(path: &Path) -> Result<Self, GatewayError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| GatewayError::Config(format!("cannot read {}: {e}", path.display())))?;
        let in_file = |e: String| GatewayError::Config(format!("{}: {e}", path.display()));
        let mut config = Self::parse(&text).map_err(in_file)?;
        let files = [Some(&mut config.key_file), config.ca_file.as_mut()];
        sallyport_ops::relative_to_config(
            path,
            files
                .into_iter()
                .flatten()
                .chain(config.connection_log.as_mut()),
        );
        config.check_files().map_err(in_file)?;
        Ok(config)
    }

    /// Check the files the configuration names (other than the key, which `run` reads): the CA
    /// file holds certificates, the connection log's directory exists.
    pub fn check_files(&self) -> Result<(), String> {
        if let Some(ca) = &self.ca_file {
            sallyport_ops::tls::check_ca_file("ca_file", ca).map_err(|e| e.to_string())?;
        }
        if let Some(log) = &self.connection_log {
            sallyport_ops::jsonl::check_directory("connection_log", log)?;
        }
        Ok(())
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let config: GatewayConfig = toml::from_str(text)
            .map_err(|e| sallyport_protocol::config_error_at(text, e.span(), e.message()))?;
        config.validate()?;
        Ok(config)
    }

    /// Check every field; the message names the field (`resources[1].target`, ...).
    pub fn validate(&self) -> Result<(), String> {
        sallyport_ops::tls::check_router_url(&self.router_url)
            .map_err(|e| format!("router_url {:?}: {e}", self.router_url))?;
        if !sallyport_protocol::valid_resource_name(&self.gateway_id) {
            return Err(format!(
                "gateway_id {:?} {}",
                self.gateway_id,
                sallyport_protocol::RESOURCE_NAME_RULE
            ));
        }
        if self.token.len() < 8 {
            return Err("token must be at least 8 characters".into());
        }
        if self.max_sessions == 0 {
            return Err("max_sessions must be at least 1".into());
        }
        if self.max_connections_per_session == 0 {
            return Err("max_connections_per_session must be at least 1".into());
        }
        if self.connect_timeout_ms == 0 {
            return Err("connect_timeout_ms must be at least 1".into());
        }
        if self.webrtc_udp.is_empty() {
            return Err("webrtc_udp must name at least one local address".into());
        }
        for (i, addr) in self.webrtc_udp.iter().enumerate() {
            sallyport_protocol::check_udp_bind(addr)
                .map_err(|e| format!("webrtc_udp[{i}]: {e}"))?;
        }
        for (i, server) in self.ice_servers.iter().enumerate() {
            server
                .check()
                .map_err(|e| format!("ice_servers[{i}]: {e}"))?;
        }
        self.tube_config()?;
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.resources.iter().enumerate() {
            if !sallyport_protocol::valid_resource_name(&r.name) {
                return Err(format!(
                    "resources[{i}].name {:?} {}",
                    r.name,
                    sallyport_protocol::RESOURCE_NAME_RULE
                ));
            }
            if !names.insert(&r.name) {
                return Err(format!("resources[{i}].name {:?} is listed twice", r.name));
            }
            if !PROTOCOLS.contains(&r.protocol.as_str()) {
                return Err(format!(
                    "resources[{i}].protocol {:?} is not one of {}",
                    r.protocol,
                    PROTOCOLS.join(", ")
                ));
            }
            let port_ok = r
                .target
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(format!(
                    "resources[{i}].target {:?} must be host:port",
                    r.target
                ));
            }
        }
        Ok(())
    }

    /// The tube settings this configuration asks for.
    pub fn tube_config(&self) -> Result<sallyport_tube::TubeConfig, String> {
        let config = sallyport_tube::TubeConfig {
            udp_addrs: self.webrtc_udp.clone(),
            ice_servers: self.ice_servers.clone(),
            udp_port_range: self
                .webrtc_ports
                .as_deref()
                .map(parse_port_range)
                .transpose()?,
            advertise_ip: self.webrtc_advertise,
            max_datagram: self.webrtc_max_datagram,
            max_connections: self.max_connections_per_session,
            ..sallyport_tube::TubeConfig::default()
        };
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    pub fn resource(&self, name: &str) -> Option<&ResourceConfig> {
        self.resources.iter().find(|r| r.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
router_url = "http://127.0.0.1:8740"
gateway_id = "lab"
token = "gateway-token"
key_file = "gw.key"
[[resources]]
name = "echo"
protocol = "tcp"
target = "127.0.0.1:7"
"#;

    #[test]
    fn parses_and_rejects_clearly() {
        assert_eq!(GatewayConfig::parse(GOOD).unwrap().resources.len(), 1);
        let err = GatewayConfig::parse(&GOOD.replace("127.0.0.1:7", "nowhere")).unwrap_err();
        assert!(err.contains("host:port"), "{err}");
        let err = GatewayConfig::parse(&GOOD.replace("\"tcp\"", "\"gopher\"")).unwrap_err();
        assert!(err.contains("gopher"), "{err}");
        let err = GatewayConfig::parse(&GOOD.replace("http://", "ftp://")).unwrap_err();
        assert!(err.contains("router_url"), "{err}");
        let err = GatewayConfig::parse(&GOOD.replace("http://127.0.0.1", "http://router.example"))
            .unwrap_err();
        assert!(err.contains("router_url") && err.contains("https"), "{err}");
        assert!(
            GatewayConfig::parse(&GOOD.replace("http://127.0.0.1", "https://router.example"))
                .is_ok()
        );
        let err = GatewayConfig::parse(&format!("webrtc_udp = [\"not-an-address\"]\n{GOOD}"))
            .unwrap_err();
        assert!(
            err.contains("webrtc_udp") && err.contains("not-an-address"),
            "{err}"
        );
        let err = GatewayConfig::parse(&format!("webrtc_ports = \"9-1\"\n{GOOD}")).unwrap_err();
        assert!(err.contains("webrtc_ports"), "{err}");
        let ok = GatewayConfig::parse(&format!(
            "webrtc_ports = \"40000-40099\"\nwebrtc_advertise = \"203.0.113.7\"\n{GOOD}"
        ))
        .unwrap();
        let tube = ok.tube_config().unwrap();
        assert_eq!(tube.udp_port_range, Some((40000, 40099)));
        assert_eq!(tube.advertise_ip, Some("203.0.113.7".parse().unwrap()));
    }

    #[test]
    fn every_field_is_checked_at_start() {
        for (bad, field) in [
            ("gateway_id = \"../x\"", "gateway_id"),
            ("gateway_id = \"\"", "gateway_id"),
            ("gateway_id = \"..\"", "gateway_id"),
        ] {
            let err = GatewayConfig::parse(&GOOD.replace("gateway_id = \"lab\"", bad)).unwrap_err();
            assert!(err.contains(field), "{bad}: {err}");
        }
        let udp = GOOD.replace(
            "[[resources]]",
            "webrtc_udp = [\"0.0.0.0:0\", \"not-an-address\"]\n[[resources]]",
        );
        let err = GatewayConfig::parse(&udp).unwrap_err();
        assert!(
            err.contains("webrtc_udp[1]") && err.contains("not-an-address"),
            "{err}"
        );
        let ice = GOOD.replace(
            "[[resources]]",
            "ice_servers = [\"stun.example.org\"]\n[[resources]]",
        );
        assert!(GatewayConfig::parse(&ice)
            .unwrap_err()
            .contains("ice_servers[0]"));
        let name = GOOD.replace("name = \"echo\"", "name = \"../x\"");
        assert!(GatewayConfig::parse(&name)
            .unwrap_err()
            .contains("resources[0].name"));
        let token = GOOD.replace("gateway-token", "short");
        assert!(GatewayConfig::parse(&token).unwrap_err().contains("token"));
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("sallyport-gw-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gateway.toml");
        std::fs::write(
            &path,
            GOOD.replace("gateway_id = \"lab\"", "gateway_id = \"../x\""),
        )
        .unwrap();
        let err = GatewayConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("gateway.toml") && err.contains("gateway_id"),
            "{err}"
        );
        std::fs::write(&path, format!("ca_file = \"no-such-ca.pem\"\n{GOOD}")).unwrap();
        let err = GatewayConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("gateway.toml: ca_file")
                && err.contains(&dir.join("no-such-ca.pem").display().to_string()),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
