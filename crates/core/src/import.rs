//! Profiles an administrator distributes (`sallyport profile import FILE`, the app's Settings):
//! the router URL, its CA, the OpenID provider and the pinned gateway keys, validated field by
//! field before anything is written.
//!
//! ```toml
//! router_url = "https://router.example.com"
//! ca = """
//! -----BEGIN CERTIFICATE-----
//! ...
//! -----END CERTIFICATE-----
//! """                        # or ca_file = "ca.pem", relative to the imported file
//! [sso]
//! issuer = "https://login.example.com"
//! client_id = "sallyport"
//! [gateways]
//! dc1 = "BASE64-PUBLIC-KEY"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::profile::{check_pin, ClientProfile, SsoSettings};

/// A distributed profile. No token: a profile is handed to many users, a token to one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Distributed {
    router_url: String,
    /// The router's CA as PEM text.
    #[serde(default)]
    ca: Option<String>,
    /// Or a PEM file, relative to the imported file.
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    sso: Option<SsoSettings>,
    #[serde(default)]
    gateways: BTreeMap<String, String>,
    #[serde(default)]
    ice_servers: Vec<sallyport_protocol::IceServer>,
    #[serde(default)]
    relay_only: bool,
}

/// A pinned gateway as Settings lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ts_rs::TS)]
pub struct PinnedGateway {
    pub gateway: String,
    /// The public key, base64.
    pub key: String,
    /// `SHA256:` and the unpadded base64 of the key's SHA-256, as SSH prints fingerprints.
    pub fingerprint: String,
}

impl PinnedGateway {
    pub fn list(profile: &ClientProfile) -> Vec<PinnedGateway> {
        profile
            .gateways
            .iter()
            .filter_map(|(gateway, key)| {
                let parsed = sallyport_protocol::GatewayPublicKey::from_base64(key).ok()?;
                Some(PinnedGateway {
                    gateway: gateway.clone(),
                    key: parsed.to_base64(),
                    fingerprint: parsed.fingerprint(),
                })
            })
            .collect()
    }
}

/// Where the imported profile's CA is kept: beside the profile.
pub const IMPORTED_CA: &str = "ca.pem";

/// Read, check and merge a distributed profile into the profile at `profile_path` (created
/// when missing; a lab profile is replaced). `origin` names the file in errors, and relative
/// paths in it are relative to `origin`'s directory. Pins of the same router that the
/// import does not mention are kept; the import's own pins win. The CA is copied beside the
/// profile, so the downloaded file may go.
pub fn import_profile(text: &str, origin: &Path, profile_path: &Path) -> Result<ClientProfile> {
    let distributed = read(text, origin)?;
    let file = origin.display().to_string();
    let fail = |message: String| CoreError::ProfileImport {
        file: file.clone(),
        message,
    };
    let ca_pem = match (&distributed.ca, &distributed.ca_file) {
        (Some(_), Some(_)) => return Err(fail("ca and ca_file: give one, not both".into())),
        (Some(pem), None) => Some((pem.clone(), "ca")),
        (None, Some(path)) => {
            let path = match origin.parent() {
                Some(dir) if path.is_relative() => dir.join(path),
                _ => path.clone(),
            };
            let pem = std::fs::read_to_string(&path)
                .map_err(|e| fail(format!("ca_file {}: cannot read: {e}", path.display())))?;
            Some((pem, "ca_file"))
        }
        (None, None) => None,
    };
    let dir = profile_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let ca_file = match ca_pem {
        Some((pem, field)) => {
            // Checked as a file in place, then moved where the profile names it.
            let staged = dir.join(format!("{IMPORTED_CA}.import"));
            std::fs::write(&staged, pem.as_bytes())?;
            if let Err(e) = sallyport_ops::tls::check_ca_file(field, &staged) {
                let _ = std::fs::remove_file(&staged);
                return Err(fail(e.to_string()));
            }
            let target = dir.join(IMPORTED_CA);
            std::fs::rename(&staged, &target)?;
            Some(target)
        }
        None => None,
    };
    let mut profile = ClientProfile::load(profile_path)
        .ok()
        .filter(|p| !p.lab && p.router_url == distributed.router_url)
        .unwrap_or_else(|| ClientProfile::new(&distributed.router_url));
    profile.ca_file = ca_file;
    profile.sso = distributed.sso;
    profile.ice_servers = distributed.ice_servers;
    profile.relay_only = distributed.relay_only;
    profile.gateways.extend(distributed.gateways);
    profile.token = None;
    profile.validate()?;
    profile.save(profile_path)?;
    Ok(profile)
}

/// A distributed profile's router URL and pins, every field checked (its CA is read only by
/// [`import_profile`]).
pub fn router_and_pins(text: &str, origin: &Path) -> Result<(String, BTreeMap<String, String>)> {
    let distributed = read(text, origin)?;
    Ok((distributed.router_url, distributed.gateways))
}

/// Parse a distributed profile and check its fields; errors name `origin`.
fn read(text: &str, origin: &Path) -> Result<Distributed> {
    let fail = |message: String| CoreError::ProfileImport {
        file: origin.display().to_string(),
        message,
    };
    let distributed: Distributed = toml::from_str(text).map_err(|e| fail(toml_message(&e)))?;
    sallyport_ops::tls::check_router_url(&distributed.router_url)
        .map_err(|e| fail(format!("router_url {:?}: {e}", distributed.router_url)))?;
    for (gateway, key) in &distributed.gateways {
        check_pin(gateway, key).map_err(fail)?;
    }
    if let Some(sso) = &distributed.sso {
        sso.check()
            .map_err(|(field, e)| fail(format!("{field}: {e}")))?;
    }
    for (i, server) in distributed.ice_servers.iter().enumerate() {
        server
            .check()
            .map_err(|e| fail(format!("ice_servers[{i}]: {e}")))?;
    }
    Ok(distributed)
}

/// toml's error with its line, on one line.
fn toml_message(e: &toml::de::Error) -> String {
    let message = e.message().trim().to_owned();
    match e.span() {
        Some(_) => {
            let first = e.to_string();
            let line = first
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("TOML parse error at ")
                .to_owned();
            format!("{line}: {message}")
        }
        None => message,
    }
}

/// Pin `key` for `gateway` in the profile at `profile_path` (the user accepted its
/// fingerprint, or typed the key an administrator gave them).
pub fn pin(profile_path: &Path, gateway: &str, key: &str) -> Result<ClientProfile> {
    let key = check_pin(gateway, key.trim()).map_err(CoreError::Profile)?;
    let mut profile = ClientProfile::load(profile_path)?;
    profile.gateways.insert(gateway.to_owned(), key.to_base64());
    profile.save(profile_path)?;
    Ok(profile)
}

/// Remove the pin of `gateway`; an error when there is none.
pub fn unpin(profile_path: &Path, gateway: &str) -> Result<ClientProfile> {
    let mut profile = ClientProfile::load(profile_path)?;
    if profile.gateways.remove(gateway).is_none() {
        return Err(CoreError::Profile(format!(
            "gateways.{gateway}: no such pinned gateway"
        )));
    }
    profile.save(profile_path)?;
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sallyport-import-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn an_import_writes_the_profile_and_keeps_other_pins_of_the_router() {
        let d = dir("ok");
        let profile_path = d.join("profile.toml");
        let text = format!(
            "router_url = \"https://router.example.com\"\n[sso]\nissuer = \"https://login.example.com\"\nclient_id = \"sallyport\"\n[gateways]\ndc1 = \"{KEY}\"\n"
        );
        let p = import_profile(&text, &d.join("team.toml"), &profile_path).unwrap();
        assert_eq!(p.gateways.get("dc1").unwrap(), KEY);
        assert_eq!(p.sso.as_ref().unwrap().client_id, "sallyport");
        pin(&profile_path, "dc2", KEY).unwrap();
        let again = import_profile(&text, &d.join("team.toml"), &profile_path).unwrap();
        assert!(again.gateways.contains_key("dc2"), "{again:?}");
        let loaded = ClientProfile::load(&profile_path).unwrap();
        assert_eq!(loaded.sso, again.sso);
        let listed = PinnedGateway::list(&loaded);
        assert_eq!(listed.len(), 2);
        assert!(listed[0].fingerprint.starts_with("SHA256:"));
        assert_eq!(listed[0].fingerprint.len(), 7 + 43);
        unpin(&profile_path, "dc2").unwrap();
        assert!(unpin(&profile_path, "dc2").is_err());
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn each_bad_field_is_named() {
        let d = dir("bad");
        let profile_path = d.join("profile.toml");
        let origin = d.join("team.toml");
        let cases = [
            ("router_url = \"ftp://x\"\n", "router_url"),
            ("router_url = \"https://r.example\"\n[gateways]\ndc1 = \"short\"\n", "gateways.dc1"),
            ("router_url = \"https://r.example\"\n[gateways]\n\"../x\" = \"{KEY}\"\n", "gateways.../x"),
            ("router_url = \"https://r.example\"\n[sso]\nissuer = \"http://login.example\"\nclient_id = \"c\"\n", "sso.issuer"),
            ("router_url = \"https://r.example\"\n[sso]\nissuer = \"https://login.example\"\nclient_id = \"\"\n", "sso.client_id"),
            ("router_url = \"https://r.example\"\nca = \"not a certificate\"\n", "ca"),
            ("router_url = \"https://r.example\"\nca_file = \"missing.pem\"\n", "ca_file"),
            ("router_url = \"https://r.example\"\ntoken = \"secret-token\"\n", "token"),
        ];
        for (text, field) in cases {
            let text = text.replace("{KEY}", KEY);
            let err = import_profile(&text, &origin, &profile_path).unwrap_err();
            assert_eq!(err.code(), sallyport_protocol::Code::InvalidProfileImport);
            let message = err.to_string();
            assert!(message.contains(field), "{field}: {message}");
            assert!(message.contains("team.toml"), "{message}");
        }
        assert!(!profile_path.exists(), "nothing written on a failed import");
        let _ = std::fs::remove_dir_all(d);
    }
}
