//! The router token in the OS keyring, never in a file: the desktop's Secret Service (GNOME
//! Keyring, KWallet) when a session bus offers one, else the kernel's keyutils keyring.
//! `SALLYPORT_KEYRING=secret-service|keyutils` forces one.

use std::sync::Arc;

use keyring_core::{CredentialStore, Entry};

use crate::error::CoreError;

const SERVICE: &str = "sallyport";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyring {
    SecretService,
    KernelKeyutils,
}

impl Keyring {
    pub fn name(self) -> &'static str {
        match self {
            Keyring::SecretService => "Secret Service",
            Keyring::KernelKeyutils => "kernel keyring",
        }
    }
}

fn stores() -> Result<Vec<(Keyring, Arc<CredentialStore>)>, CoreError> {
    let wanted = std::env::var("SALLYPORT_KEYRING").unwrap_or_default();
    let has_bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some();
    let order: Vec<Keyring> = match wanted.as_str() {
        "secret-service" => vec![Keyring::SecretService],
        "keyutils" => vec![Keyring::KernelKeyutils],
        "" if has_bus => vec![Keyring::SecretService, Keyring::KernelKeyutils],
        "" => vec![Keyring::KernelKeyutils],
        other => {
            return Err(CoreError::Keyring(format!(
                "SALLYPORT_KEYRING={other:?} is not secret-service or keyutils"
            )))
        }
    };
    let mut stores = Vec::new();
    for keyring in order {
        let store: Result<Arc<CredentialStore>, String> = match keyring {
            Keyring::SecretService => zbus_secret_service_keyring_store::Store::new()
                .map(|s| s as Arc<CredentialStore>)
                .map_err(|e| e.to_string()),
            Keyring::KernelKeyutils => linux_keyutils_keyring_store::Store::new()
                .map(|s| s as Arc<CredentialStore>)
                .map_err(|e| e.to_string()),
        };
        match store {
            Ok(store) => stores.push((keyring, store)),
            Err(e) => tracing::debug!(keyring = keyring.name(), error = %e, "keyring unavailable"),
        }
    }
    if stores.is_empty() {
        return Err(CoreError::Keyring("no OS keyring is available".into()));
    }
    Ok(stores)
}

/// The router token for `profile`: the profile's own (the lab's), else `SALLYPORT_TOKEN`,
/// else the OS keyring. `None` when there is none anywhere.
pub fn token_for(profile: &crate::ClientProfile) -> Result<Option<String>, CoreError> {
    if let Some(token) = &profile.token {
        return Ok(Some(token.clone()));
    }
    if let Some(token) = std::env::var("SALLYPORT_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(token));
    }
    load_token(&profile.router_url)
}

/// Keyring calls block (D-Bus round trips): run them off any async runtime's threads.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| scope.spawn(f).join().expect("keyring call panicked"))
}

/// Store the token for `router_url`; returns the keyring that took it.
pub fn store_token(router_url: &str, token: &str) -> Result<Keyring, CoreError> {
    store_secret(router_url, token)
}

/// The token stored for `router_url`, from the first keyring that has one.
pub fn load_token(router_url: &str) -> Result<Option<String>, CoreError> {
    load_secret(router_url)
}

/// Store a secret under `account` (the router URL for its token; the URL and a suffix for
/// single sign-on's tokens, sso.rs); returns the keyring that took it.
pub fn store_secret(account: &str, token: &str) -> Result<Keyring, CoreError> {
    let router_url = account;
    off_runtime(|| {
        let mut failures = Vec::new();
        for (keyring, store) in stores()? {
            let result = Entry::new_in_store(&store, SERVICE, router_url)
                .and_then(|entry| entry.set_password(token));
            match result {
                Ok(()) => return Ok(keyring),
                Err(e) => failures.push(format!("{}: {e}", keyring.name())),
            }
        }
        Err(CoreError::Keyring(format!(
            "cannot store the token ({})",
            failures.join("; ")
        )))
    })
}

/// The secret stored under `account`, from the first keyring that has one.
pub fn load_secret(account: &str) -> Result<Option<String>, CoreError> {
    let router_url = account;
    off_runtime(|| {
        let mut failures = Vec::new();
        let mut answered = false;
        for (keyring, store) in stores()? {
            let result = Entry::new_in_store(&store, SERVICE, router_url)
                .and_then(|entry| entry.get_password());
            match result {
                Ok(token) => return Ok(Some(token)),
                Err(keyring_core::Error::NoEntry) => answered = true,
                Err(e) => failures.push(format!("{}: {e}", keyring.name())),
            }
        }
        // "Not there" from any keyring is an answer; only fail when none could be asked.
        if answered || failures.is_empty() {
            Ok(None)
        } else {
            Err(CoreError::Keyring(format!(
                "cannot read the token ({})",
                failures.join("; ")
            )))
        }
    })
}
