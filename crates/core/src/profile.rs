//! The client profile (router, token source, pinned gateway keys) and sticky local ports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sallyport_protocol::GatewayPublicKey;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// `profile.toml`: where the router is and which gateway keys to trust.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientProfile {
    /// `https://HOST[:PORT]`, or `http://` for a router on loopback.
    pub router_url: String,
    /// More routers of the same fleet, tried in turn when the one in use cannot be reached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub router_urls: Vec<String>,
    /// PEM file of the CA(s) to trust for the router's certificate instead of the system's
    /// roots (the lab writes its own and names it here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The router token, for scripts and the lab. Otherwise `sallyport login` keeps it in the
    /// OS keyring, or `SALLYPORT_TOKEN` provides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Gateway id → public key (base64), pinned like SSH known hosts.
    #[serde(default)]
    pub gateways: BTreeMap<String, String>,
    /// Local UDP addresses for WebRTC host candidates (default: every interface and loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webrtc_udp: Option<Vec<String>>,
    /// STUN/TURN URLs, for gateways behind NAT.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ice_servers: Vec<sallyport_protocol::IceServer>,
    /// Use relayed candidates only: every tube goes through a TURN server of `ice_servers`
    /// (for networks that allow nothing else, or to test the relay).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub relay_only: bool,
    /// Written by `sallyport lab` for its throwaway router; the app starts its own lab instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lab: bool,
    /// Send the router a report of each launch (checkpoint names and times, the outcome's
    /// code; docs/PROTOCOL.md section 3.2). `launch_reports = false` keeps them on this machine.
    #[serde(default = "yes", skip_serializing_if = "Clone::clone")]
    pub launch_reports: bool,
    /// Single sign-on: the OpenID provider whose tokens the router accepts
    /// (`sallyport login --sso`, or Sign in in the app's Settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso: Option<SsoSettings>,
}

/// The OpenID Connect provider users sign in with, and this application's client id there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
pub struct SsoSettings {
    /// The issuer URL (`https://...`; its `/.well-known/openid-configuration` is read).
    pub issuer: String,
    /// The client id registered at the provider for Sallyport (a public client).
    pub client_id: String,
    /// Scopes asked for (default `openid profile offline_access`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub scope: Option<String>,
}

impl SsoSettings {
    pub const DEFAULT_SCOPE: &'static str = "openid profile offline_access";

    pub fn scope(&self) -> &str {
        self.scope.as_deref().unwrap_or(Self::DEFAULT_SCOPE)
    }

    /// `sso.issuer` and `sso.client_id` checked; the error names the field.
    pub fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        sallyport_ops::tls::check_router_url(&self.issuer)
            .map_err(|e| ("sso.issuer", format!("{:?}: {e}", self.issuer)))?;
        if self.client_id.trim().is_empty() {
            return Err(("sso.client_id", "is empty".into()));
        }
        if self.scope().split_whitespace().all(|s| s != "openid") {
            return Err(("sso.scope", "must include `openid`".into()));
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}

impl ClientProfile {
    /// A profile for `router_url` with nothing else set.
    pub fn new(router_url: &str) -> Self {
        Self {
            router_url: router_url.to_owned(),
            router_urls: Vec::new(),
            ca_file: None,
            token: None,
            gateways: Default::default(),
            webrtc_udp: None,
            ice_servers: Vec::new(),
            relay_only: false,
            lab: false,
            launch_reports: true,
            sso: None,
        }
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CoreError::Profile(format!(
                "cannot read {}: {e} (run `sallyport lab` for a local one)",
                path.display()
            ))
        })?;
        let mut profile: ClientProfile = toml::from_str(&text)
            .map_err(|e| CoreError::Profile(format!("{}: {e}", path.display())))?;
        // A relative ca_file is relative to the profile's directory.
        sallyport_ops::relative_to_config(path, profile.ca_file.as_mut());
        profile.validate().map_err(|e| match e {
            CoreError::Profile(m) => CoreError::Profile(format!("{}: {m}", path.display())),
            other => other,
        })?;
        Ok(profile)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = toml::to_string_pretty(self)
            .map_err(|e| CoreError::Profile(format!("cannot write the profile: {e}")))?;
        write_private(path, &text)
    }

    pub fn validate(&self) -> Result<()> {
        sallyport_ops::tls::check_router_url(&self.router_url)
            .map_err(|e| CoreError::Profile(format!("router_url {:?}: {e}", self.router_url)))?;
        for (i, url) in self.router_urls.iter().enumerate() {
            sallyport_ops::tls::check_router_url(url)
                .map_err(|e| CoreError::Profile(format!("router_urls[{i}] {url:?}: {e}")))?;
        }
        if let Some(ca) = &self.ca_file {
            sallyport_ops::tls::check_ca_file("ca_file", ca)
                .map_err(|e| CoreError::Profile(e.to_string()))?;
        }
        for (id, key) in &self.gateways {
            check_pin(id, key).map_err(CoreError::Profile)?;
        }
        if let Some(sso) = &self.sso {
            sso.check()
                .map_err(|(field, e)| CoreError::Profile(format!("{field}: {e}")))?;
        }
        for (i, addr) in self.webrtc_udp.iter().flatten().enumerate() {
            sallyport_protocol::check_udp_bind(addr)
                .map_err(|e| CoreError::Profile(format!("webrtc_udp[{i}]: {e}")))?;
        }
        for (i, server) in self.ice_servers.iter().enumerate() {
            server
                .check()
                .map_err(|e| CoreError::Profile(format!("ice_servers[{i}]: {e}")))?;
        }
        Ok(())
    }

    /// The WebRTC settings this profile asks for.
    pub fn tube_config(&self) -> sallyport_tube::TubeConfig {
        sallyport_tube::TubeConfig {
            udp_addrs: self
                .webrtc_udp
                .clone()
                .unwrap_or_else(|| vec!["0.0.0.0:0".into(), "127.0.0.1:0".into()]),
            ice_servers: self.ice_servers.clone(),
            relay_only: self.relay_only,
            ..sallyport_tube::TubeConfig::default()
        }
    }

    pub fn gateway_key(&self, gateway: &str) -> Result<GatewayPublicKey> {
        self.trusted_gateway_key(gateway, None)
    }

    /// The key to seal offers to `gateway`: the pinned one, and only that. `listed` is the key
    /// the router lists for it (display only): when nothing is pinned its fingerprint goes
    /// into the `unpinned_gateway` error, for the user to compare and accept (TOFU, like
    /// SSH); when it differs from the pinned key the launch is refused (`gateway_key_changed`).
    pub fn trusted_gateway_key(
        &self,
        gateway: &str,
        listed: Option<&str>,
    ) -> Result<GatewayPublicKey> {
        let listed = listed.and_then(|k| GatewayPublicKey::from_base64(k).ok());
        let Some(text) = self.gateways.get(gateway) else {
            return Err(CoreError::UnpinnedGateway {
                gateway: gateway.to_owned(),
                offered: listed.map(|k| k.to_base64()),
            });
        };
        let pinned = GatewayPublicKey::from_base64(text)
            .map_err(|e| CoreError::Profile(format!("gateways.{gateway}: {e}")))?;
        if let Some(listed) = listed {
            if listed.to_base64() != pinned.to_base64() {
                return Err(CoreError::GatewayKeyChanged {
                    gateway: gateway.to_owned(),
                    pinned: pinned.fingerprint(),
                    listed: listed.fingerprint(),
                });
            }
        }
        Ok(pinned)
    }
}

/// A pin as the profile holds it: a valid gateway id and base64 of a 32-byte key. The error
/// names the field (`gateways.ID`).
pub fn check_pin(gateway: &str, key: &str) -> std::result::Result<GatewayPublicKey, String> {
    if !sallyport_protocol::valid_resource_name(gateway) {
        return Err(format!(
            "gateways.{gateway}: the gateway id {}",
            sallyport_protocol::RESOURCE_NAME_RULE
        ));
    }
    GatewayPublicKey::from_base64(key).map_err(|e| format!("gateways.{gateway}: {e}"))
}

/// `$SALLYPORT_HOME`, else `$XDG_CONFIG_HOME/sallyport`, else `~/.config/sallyport`.
pub fn home_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SALLYPORT_HOME") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME") {
        return PathBuf::from(dir).join("sallyport");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".config").join("sallyport")
}

pub fn default_profile_path() -> PathBuf {
    home_dir().join("profile.toml")
}

/// Local ports remembered per resource, so a resource keeps its port across launches.
#[derive(Debug, Clone)]
pub struct StickyPorts {
    path: PathBuf,
}

impl StickyPorts {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn in_home() -> Self {
        Self::new(home_dir().join("ports.json"))
    }

    fn read(&self) -> BTreeMap<String, u16> {
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn get(&self, resource: &str) -> Option<u16> {
        self.read().get(resource).copied()
    }

    /// Forget the resource's port: its next launch picks a free one (and remembers that).
    pub fn forget(&self, resource: &str) -> Result<()> {
        let mut ports = self.read();
        if ports.remove(resource).is_none() {
            return Ok(());
        }
        let text = serde_json::to_string_pretty(&ports).expect("a map of ports serializes");
        write_private(&self.path, &text)
    }

    pub fn remember(&self, resource: &str, port: u16) -> Result<()> {
        let mut ports = self.read();
        if ports.get(resource) == Some(&port) {
            return Ok(());
        }
        ports.insert(resource.to_owned(), port);
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string_pretty(&ports).expect("a map of ports serializes");
        write_private(&self.path, &text)
    }
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_errors_name_the_field() {
        let bad: ClientProfile = toml::from_str(
            "router_url = \"http://127.0.0.1:1\"\n[gateways]\nlab = \"not-a-key\"\n",
        )
        .unwrap();
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("gateways.lab"), "{err}");
        let bad: ClientProfile = toml::from_str("router_url = \"ftp://x\"\n").unwrap();
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("router_url"));
        let bad: ClientProfile =
            toml::from_str("router_url = \"http://router.example\"\n").unwrap();
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("router_url") && err.contains("https"), "{err}");
        let bad: ClientProfile = toml::from_str(
            "router_url = \"https://router.example\"\nca_file = \"/nonexistent/ca.pem\"\n",
        )
        .unwrap();
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("ca_file") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn sticky_ports_round_trip() {
        let dir = std::env::temp_dir().join(format!("sallyport-ports-{}", std::process::id()));
        let ports = StickyPorts::new(dir.join("ports.json"));
        assert_eq!(ports.get("db"), None);
        ports.remember("db", 15432).unwrap();
        assert_eq!(ports.get("db"), Some(15432));
        ports.forget("db").unwrap();
        assert_eq!(ports.get("db"), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
