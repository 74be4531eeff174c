//! TLS for the router (a certificate chain and key read from PEM files, replaced in place by
//! [`ServerTls::reload`]) and for those who connect to it (the system's roots, or the CA in a
//! file their configuration names), with verification failures explained in words.
//!
//! Every configuration uses the same cryptography (`ring`) explicitly, so the result does not
//! depend on which rustls features other crates of the build happen to enable.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, RootCertStore};

/// A TLS setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A file named by a setting: the setting (`tls.cert_file`, `ca_file`, ...), the file and
    /// what is wrong with it.
    #[error("{field} {}: {message}", .path.display())]
    File {
        field: String,
        path: PathBuf,
        message: String,
    },
    /// No CA file is named and the system has no root certificates either.
    #[error("no trusted root certificates on this system ({0}); install the ca-certificates package or name the router's CA in ca_file")]
    NoSystemRoots(String),
}

fn file_error(field: &str, path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::File {
        field: field.to_owned(),
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Make this module's crypto provider the process's default, for libraries that build their
/// own TLS settings from the default (the Redis client); a default already set stays.
pub fn install_default_provider() {
    let _ = CryptoProvider::install_default((*provider()).clone());
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn read(field: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| file_error(field, path, format!("cannot read: {e}")))
}

/// Every certificate in the PEM file `path`, which the setting `field` names; at least one.
pub fn read_certificates(
    field: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read(field, path)?;
    let certificates = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(field, path, format!("unreadable PEM: {e}")))?;
    if certificates.is_empty() {
        return Err(file_error(
            field,
            path,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certificates)
}

/// The private key in the PEM file `path` (PKCS#8, PKCS#1 or SEC1).
pub fn read_private_key(field: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read(field, path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
        pem::Error::NoItemsFound => file_error(
            field,
            path,
            "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
        ),
        e => file_error(field, path, format!("unreadable PEM: {e}")),
    })
}

/// The router's side: the certificate chain and key it presents, from files.
pub struct ServerTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: Arc<RwLock<Arc<CertifiedKey>>>,
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// Hands every new handshake the certificate in force at that moment.
#[derive(Debug)]
struct Current(Arc<RwLock<Arc<CertifiedKey>>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

impl ServerTls {
    /// The field names used in errors: the router's `[tls]` table.
    pub const CERT_FIELD: &'static str = "tls.cert_file";
    pub const KEY_FIELD: &'static str = "tls.key_file";

    /// Read the certificate chain (leaf first) and its private key, and check they belong
    /// together.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, TlsError> {
        let key = certified_key(cert_file, key_file)?;
        let current = Arc::new(RwLock::new(Arc::new(key)));
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Current(current.clone())));
        Ok(Self {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current,
            config: Arc::new(config),
        })
    }

    /// Read both files again. New handshakes present the new certificate; connections already
    /// open keep theirs. On error the certificate in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = certified_key(&self.cert_file, &self.key_file)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        Ok(())
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }

    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }

    pub fn key_file(&self) -> &Path {
        &self.key_file
    }
}

fn certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = read_certificates(ServerTls::CERT_FIELD, cert_file)?;
    let key = read_private_key(ServerTls::KEY_FIELD, key_file)?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => file_error(
            ServerTls::KEY_FIELD,
            key_file,
            format!(
                "is not the key of the certificate in {}",
                cert_file.display()
            ),
        ),
        e => file_error(
            ServerTls::KEY_FIELD,
            key_file,
            format!("unusable private key: {e}"),
        ),
    })
}

/// The system's root certificates, read once.
fn system_roots() -> Result<Arc<RootCertStore>, TlsError> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map_or("none found".to_owned(), |e| e.to_string());
                return Err(why);
            }
            Ok(Arc::new(roots))
        })
        .clone()
        .map_err(TlsError::NoSystemRoots)
}

/// The client's side: trust the CAs in `ca_file` (named by the setting `field`) and nothing
/// else, or, without one, the system's roots.
pub fn client_config(
    field: &str,
    ca_file: Option<&Path>,
) -> Result<rustls::ClientConfig, TlsError> {
    let roots = match ca_file {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for (i, certificate) in read_certificates(field, path)?.into_iter().enumerate() {
                roots.add(certificate).map_err(|e| {
                    file_error(
                        field,
                        path,
                        format!("certificate {} is unusable: {e}", i + 1),
                    )
                })?;
            }
            Arc::new(roots)
        }
        None => system_roots()?,
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Check that `ca_file` holds usable CA certificates (for configuration checks at start).
pub fn check_ca_file(field: &str, ca_file: &Path) -> Result<(), TlsError> {
    client_config(field, Some(ca_file)).map(|_| ())
}

/// A router base URL: `https://HOST[:PORT]`, or `http://` only for a router on this machine
/// (127.0.0.0/8, `::1` or `localhost`): a token must never cross a network in clear.
pub fn check_router_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => return Err("names no host".into()),
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err("plain http is only for a router on loopback; use https://".into()),
        _ => Err("must be an https:// URL (or http:// on loopback)".into()),
    }
}

/// Why a connection failed, in words: for a TLS failure what is wrong (an untrusted issuer, an
/// expired certificate, another host name, a peer that does not speak TLS), with rustls's own
/// detail; otherwise the chain of causes.
pub fn explain(error: &(dyn std::error::Error + 'static)) -> String {
    if let Some(tls) = tls_failure(error) {
        return tls;
    }
    let mut causes: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !causes.iter().any(|c| c.contains(&text)) {
            causes.push(text);
        }
        current = e.source();
    }
    causes.join(": ")
}

/// The TLS failure among `error`'s causes, in words, if there is one.
pub fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(tls) = rustls_cause(e) {
            return Some(describe(tls));
        }
        current = e.source();
    }
    None
}

/// The rustls error in `e` itself, or inside an `io::Error` (whose `source` skips what it
/// wraps), however deep such wrappers nest.
fn rustls_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let mut io = e.downcast_ref::<std::io::Error>()?;
    loop {
        let inner = io.get_ref()?;
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        io = inner.downcast_ref::<std::io::Error>()?;
    }
}

fn describe(e: &rustls::Error) -> String {
    let what = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the router's certificate has expired"
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the router's certificate is not valid yet (check this machine's clock)"
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "the router's certificate is not valid for the host name in the router URL"
            }
            CertificateError::UnknownIssuer => {
                "the router's certificate is not signed by a trusted CA (name the router's CA in ca_file)"
            }
            CertificateError::BadSignature => "the router's certificate has a bad signature",
            _ => "the router's certificate is not acceptable",
        },
        rustls::Error::InvalidMessage(_) => {
            "the router did not answer in TLS (does it serve plain http?)"
        }
        rustls::Error::AlertReceived(_) => "the router refused the TLS handshake",
        _ => "the TLS handshake failed",
    };
    format!("TLS: {what} ({e})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sallyport-ops-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn bad_files_are_named_with_their_field() {
        let dir = scratch("bad-files");
        let missing = dir.join("missing.pem");
        let err = ServerTls::load(&missing, &missing).unwrap_err().to_string();
        assert!(
            err.starts_with("tls.cert_file ")
                && err.contains("missing.pem")
                && err.contains("cannot read"),
            "{err}"
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").unwrap();
        let err = client_config("ca_file", Some(&empty))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("ca_file ")
                && err.contains("empty.pem")
                && err.contains("no PEM certificate"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn plain_http_urls_only_on_loopback() {
        for ok in [
            "https://router.example",
            "https://10.0.0.1:8443/",
            "http://127.0.0.1:8740",
            "http://[::1]:1",
            "http://localhost:8740",
        ] {
            assert_eq!(check_router_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://router.example",
            "http://10.0.0.1",
            "ftp://127.0.0.1",
            "nonsense",
        ] {
            assert!(check_router_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn explains_plain_errors_by_their_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(explain(&io), "refused");
        // As reqwest reports it: an io::Error around an io::Error around the rustls error.
        let wrapped = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        ));
        let text = explain(&wrapped);
        assert!(text.contains("not signed by a trusted CA"), "{text}");
    }
}
