//! A CA and server certificates made on the spot (rcgen), for the lab and the tests: the lab
//! serves TLS with a CA of its own, and tests make expired certificates, certificates for
//! another host name and certificates of another CA.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// How long an issued certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From an hour ago for a year.
    Current,
    /// From two days ago until yesterday.
    Expired,
}

/// A certificate and its private key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The files a router needs, and the CA its clients trust.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// A certificate authority whose key lives only in memory.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn unexpected(e: rcgen::Error) -> std::io::Error {
    std::io::Error::other(format!("cannot make a certificate: {e}"))
}

impl TestCa {
    pub fn new(name: &str) -> std::io::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(unexpected)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(3);
        params.not_after = now + Duration::days(3650);
        let key = KeyPair::generate().map_err(unexpected)?;
        let pem = params.self_signed(&key).map_err(unexpected)?.pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// The CA certificate, PEM: what clients trust.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `names` (DNS names or IP addresses; the first is also the
    /// subject's common name).
    pub fn issue(&self, names: &[&str], validity: Validity) -> std::io::Result<Issued> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).map_err(unexpected)?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, first);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        (params.not_before, params.not_after) = match validity {
            Validity::Current => (now - Duration::hours(1), now + Duration::days(365)),
            Validity::Expired => (now - Duration::days(2), now - Duration::days(1)),
        };
        let key = KeyPair::generate().map_err(unexpected)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(unexpected)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Write `ca.pem`, `router.crt` and `router.key` (readable by the owner only) into `dir`,
    /// for a router certificate valid for `names`.
    pub fn write_server_files(
        &self,
        dir: &Path,
        names: &[&str],
        validity: Validity,
    ) -> std::io::Result<ServerFiles> {
        let issued = self.issue(names, validity)?;
        let files = ServerFiles {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("router.crt"),
            key_file: dir.join("router.key"),
        };
        write_file(&files.ca_file, &self.pem, 0o644)?;
        write_file(&files.cert_file, &issued.cert_pem, 0o644)?;
        write_file(&files.key_file, &issued.key_pem, 0o600)?;
        Ok(files)
    }
}

/// Replace `path` with `text` (through a temporary file and a rename, so a reader never sees
/// half of it), with permissions `mode`.
pub fn write_file(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_files_load_as_a_server_and_a_client_config() {
        let dir = std::env::temp_dir().join(format!("sallyport-pki-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = TestCa::new("test CA").unwrap();
        let files = ca
            .write_server_files(&dir, &["localhost", "127.0.0.1"], Validity::Current)
            .unwrap();
        crate::tls::ServerTls::load(&files.cert_file, &files.key_file).unwrap();
        crate::tls::client_config("ca_file", Some(&files.ca_file)).unwrap();
        // A key of another certificate is refused, naming the key file.
        let other = ca.issue(&["localhost"], Validity::Current).unwrap();
        let other_key = dir.join("other.key");
        write_file(&other_key, &other.key_pem, 0o600).unwrap();
        let err = crate::tls::ServerTls::load(&files.cert_file, &other_key)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("tls.key_file ")
                && err.contains("other.key")
                && err.contains("router.crt"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
