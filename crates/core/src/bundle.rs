//! The diagnostic bundle of one launch: its timeline, outcome, versions, tunables and log
//! lines, with secrets redacted, as one JSON file support staff can read, and open again in the
//! app or with `sallyport timeline FILE`.
//!
//! Version 2 (what this build writes) wraps the content with a digest of its exact bytes, so a
//! file cut short or changed after export is refused, never shown half:
//!
//! ```text
//! {
//!   "kind": "sallyport-diagnostic-bundle/v2",
//!   "digest": "sha256:<64 hex digits of SHA-256 over the bytes of the "bundle" value>",
//!   "bundle": { "sallyport_version": ..., "launch": {...}, "tunables": [...], "log": [...] }
//! }
//! ```
//!
//! Version 1 had the same content at the top level beside `kind`, and no digest; it is still
//! read, marked unverified.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::error::{CoreError, Result};
use crate::history::LaunchRecord;
use crate::tunables::Tunables;

const KIND_PREFIX: &str = "sallyport-diagnostic-bundle/";
pub const KIND_V1: &str = "sallyport-diagnostic-bundle/v1";
pub const KIND_V2: &str = "sallyport-diagnostic-bundle/v2";
/// The kinds this build reads.
pub const KINDS_READ: &[&str] = &[KIND_V1, KIND_V2];
/// A bundle is at most this large (its log is a launch's lines, a few hundred KiB at most).
pub const MAX_BUNDLE_BYTES: usize = 32 * 1024 * 1024;

/// The content of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Content {
    sallyport_version: String,
    protocol_version: u16,
    os: String,
    arch: String,
    router_url: String,
    launch: LaunchRecord,
    tunables: Vec<(String, String)>,
    log: Vec<String>,
}

/// One tunable as the bundle recorded it (its environment variable and value).
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
pub struct Tunable {
    pub name: String,
    pub value: String,
}

/// A bundle read back and checked: what the app's Timeline and `sallyport timeline` show.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
pub struct BundleView {
    pub kind: String,
    /// Whether a digest vouched for the content (v2); a v1 bundle has none to check.
    pub verified: bool,
    pub sallyport_version: String,
    pub protocol_version: u16,
    pub os: String,
    pub arch: String,
    pub router_url: String,
    pub launch: LaunchRecord,
    pub tunables: Vec<Tunable>,
    pub log: Vec<String>,
}

/// Replace each secret, and anything that looks like a bearer token, with `[redacted]`.
pub fn redact(line: &str, secrets: &[&str]) -> String {
    let mut out = line.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret, "[redacted]");
    }
    let mut redacted = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find("Bearer ") {
        redacted.push_str(&rest[..i + 7]);
        redacted.push_str("[redacted]");
        rest = &rest[i + 7..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    redacted.push_str(rest);
    redacted
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The text of a bundle (version 2).
pub fn render(
    record: &LaunchRecord,
    tunables: &Tunables,
    router_url: &str,
    log: &[String],
    secrets: &[&str],
) -> String {
    let content = Content {
        sallyport_version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol_version: sallyport_protocol::PROTOCOL_VERSION,
        os: std::env::consts::OS.to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        router_url: router_url.to_owned(),
        launch: record.clone(),
        tunables: tunables
            .as_env_pairs()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        log: log.iter().map(|l| redact(l, secrets)).collect(),
    };
    let body = redact(
        &serde_json::to_string_pretty(&content).expect("bundles serialize"),
        secrets,
    )
    .replace('\n', "\n  ");
    format!(
        "{{\n  \"kind\": \"{KIND_V2}\",\n  \"digest\": \"sha256:{}\",\n  \"bundle\": {body}\n}}\n",
        sha256_hex(body.as_bytes())
    )
}

/// Write the bundle under `dir` and return its path.
pub fn write(
    dir: &Path,
    record: &LaunchRecord,
    tunables: &Tunables,
    router_url: &str,
    log: &[String],
    secrets: &[&str],
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(
        "sallyport-{}-{}.json",
        record.resource, record.launch_id
    ));
    std::fs::write(&path, render(record, tunables, router_url, log, secrets))?;
    Ok(path)
}

/// What every bundle has at its top: the kind, and in v2 the digest and the content.
#[derive(Deserialize)]
struct Head<'a> {
    kind: Option<String>,
    digest: Option<String>,
    #[serde(borrow)]
    bundle: Option<&'a RawValue>,
    /// v1 only (its content is at the top level); named in a refusal.
    sallyport_version: Option<String>,
}

fn damaged(why: String) -> CoreError {
    CoreError::BundleDamaged(why)
}

fn unsupported(why: String) -> CoreError {
    CoreError::BundleUnsupported(why)
}

/// Read a bundle and check it: a file cut short, changed after export, or of another kind or
/// version is an error saying which, never a partial view.
pub fn read(bytes: &[u8]) -> Result<BundleView> {
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(damaged(format!(
            "{} bytes is more than a bundle holds ({MAX_BUNDLE_BYTES})",
            bytes.len()
        )));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(damaged("the file is empty".into()));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        damaged(format!(
            "not text (invalid UTF-8 at byte {})",
            e.valid_up_to()
        ))
    })?;
    let head: Head = serde_json::from_str(text).map_err(|e| {
        if e.is_eof() {
            damaged(format!(
                "cut short: the file ends after {} bytes, in the middle of its JSON (truncated)",
                bytes.len()
            ))
        } else if e.is_data() {
            unsupported(format!("not a Sallyport diagnostic bundle: {e}"))
        } else {
            damaged(format!("not valid JSON: {e}"))
        }
    })?;
    let kind = head.kind.as_deref().ok_or_else(|| {
        unsupported("not a Sallyport diagnostic bundle: it has no \"kind\"".into())
    })?;
    if !kind.starts_with(KIND_PREFIX) {
        return Err(unsupported(format!(
            "not a Sallyport diagnostic bundle: its kind is {kind:?}"
        )));
    }
    let (content, verified) = match kind {
        KIND_V1 => {
            let content: Content = serde_json::from_str(text)
                .map_err(|e| damaged(format!("a v1 bundle whose content does not read: {e}")))?;
            (content, false)
        }
        KIND_V2 => {
            let raw = head
                .bundle
                .ok_or_else(|| damaged("a v2 bundle without its \"bundle\" content".into()))?;
            let digest = head
                .digest
                .as_deref()
                .and_then(|d| d.strip_prefix("sha256:"))
                .ok_or_else(|| damaged("a v2 bundle without its \"sha256:\" digest".into()))?;
            if !digest.eq_ignore_ascii_case(&sha256_hex(raw.get().as_bytes())) {
                return Err(damaged(
                    "changed after export: its content does not match its digest".into(),
                ));
            }
            let content: Content = serde_json::from_str(raw.get()).map_err(|e| {
                unsupported(format!("its content is not what a v2 bundle holds: {e}"))
            })?;
            (content, true)
        }
        other => {
            let writer = head
                .sallyport_version
                .or_else(|| {
                    let raw = head.bundle?;
                    let v: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
                    Some(v.get("sallyport_version")?.as_str()?.to_owned())
                })
                .map_or_else(String::new, |v| format!(", written by Sallyport {v}"));
            return Err(unsupported(format!(
                "bundle kind {other:?}{writer} is not one Sallyport {} reads ({})",
                env!("CARGO_PKG_VERSION"),
                KINDS_READ.join(", ")
            )));
        }
    };
    Ok(BundleView {
        kind: kind.to_owned(),
        verified,
        sallyport_version: content.sallyport_version,
        protocol_version: content.protocol_version,
        os: content.os,
        arch: content.arch,
        router_url: content.router_url,
        launch: content.launch,
        tunables: content
            .tunables
            .into_iter()
            .map(|(name, value)| Tunable { name, value })
            .collect(),
        log: content.log,
    })
}

/// Read the bundle at `path` (see [`read`]).
pub fn read_file(path: &Path) -> Result<BundleView> {
    let size = std::fs::metadata(path)
        .map_err(|e| {
            CoreError::Io(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            ))
        })?
        .len();
    if size > MAX_BUNDLE_BYTES as u64 {
        return Err(damaged(format!(
            "{}: {size} bytes is more than a bundle holds ({MAX_BUNDLE_BYTES})",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        CoreError::Io(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", path.display()),
        ))
    })?;
    read(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::history::Outcome;
    use crate::tunables::Profile;
    use sallyport_protocol::Code;

    #[test]
    fn secrets_and_bearer_tokens_are_redacted() {
        let line = "sent Authorization: Bearer abc123def to router with token s3cr3t-token";
        let out = redact(line, &["s3cr3t-token"]);
        assert!(
            !out.contains("abc123def") && !out.contains("s3cr3t-token"),
            "{out}"
        );
        assert_eq!(out.matches("[redacted]").count(), 2);
        assert_eq!(redact("nothing here", &["x"]), "nothing here");
    }

    fn record() -> LaunchRecord {
        LaunchRecord {
            launch_id: "0a1b2c3d".into(),
            resource: "demo-echo".into(),
            profile: Profile::Fast,
            started_unix_ms: 1_700_000_000_000,
            outcome: Outcome::Ok,
            error: None,
            checkpoints: vec![Checkpoint {
                launch_id: "0a1b2c3d".into(),
                resource: "demo-echo".into(),
                phase: "ready".into(),
                step_ms: 0.5,
                total_ms: 41.25,
                attempt: None,
                detail: None,
                error: None,
                at_unix_ms: 1_700_000_000_041,
            }],
            total_ms: 41.25,
        }
    }

    fn text() -> String {
        render(
            &record(),
            &Tunables::for_profile(Profile::Fast),
            "http://127.0.0.1:8740",
            &["a line with token s3cr3t-token".into()],
            &["s3cr3t-token"],
        )
    }

    #[test]
    fn a_bundle_reads_back_as_written_and_verified() {
        let view = read(text().as_bytes()).unwrap();
        assert!(view.verified);
        assert_eq!(view.kind, KIND_V2);
        assert_eq!(view.launch, record());
        assert_eq!(view.log, ["a line with token [redacted]"]);
        assert!(view
            .tunables
            .iter()
            .any(|t| t.name == "WEBSOCKET_BACKEND_DELAY"));
    }

    #[test]
    fn cut_short_changed_or_foreign_bundles_are_refused_with_their_code() {
        let text = text();
        let cut = read(&text.as_bytes()[..text.len() / 2]).unwrap_err();
        assert_eq!(cut.code(), Code::BundleDamaged);
        assert!(cut.to_string().contains("truncated"), "{cut}");

        let changed = read(text.replace("41.25", "4.25").as_bytes()).unwrap_err();
        assert_eq!(changed.code(), Code::BundleDamaged);
        assert!(changed.to_string().contains("digest"), "{changed}");

        let newer = read(
            text.replace(KIND_V2, "sallyport-diagnostic-bundle/v9")
                .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(newer.code(), Code::BundleUnsupported);
        assert!(newer.to_string().contains("v9"), "{newer}");

        for other in [
            "{\"hello\": 1}",
            "[1, 2]",
            "{\"kind\": \"something-else/v1\"}",
        ] {
            assert_eq!(
                read(other.as_bytes()).unwrap_err().code(),
                Code::BundleUnsupported,
                "{other}"
            );
        }
        assert_eq!(read(b"").unwrap_err().code(), Code::BundleDamaged);
        assert_eq!(read(b"not json").unwrap_err().code(), Code::BundleDamaged);
    }

    #[test]
    fn a_v1_bundle_still_reads_unverified() {
        let v2 = read(text().as_bytes()).unwrap();
        let v1 = serde_json::json!({
            "kind": KIND_V1,
            "sallyport_version": "0.1.0",
            "protocol_version": 1,
            "os": "linux",
            "arch": "x86_64",
            "router_url": "http://127.0.0.1:8740",
            "launch": record(),
            "tunables": [["PAM_WEBRTC_POLL_MS", "25"]],
            "log": [],
        });
        let view = read(serde_json::to_string_pretty(&v1).unwrap().as_bytes()).unwrap();
        assert!(!view.verified);
        assert_eq!(view.launch, v2.launch);
        assert_eq!(view.tunables[0].name, "PAM_WEBRTC_POLL_MS");
    }
}
