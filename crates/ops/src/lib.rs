//! What a deployment needs around the protocol, shared by the router, the gateway, the client
//! and the lab:
//!
//! * [`tls`]: the router's certificate and key from files, replaced in place on reload; the
//!   roots a client or gateway trusts (the system's, or a CA file); verification failures
//!   explained in words;
//! * [`jsonl`]: append-only logs of one JSON object per line with a UTC timestamp (the
//!   router's audit trail, the gateway's log of connections to targets), and the time
//!   arithmetic to read them back;
//! * `pki` (feature `pki`): a CA and certificates generated on the spot, for the lab and the
//!   tests.

pub mod jsonl;
#[cfg(feature = "pki")]
pub mod pki;
pub mod tls;

pub use rustls;
pub use tokio_rustls;

use std::path::{Path, PathBuf};

/// Make each of `files`, named in the configuration file `config_file`, relative to that
/// file's directory when it is relative.
pub fn relative_to_config<'a>(
    config_file: &Path,
    files: impl IntoIterator<Item = &'a mut PathBuf>,
) {
    let dir = config_file.parent().unwrap_or(Path::new("."));
    for file in files {
        if file.is_relative() {
            *file = dir.join(&*file);
        }
    }
}
