//! Launch reports: after each launch the client tells the router how it went (checkpoint
//! names and times, the attempt, the outcome's code), and clients with the `support` role read
//! them back, one by one or as per-phase percentiles. See section 3.2 of `docs/PROTOCOL.md`.
//!
//! A report carries nothing that identifies the user's machine or network: no token, key,
//! address, port, checkpoint detail or error message. The router adds the user's identity (the
//! client name of the token) itself.

use serde::{Deserialize, Serialize};

use crate::Code;

/// `POST` a report, `GET` the list (support).
pub const LAUNCHES_PATH: &str = "/v1/launches";
/// `GET` per-phase percentiles (support).
pub const LAUNCH_STATS_PATH: &str = "/v1/launches/stats";
/// `GET` who the token is: its client name, roles, and whether the router keeps reports.
pub const WHOAMI_PATH: &str = "/v1/me";

/// The role that may read every user's launch reports.
pub const SUPPORT_ROLE: &str = "support";
/// Every role a router knows.
pub const ROLES: &[&str] = &[SUPPORT_ROLE];

/// At most this many checkpoints in one report.
pub const MAX_REPORT_CHECKPOINTS: usize = 64;
/// A checkpoint name in a report: 1 to 64 characters of `[a-z0-9_]`.
pub const PHASE_RULE: &str = "must be 1-64 characters of [a-z0-9_]";
/// A profile name in a report: 1 to 16 characters of `[a-z0-9_]`.
pub const PROFILE_RULE: &str = "must be 1-16 characters of [a-z0-9_]";
/// A list returns at most this many launches.
pub const MAX_LIST_LIMIT: u32 = 1000;
/// A list returns this many launches unless `limit` says otherwise.
pub const DEFAULT_LIST_LIMIT: u32 = 100;
/// Statistics are computed over at most this many of the newest matching launches.
pub const MAX_STATS_LAUNCHES: u32 = 10_000;

/// How a launch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ok" => Some(Outcome::Ok),
            "failed" => Some(Outcome::Failed),
            _ => None,
        }
    }
}

/// One checkpoint as a report carries it: its name and times, never its detail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
pub struct ReportCheckpoint {
    pub phase: String,
    pub step_ms: f64,
    pub total_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub attempt: Option<u32>,
}

/// Body of `POST /v1/launches` (client token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchReport {
    pub v: u16,
    /// The client's launch id: 8 to 64 characters of `[A-Za-z0-9_-]`.
    pub launch_id: String,
    pub resource: String,
    /// The resource's gateway, when the launch got as far as knowing it.
    #[serde(default)]
    pub gateway: Option<String>,
    /// The launch profile (`legacy`, `tuned`, `fast`).
    pub profile: String,
    pub outcome: Outcome,
    /// The failure's code; absent when the launch succeeded.
    #[serde(default)]
    pub code: Option<Code>,
    pub started_unix_ms: u64,
    pub total_ms: f64,
    pub checkpoints: Vec<ReportCheckpoint>,
    /// The client's version, e.g. `0.1.0`.
    #[serde(default)]
    pub client_version: Option<String>,
}

fn phase_like(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn duration_ok(ms: f64) -> bool {
    ms.is_finite() && (0.0..=86_400_000.0).contains(&ms)
}

impl LaunchReport {
    /// Everything about the report a router checks besides who may send it; the message names
    /// the field (`checkpoints[3].phase: ...`).
    pub fn validate(&self) -> Result<(), String> {
        if !crate::valid_conversation_id(&self.launch_id) {
            return Err(format!("launch_id {}", crate::CONVERSATION_ID_RULE));
        }
        if !crate::valid_resource_name(&self.resource) {
            return Err(format!("resource {}", crate::RESOURCE_NAME_RULE));
        }
        if let Some(gateway) = &self.gateway {
            if !crate::valid_resource_name(gateway) {
                return Err(format!("gateway {}", crate::RESOURCE_NAME_RULE));
            }
        }
        if !phase_like(&self.profile, 16) {
            return Err(format!("profile {PROFILE_RULE}"));
        }
        if !duration_ok(self.total_ms) {
            return Err("total_ms must be a number of milliseconds from 0 to one day".into());
        }
        if self.checkpoints.len() > MAX_REPORT_CHECKPOINTS {
            return Err(format!(
                "checkpoints: at most {MAX_REPORT_CHECKPOINTS}, got {}",
                self.checkpoints.len()
            ));
        }
        if let Some(v) = &self.client_version {
            if v.is_empty() || v.len() > 32 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                return Err("client_version must be 1-32 printable ASCII characters".into());
            }
        }
        for (i, c) in self.checkpoints.iter().enumerate() {
            if !phase_like(&c.phase, 64) {
                return Err(format!("checkpoints[{i}].phase {PHASE_RULE}"));
            }
            if !duration_ok(c.step_ms) || !duration_ok(c.total_ms) {
                return Err(format!(
                    "checkpoints[{i}]: step_ms and total_ms must be numbers of milliseconds from 0 to one day"
                ));
            }
            if c.attempt == Some(0) {
                return Err(format!("checkpoints[{i}].attempt: attempts count from 1"));
            }
        }
        match (self.outcome, self.code) {
            (Outcome::Failed, None) => Err("code: a failed launch names its code".into()),
            (Outcome::Ok, Some(_)) => Err("code: a launch that succeeded has no code".into()),
            _ => Ok(()),
        }
    }

    /// The highest offer attempt among the checkpoints (1 when none names one).
    pub fn attempts(&self) -> u32 {
        attempts(&self.checkpoints)
    }
}

/// The highest offer attempt among `checkpoints` (1 when none names one).
pub fn attempts(checkpoints: &[ReportCheckpoint]) -> u32 {
    checkpoints
        .iter()
        .filter_map(|c| c.attempt)
        .max()
        .unwrap_or(1)
}

/// The filters of `GET /v1/launches` and `GET /v1/launches/stats`; each absent one matches
/// everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct LaunchQuery {
    /// The client name that sent the report.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub outcome: Option<Outcome>,
    /// Launches started at or after this time (milliseconds since the Unix epoch).
    #[serde(default)]
    pub since: Option<u64>,
}

impl LaunchQuery {
    /// The query string's parameters, set ones only.
    pub fn parameters(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (key, value) in [
            ("user", &self.user),
            ("resource", &self.resource),
            ("gateway", &self.gateway),
        ] {
            if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
                out.push((key, v.clone()));
            }
        }
        if let Some(outcome) = self.outcome {
            out.push(("outcome", outcome.as_str().to_owned()));
        }
        if let Some(since) = self.since {
            out.push(("since", since.to_string()));
        }
        out
    }
}

/// One stored launch, as `GET /v1/launches` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct LaunchSummary {
    /// The client name of the token that sent the report.
    pub user: String,
    pub launch_id: String,
    pub resource: String,
    pub gateway: Option<String>,
    pub profile: String,
    pub outcome: Outcome,
    pub code: Option<Code>,
    pub started_unix_ms: u64,
    pub received_unix_ms: u64,
    pub total_ms: f64,
    /// The highest offer attempt.
    pub attempts: u32,
    pub checkpoints: Vec<ReportCheckpoint>,
    pub client_version: Option<String>,
}

/// Reply of `GET /v1/launches`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct LaunchList {
    pub launches: Vec<LaunchSummary>,
}

/// What `GET /v1/launches/stats` groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Phase,
    Gateway,
    Resource,
}

impl GroupBy {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Phase => "phase",
            GroupBy::Gateway => "gateway",
            GroupBy::Resource => "resource",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "phase" => Some(GroupBy::Phase),
            "gateway" => Some(GroupBy::Gateway),
            "resource" => Some(GroupBy::Resource),
            _ => None,
        }
    }
}

/// One phase's steps in one group: how many, and their nearest-rank percentiles (ms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct PhaseStats {
    /// The gateway or resource (absent when grouped by phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub group: Option<String>,
    pub phase: String,
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    /// The median of this phase over every matching launch (the fleet), to compare with.
    pub fleet_p50: f64,
}

/// The launches' totals in one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct TotalStats {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub group: Option<String>,
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

/// Reply of `GET /v1/launches/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct LaunchStats {
    pub group_by: GroupBy,
    /// How many launches the figures are over.
    pub launches: u64,
    /// Per phase (and per group), in pipeline order of first appearance.
    pub phases: Vec<PhaseStats>,
    /// The launches' totals: the fleet's first (no group), then each group's.
    pub totals: Vec<TotalStats>,
}

/// Reply of `GET /v1/me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct WhoAmI {
    /// The client name of the token.
    pub client: String,
    pub roles: Vec<String>,
    /// Whether this router keeps launch reports.
    pub reports: bool,
}

/// The nearest-rank percentile `p` (0 < p ≤ 100) of `sorted` (ascending, not empty): the
/// value at 1-based rank ⌈p/100 × n⌉.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> LaunchReport {
        LaunchReport {
            v: 1,
            launch_id: "abcd1234".into(),
            resource: "demo-echo".into(),
            gateway: Some("lab".into()),
            profile: "fast".into(),
            outcome: Outcome::Ok,
            code: None,
            started_unix_ms: 1,
            total_ms: 12.5,
            checkpoints: vec![ReportCheckpoint {
                phase: "ready".into(),
                step_ms: 1.0,
                total_ms: 12.5,
                attempt: None,
            }],
            client_version: Some("0.1.0".into()),
        }
    }

    #[test]
    fn a_good_report_passes_and_each_bad_field_is_named() {
        assert_eq!(report().validate(), Ok(()));
        let mut r = report();
        r.checkpoints[0].phase = "Ready!".into();
        assert!(r
            .validate()
            .unwrap_err()
            .starts_with("checkpoints[0].phase"));
        let mut r = report();
        r.checkpoints[0].step_ms = f64::NAN;
        assert!(r.validate().unwrap_err().starts_with("checkpoints[0]"));
        let mut r = report();
        r.launch_id = "x".into();
        assert!(r.validate().unwrap_err().starts_with("launch_id"));
        let mut r = report();
        r.outcome = Outcome::Failed;
        assert!(r.validate().unwrap_err().starts_with("code"));
        r.code = Some(Code::ControllerDown);
        assert_eq!(r.validate(), Ok(()));
        let mut r = report();
        r.gateway = Some("../x".into());
        assert!(r.validate().unwrap_err().starts_with("gateway"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut json = serde_json::to_value(report()).unwrap();
        json["token"] = "secret".into();
        assert!(serde_json::from_value::<LaunchReport>(json).is_err());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 5.0);
        assert_eq!(percentile(&v, 90.0), 9.0);
        assert_eq!(percentile(&v, 99.0), 10.0);
        assert_eq!(percentile(&[7.0], 50.0), 7.0);
        assert_eq!(percentile(&[1.0, 2.0], 50.0), 1.0);
    }
}
