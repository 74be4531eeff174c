//! The router token in the OS keyring (the kernel's keyutils store), never in a file.

use std::sync::Once;

use crate::error::CoreError;

const SERVICE: &str = "sallyport";

fn init_store() -> Result<(), CoreError> {
    static INIT: Once = Once::new();
    let mut failure = None;
    INIT.call_once(|| match linux_keyutils_keyring_store::Store::new() {
        Ok(store) => keyring_core::set_default_store(store),
        Err(e) => failure = Some(e.to_string()),
    });
    match failure {
        Some(e) => Err(CoreError::Keyring(e)),
        None => Ok(()),
    }
}

fn entry(router_url: &str) -> Result<keyring_core::Entry, CoreError> {
    init_store()?;
    keyring_core::Entry::new(SERVICE, router_url).map_err(|e| CoreError::Keyring(e.to_string()))
}

pub fn store_token(router_url: &str, token: &str) -> Result<(), CoreError> {
    entry(router_url)?
        .set_password(token)
        .map_err(|e| CoreError::Keyring(format!("cannot store the token: {e}")))
}

pub fn load_token(router_url: &str) -> Result<Option<String>, CoreError> {
    match entry(router_url)?.get_password() {
        Ok(token) => Ok(Some(token)),
        Err(keyring_core::Error::NoEntry) => Ok(None),
        Err(e) => Err(CoreError::Keyring(format!("cannot read the token: {e}"))),
    }
}
