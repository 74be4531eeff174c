//! Past launches, persisted across restarts as JSON lines.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::tunables::Profile;

/// Keep at most this many launches on disk.
const MAX_RECORDS: usize = 500;

pub use crate::checkpoint::LaunchError;

/// How a launch ended (the same type the launch reports carry).
pub use sallyport_protocol::report::Outcome;

/// One launch as the history keeps it, whichever face (the app, the CLI) launched it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct LaunchRecord {
    pub launch_id: String,
    pub resource: String,
    pub profile: Profile,
    pub started_unix_ms: u64,
    pub outcome: Outcome,
    pub error: Option<LaunchError>,
    pub checkpoints: Vec<Checkpoint>,
    pub total_ms: f64,
}

impl LaunchRecord {
    /// The launch as the router's launch reports carry it: checkpoint names and times, the
    /// attempt and the outcome's code; never a detail (addresses, ports, the client command)
    /// or an error message.
    pub fn report(&self) -> sallyport_protocol::report::LaunchReport {
        use crate::checkpoint::names;
        let gateway = self
            .checkpoints
            .iter()
            .find(|c| c.phase == names::RESOURCE_RESOLVED || c.phase == names::LAUNCH_CACHE_HIT)
            .and_then(|c| c.detail.clone());
        sallyport_protocol::report::LaunchReport {
            v: sallyport_protocol::PROTOCOL_VERSION,
            launch_id: self.launch_id.clone(),
            resource: self.resource.clone(),
            gateway,
            profile: self.profile.as_str().to_owned(),
            outcome: self.outcome,
            code: self.error.as_ref().map(|e| e.code),
            started_unix_ms: self.started_unix_ms,
            total_ms: self.total_ms,
            checkpoints: self
                .checkpoints
                .iter()
                .take(sallyport_protocol::report::MAX_REPORT_CHECKPOINTS)
                .map(|c| sallyport_protocol::report::ReportCheckpoint {
                    phase: c.phase.clone(),
                    step_ms: c.step_ms,
                    total_ms: c.total_ms,
                    attempt: c.attempt,
                })
                .collect(),
            client_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        }
    }
}

pub struct History {
    path: PathBuf,
    lock: Mutex<()>,
}

impl History {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: Mutex::new(()),
        }
    }

    pub fn in_home() -> Self {
        Self::new(crate::profile::home_dir().join("history.jsonl"))
    }

    pub fn append(&self, record: &LaunchRecord) -> Result<()> {
        let _guard = self.lock.lock().unwrap();
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let line = serde_json::to_string(record).expect("records serialize");
        writeln!(file, "{line}")?;
        drop(file);
        self.compact_locked()
    }

    /// Newest first. Unreadable lines (a torn write) are skipped, never fatal.
    pub fn records(&self) -> Vec<LaunchRecord> {
        let _guard = self.lock.lock().unwrap();
        let mut records = self.read_locked();
        records.reverse();
        records
    }

    pub fn find(&self, launch_id: &str) -> Option<LaunchRecord> {
        self.records()
            .into_iter()
            .find(|r| r.launch_id == launch_id)
    }

    fn read_locked(&self) -> Vec<LaunchRecord> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    fn compact_locked(&self) -> Result<()> {
        let records = self.read_locked();
        if records.len() <= MAX_RECORDS {
            return Ok(());
        }
        let keep = &records[records.len() - MAX_RECORDS..];
        let tmp = self.path.with_extension("tmp");
        let mut text = String::new();
        for r in keep {
            text.push_str(&serde_json::to_string(r).expect("records serialize"));
            text.push('\n');
        }
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, &self.path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> LaunchRecord {
        LaunchRecord {
            launch_id: id.into(),
            resource: "r".into(),
            profile: Profile::Fast,
            started_unix_ms: 1,
            outcome: Outcome::Ok,
            error: None,
            checkpoints: vec![],
            total_ms: 5.0,
        }
    }

    #[test]
    fn a_report_carries_no_detail_and_no_message() {
        let mut r = record("abcd1234");
        r.outcome = Outcome::Failed;
        r.error = Some(LaunchError {
            code: sallyport_protocol::Code::TargetRefused,
            message: "10.0.0.5:5432 refused".into(),
        });
        r.checkpoints = vec![Checkpoint {
            launch_id: "abcd1234".into(),
            resource: "r".into(),
            phase: "resource_resolved".into(),
            step_ms: 1.0,
            total_ms: 1.0,
            attempt: None,
            detail: Some("gw-1".into()),
            error: None,
            at_unix_ms: 0,
        }];
        let report = r.report();
        assert_eq!(report.gateway.as_deref(), Some("gw-1"));
        assert_eq!(report.code, Some(sallyport_protocol::Code::TargetRefused));
        assert_eq!(report.validate(), Ok(()));
        let json = serde_json::to_string(&report).unwrap();
        assert!(!json.contains("10.0.0.5"), "{json}");
    }

    #[test]
    fn records_persist_newest_first_and_survive_torn_lines() {
        let dir =
            std::env::temp_dir().join(format!("sallyport-history-{}", crate::new_launch_id()));
        let history = History::new(dir.join("h.jsonl"));
        history.append(&record("a")).unwrap();
        history.append(&record("b")).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("h.jsonl"))
            .unwrap()
            .write_all(b"{torn")
            .unwrap();
        let again = History::new(dir.join("h.jsonl"));
        let ids: Vec<_> = again.records().into_iter().map(|r| r.launch_id).collect();
        assert_eq!(ids, ["b", "a"]);
        assert!(again.find("a").is_some());
        let _ = std::fs::remove_dir_all(dir);
    }
}
