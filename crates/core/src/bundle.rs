//! The diagnostic bundle of one launch: its timeline, outcome, versions, tunables and log
//! lines, with secrets redacted, as one JSON file support staff can read.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::history::LaunchRecord;
use crate::tunables::Tunables;

#[derive(Serialize)]
struct Bundle<'a> {
    kind: &'static str,
    sallyport_version: &'static str,
    protocol_version: u16,
    os: &'static str,
    arch: &'static str,
    router_url: &'a str,
    launch: &'a LaunchRecord,
    tunables: Vec<(&'static str, String)>,
    log: Vec<String>,
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
    let bundle = Bundle {
        kind: "sallyport-diagnostic-bundle/v1",
        sallyport_version: env!("CARGO_PKG_VERSION"),
        protocol_version: sallyport_protocol::PROTOCOL_VERSION,
        os: std::env::consts::OS,
        arch: std::env::consts::ARCH,
        router_url,
        launch: record,
        tunables: tunables.as_env_pairs(),
        log: log.iter().map(|l| redact(l, secrets)).collect(),
    };
    let text = redact(
        &serde_json::to_string_pretty(&bundle).expect("bundles serialize"),
        secrets,
    );
    let path = dir.join(format!(
        "sallyport-{}-{}.json",
        record.resource, record.launch_id
    ));
    std::fs::write(&path, text)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
