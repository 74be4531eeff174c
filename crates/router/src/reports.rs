//! Launch reports: clients send how each launch went (`POST /v1/launches`), the router keeps
//! them in an embedded SQLite store for `retention_hours` and at most `max_reports` of them,
//! and tokens with the `support` role read them back (`GET /v1/launches`,
//! `GET /v1/launches/stats`). `GET /v1/me` tells any client token its name, its roles and
//! whether this router keeps reports. Section 3.2 of docs/PROTOCOL.md is the contract.
//!
//! The store is touched only on blocking threads, one statement at a time behind a mutex; a
//! report's body is bounded (`max_report_bytes`) and read like every other body (token first,
//! then size, each part within the idle timeout).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Extension, Json, Router};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use sallyport_protocol::report::{
    percentile, GroupBy, LaunchList, LaunchReport, LaunchStats, LaunchSummary, Outcome, PhaseStats,
    TotalStats, WhoAmI, DEFAULT_LIST_LIMIT, LAUNCHES_PATH, LAUNCH_STATS_PATH, MAX_LIST_LIMIT,
    MAX_STATS_LAUNCHES, SUPPORT_ROLE, WHOAMI_PATH,
};
use sallyport_protocol::{Code, PROTOCOL_VERSION};
use serde::Deserialize;

use crate::config::ClientEntry;
use crate::{source_of, ClientAddr, RouterError, Shared};

/// `[reports]` in the router's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsConfig {
    /// Keep launch reports (off: the endpoints answer 404 `reports_disabled`).
    #[serde(default)]
    pub enabled: bool,
    /// The SQLite file; without it the reports live in memory until the router stops.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A report is kept this long after its launch started.
    #[serde(default = "default_retention_hours")]
    pub retention_hours: u64,
    /// At most this many reports are kept; past it the oldest received go first.
    #[serde(default = "default_max_reports")]
    pub max_reports: u64,
    /// At most this many from one user; past it that user's oldest go first, so that no one
    /// user's reports can push out everyone else's.
    #[serde(default = "default_max_reports_per_user")]
    pub max_reports_per_user: u64,
    /// Largest report body, in bytes (413 `too_large` past it).
    #[serde(default = "default_max_report_bytes")]
    pub max_report_bytes: usize,
}

fn default_retention_hours() -> u64 {
    24 * 30
}
fn default_max_reports() -> u64 {
    100_000
}
fn default_max_reports_per_user() -> u64 {
    5_000
}
fn default_max_report_bytes() -> usize {
    32 * 1024
}

impl Default for ReportsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            path: None,
            retention_hours: default_retention_hours(),
            max_reports: default_max_reports(),
            max_reports_per_user: default_max_reports_per_user(),
            max_report_bytes: default_max_report_bytes(),
        }
    }
}

impl ReportsConfig {
    /// Check every field; the message names it (`reports.max_reports: ...`).
    pub(crate) fn validate(&self) -> Result<(), RouterError> {
        let bad =
            |field: &str, why: &str| Err(RouterError::Config(format!("reports.{field}: {why}")));
        if self.retention_hours < 1 {
            return bad("retention_hours", "must be at least 1");
        }
        if self.max_reports < 1 {
            return bad("max_reports", "must be at least 1");
        }
        if self.max_reports_per_user < 1 {
            return bad("max_reports_per_user", "must be at least 1");
        }
        if !(1024..=1024 * 1024).contains(&self.max_report_bytes) {
            return bad("max_report_bytes", "must be from 1024 to 1048576");
        }
        Ok(())
    }
}

/// The reports this router keeps, or none when they are off.
pub(crate) struct Reports {
    config: ReportsConfig,
    store: Option<Store>,
}

impl Reports {
    /// Open the store the configuration asks for (nothing when reports are off); an error
    /// names `reports.path`.
    pub(crate) fn open(config: &ReportsConfig) -> Result<Self, RouterError> {
        let store = if config.enabled {
            Some(Store::open(config.path.as_ref()).map_err(|e| {
                let path = config
                    .path
                    .as_ref()
                    .map_or_else(|| ":memory:".into(), |p| p.display().to_string());
                RouterError::Config(format!("reports.path: cannot open {path}: {e}"))
            })?)
        } else {
            None
        };
        Ok(Self {
            config: config.clone(),
            store,
        })
    }

    /// As [`open`](Self::open), but a store that cannot be opened leaves reports off (and
    /// says so in the log); [`crate::spawn`] has refused such a configuration already.
    pub(crate) fn open_or_off(config: &ReportsConfig) -> Self {
        Self::open(config).unwrap_or_else(|e| {
            tracing::error!(error = %e, "launch reports are off");
            Self {
                config: config.clone(),
                store: None,
            }
        })
    }

    fn store(&self) -> Result<&Store, RouterError> {
        self.store.as_ref().ok_or(RouterError::ReportsDisabled)
    }

    pub(crate) fn retention_cutoff(&self) -> u64 {
        now_ms().saturating_sub(self.config.retention_hours.saturating_mul(3_600_000))
    }

    fn limits(&self) -> Limits {
        Limits {
            cutoff: self.retention_cutoff(),
            max_reports: self.config.max_reports,
            max_per_user: self.config.max_reports_per_user,
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The SQLite store: one connection, used on blocking threads.
#[derive(Clone)]
struct Store {
    db: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS launches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    launch_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    gateway TEXT,
    profile TEXT NOT NULL,
    outcome TEXT NOT NULL,
    code TEXT,
    started_unix_ms INTEGER NOT NULL,
    received_unix_ms INTEGER NOT NULL,
    total_ms REAL NOT NULL,
    attempts INTEGER NOT NULL,
    checkpoints TEXT NOT NULL,
    client_version TEXT,
    UNIQUE (user, launch_id)
);
CREATE INDEX IF NOT EXISTS launches_started ON launches (started_unix_ms);
CREATE INDEX IF NOT EXISTS launches_user ON launches (user, id);
CREATE TABLE IF NOT EXISTS fleet_position (
    stream TEXT PRIMARY KEY,
    last_id TEXT NOT NULL
);
";

const COLUMNS: &str = "user, launch_id, resource, gateway, profile, outcome, code, \
     started_unix_ms, received_unix_ms, total_ms, attempts, checkpoints, client_version";

impl Store {
    fn open(path: Option<&PathBuf>) -> rusqlite::Result<Self> {
        let db = match path {
            Some(path) => {
                let db = Connection::open(path)?;
                db.pragma_update(None, "journal_mode", "WAL")?;
                db
            }
            None => Connection::open_in_memory()?,
        };
        db.execute_batch(SCHEMA)?;
        Ok(Self {
            db: Arc::new(Mutex::new(db)),
        })
    }

    /// Run `f` on the connection on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, RouterError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let db = db.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&db)
        })
        .await
        .map_err(|e| RouterError::Store(e.to_string()))?
        .map_err(|e| RouterError::Store(e.to_string()))
    }
}

/// What [`insert`] keeps: nothing started before `cutoff`, at most `max_reports` in all and
/// `max_per_user` from one user.
#[derive(Debug, Clone, Copy)]
struct Limits {
    cutoff: u64,
    max_reports: u64,
    max_per_user: u64,
}

/// Keep `report` from `user`, received at `received_unix_ms` (a report with the same user and
/// launch id replaces the earlier one), then drop what is past the retention and beyond the
/// caps (the user's, then the store's).
fn insert(
    db: &Connection,
    user: &str,
    report: &LaunchReport,
    received_unix_ms: u64,
    limits: Limits,
) -> rusqlite::Result<()> {
    insert_row(db, user, report, received_unix_ms)?;
    trim(db, &[user], limits)
}

/// Keep `report` from `user`, replacing an earlier one with the same launch id.
fn insert_row(
    db: &Connection,
    user: &str,
    report: &LaunchReport,
    received_unix_ms: u64,
) -> rusqlite::Result<()> {
    let checkpoints = serde_json::to_string(&report.checkpoints).expect("checkpoints serialize");
    db.execute(
        &format!(
            "INSERT OR REPLACE INTO launches ({COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        params![
            user,
            report.launch_id,
            report.resource,
            report.gateway,
            report.profile,
            report.outcome.as_str(),
            report.code.map(|c| c.as_str()),
            report.started_unix_ms as i64,
            received_unix_ms as i64,
            report.total_ms,
            report.attempts(),
            checkpoints,
            report.client_version,
        ],
    )?;
    Ok(())
}

/// Drop what is past the retention, beyond the cap of each of `users`, then beyond the
/// store's cap (the oldest received first each time).
fn trim(db: &Connection, users: &[&str], limits: Limits) -> rusqlite::Result<()> {
    db.execute(
        "DELETE FROM launches WHERE started_unix_ms < ?1",
        params![limits.cutoff as i64],
    )?;
    for user in users {
        let users_last_dropped: Option<i64> = db
            .query_row(
                "SELECT id FROM launches WHERE user = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2",
                params![user, limits.max_per_user as i64],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(id) = users_last_dropped {
            db.execute(
                "DELETE FROM launches WHERE user = ?1 AND id <= ?2",
                params![user, id],
            )?;
        }
    }
    let last_dropped: Option<i64> = db
        .query_row(
            "SELECT id FROM launches ORDER BY id DESC LIMIT 1 OFFSET ?1",
            params![limits.max_reports as i64],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(id) = last_dropped {
        db.execute("DELETE FROM launches WHERE id <= ?1", params![id])?;
    }
    Ok(())
}

/// The filters of `GET /v1/launches` and `/v1/launches/stats`.
#[derive(Debug, Default, Clone)]
struct Filter {
    user: Option<String>,
    resource: Option<String>,
    gateway: Option<String>,
    outcome: Option<Outcome>,
    since: Option<u64>,
}

impl Filter {
    /// `WHERE ...` and its parameters, always within the retention.
    fn clause(&self, cutoff: u64) -> (String, Vec<rusqlite::types::Value>) {
        use rusqlite::types::Value;
        let mut parts = vec!["started_unix_ms >= ?".to_owned()];
        let mut values = vec![Value::Integer(cutoff.max(self.since.unwrap_or(0)) as i64)];
        for (column, value) in [
            ("user", &self.user),
            ("resource", &self.resource),
            ("gateway", &self.gateway),
        ] {
            if let Some(value) = value {
                parts.push(format!("{column} = ?"));
                values.push(Value::Text(value.clone()));
            }
        }
        if let Some(outcome) = self.outcome {
            parts.push("outcome = ?".into());
            values.push(Value::Text(outcome.as_str().into()));
        }
        (format!("WHERE {}", parts.join(" AND ")), values)
    }
}

fn select(
    db: &Connection,
    filter: &Filter,
    cutoff: u64,
    limit: u32,
) -> rusqlite::Result<Vec<LaunchSummary>> {
    let (clause, mut values) = filter.clause(cutoff);
    values.push(rusqlite::types::Value::Integer(i64::from(limit)));
    let mut statement = db.prepare(&format!(
        "SELECT {COLUMNS} FROM launches {clause} ORDER BY started_unix_ms DESC, id DESC LIMIT ?"
    ))?;
    let rows = statement.query_map(params_from_iter(values), |row| {
        let outcome: String = row.get(5)?;
        let code: Option<String> = row.get(6)?;
        let checkpoints: String = row.get(11)?;
        Ok(LaunchSummary {
            user: row.get(0)?,
            launch_id: row.get(1)?,
            resource: row.get(2)?,
            gateway: row.get(3)?,
            profile: row.get(4)?,
            outcome: Outcome::parse(&outcome).unwrap_or(Outcome::Failed),
            code: code.map(|c| Code::from_wire(&c)),
            started_unix_ms: row.get::<_, i64>(7)?.max(0) as u64,
            received_unix_ms: row.get::<_, i64>(8)?.max(0) as u64,
            total_ms: row.get(9)?,
            attempts: row.get(10)?,
            checkpoints: serde_json::from_str(&checkpoints).unwrap_or_default(),
            client_version: row.get(12)?,
        })
    })?;
    rows.collect()
}

/// Per-phase nearest-rank percentiles of `launches`, for the fleet and per group.
fn stats(launches: &[LaunchSummary], group_by: GroupBy) -> LaunchStats {
    type Steps = HashMap<String, Vec<f64>>;
    let mut fleet: Steps = HashMap::new();
    let mut at: HashMap<String, Vec<f64>> = HashMap::new();
    let mut groups: HashMap<String, (Steps, Vec<f64>)> = HashMap::new();
    let mut fleet_totals = Vec::new();
    for launch in launches {
        fleet_totals.push(launch.total_ms);
        let group = match group_by {
            GroupBy::Phase => None,
            GroupBy::Gateway => Some(launch.gateway.clone()),
            GroupBy::Resource => Some(Some(launch.resource.clone())),
        };
        // Launches whose report names no gateway count in the fleet only.
        let mut group = match group {
            Some(Some(key)) => Some(groups.entry(key).or_default()),
            _ => None,
        };
        if let Some((_, totals)) = group.as_mut() {
            totals.push(launch.total_ms);
        }
        for c in &launch.checkpoints {
            // A failure is no phase's work.
            if c.phase == "failed" {
                continue;
            }
            fleet.entry(c.phase.clone()).or_default().push(c.step_ms);
            at.entry(c.phase.clone()).or_default().push(c.total_ms);
            if let Some((steps, _)) = group.as_mut() {
                steps.entry(c.phase.clone()).or_default().push(c.step_ms);
            }
        }
    }
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    // Phases in pipeline order: by the median time at which they were reached.
    let mut order: Vec<(String, f64)> = at
        .into_iter()
        .map(|(phase, totals)| {
            let median = percentile(&sorted(totals), 50.0);
            (phase, median)
        })
        .collect();
    order.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    let fleet: HashMap<String, Vec<f64>> = fleet.into_iter().map(|(k, v)| (k, sorted(v))).collect();
    let fleet_p50 = |phase: &str| fleet.get(phase).map_or(0.0, |v| percentile(v, 50.0));
    let row = |group: Option<String>, phase: &str, steps: &[f64]| PhaseStats {
        group,
        phase: phase.to_owned(),
        count: steps.len() as u64,
        p50: percentile(steps, 50.0),
        p90: percentile(steps, 90.0),
        p99: percentile(steps, 99.0),
        fleet_p50: fleet_p50(phase),
    };
    let total = |group: Option<String>, totals: &[f64]| TotalStats {
        group,
        count: totals.len() as u64,
        p50: percentile(totals, 50.0),
        p90: percentile(totals, 90.0),
        p99: percentile(totals, 99.0),
    };
    let mut phases = Vec::new();
    let mut totals = vec![total(None, &sorted(fleet_totals))];
    if group_by == GroupBy::Phase {
        for (phase, _) in &order {
            phases.push(row(None, phase, &fleet[phase]));
        }
    } else {
        let mut keys: Vec<String> = groups.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let (steps, group_totals) = groups.remove(&key).expect("a key of the map");
            for (phase, _) in &order {
                if let Some(steps) = steps.get(phase) {
                    phases.push(row(Some(key.clone()), phase, &sorted(steps.clone())));
                }
            }
            totals.push(total(Some(key), &sorted(group_totals)));
        }
    }
    LaunchStats {
        group_by,
        launches: launches.len() as u64,
        phases,
        totals,
    }
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(LAUNCHES_PATH, get(list).post(submit))
        .route(LAUNCH_STATS_PATH, get(launch_stats))
        .route(WHOAMI_PATH, get(whoami))
}

/// The token's client; a refused token goes to the audit trail, as on every endpoint.
async fn client<'a>(
    shared: &'a Shared,
    headers: &HeaderMap,
    source: Option<IpAddr>,
) -> Result<std::borrow::Cow<'a, ClientEntry>, RouterError> {
    shared
        .client_for_token(headers)
        .await
        .map_err(|refusal| shared.refused_sign_in(source, refusal))
}

/// A support token's client, once the token, the reports and the role are known good.
async fn support<'a>(
    shared: &'a Shared,
    headers: &HeaderMap,
    source: Option<IpAddr>,
) -> Result<(std::borrow::Cow<'a, ClientEntry>, &'a Store), RouterError> {
    let client = client(shared, headers, source).await?;
    let store = shared.reports.store()?;
    if !client.roles.iter().any(|r| r == SUPPORT_ROLE) {
        return Err(RouterError::Forbidden(format!(
            "client {:?} does not have the {SUPPORT_ROLE} role",
            client.name
        )));
    }
    Ok((client, store))
}

async fn whoami(
    State(shared): State<Arc<Shared>>,
    addr: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
) -> Result<Json<WhoAmI>, RouterError> {
    let client = client(&shared, &headers, source_of(addr))
        .await
        .map_err(|e| shared.fail(e))?;
    Ok(Json(WhoAmI {
        client: client.name.clone(),
        roles: client.roles.clone(),
        reports: shared.reports.store.is_some(),
    }))
}

async fn submit(
    State(shared): State<Arc<Shared>>,
    request: Request,
) -> Result<StatusCode, RouterError> {
    let result = store_report(&shared, request).await;
    result.map_err(|e| shared.fail(e))
}

async fn store_report(shared: &Shared, request: Request) -> Result<StatusCode, RouterError> {
    let (parts, body) = request.into_parts();
    let source = parts.extensions.get::<ClientAddr>().map(|a| a.0);
    let client = client(shared, &parts.headers, source).await?;
    let store = shared.reports.store()?;
    let max = shared.reports.config.max_report_bytes;
    let body = crate::read_body(&parts.headers, body, max, shared.limits.idle).await?;
    let report: LaunchReport =
        serde_json::from_slice(&body).map_err(|e| RouterError::Malformed(e.to_string()))?;
    if report.v != PROTOCOL_VERSION {
        return Err(RouterError::UnsupportedVersion(report.v));
    }
    report.validate().map_err(RouterError::Malformed)?;
    if !Shared::may_launch(&client, &report.resource) {
        return Err(RouterError::Forbidden(format!(
            "client {:?} may not launch resource {:?}",
            client.name, report.resource
        )));
    }
    if let Some(gateway) = &report.gateway {
        if !shared.config.gateways.iter().any(|g| &g.id == gateway) {
            return Err(RouterError::UnknownGateway(gateway.clone()));
        }
    }
    let user = client.name.clone();
    let limits = shared.reports.limits();
    let cap = limits.max_reports;
    let received = now_ms();
    let shared_report = shared.fleet.as_ref().map(|_| SharedReport {
        user: user.clone(),
        received_unix_ms: received,
        report: report.clone(),
    });
    store
        .with(move |db| insert(db, &user, &report, received, limits))
        .await?;
    // In a fleet every router keeps every report: the others copy it from Redis. Kept here
    // already, the report is not refused if Redis is away; the other routers miss it.
    if let (Some(fleet), Some(shared_report)) = (&shared.fleet, shared_report) {
        fleet.publish_report(&shared_report, cap);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A launch report as the fleet's routers pass it on through Redis (`P:reports`).
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SharedReport {
    pub user: String,
    pub received_unix_ms: u64,
    pub report: LaunchReport,
}

impl Reports {
    /// Whether this router keeps reports (and so copies the fleet's).
    pub(crate) fn enabled(&self) -> bool {
        self.store.is_some()
    }

    /// How far this router has copied the fleet's report stream `stream` (`0-0`: not at all).
    pub(crate) async fn fleet_position(&self, stream: &str) -> Result<String, RouterError> {
        let stream = stream.to_owned();
        let position = self
            .store()?
            .with(move |db| {
                db.query_row(
                    "SELECT last_id FROM fleet_position WHERE stream = ?1",
                    params![stream],
                    |row| row.get::<_, String>(0),
                )
                .optional()
            })
            .await?;
        Ok(position.unwrap_or_else(|| "0-0".into()))
    }

    /// Keep reports other routers received, in the stream's order, and remember that the
    /// stream was read up to `last_id`; all in one transaction. A report that does not pass
    /// the checks of `POST /v1/launches` is skipped.
    pub(crate) async fn copy_from_fleet(
        &self,
        stream: &str,
        reports: Vec<SharedReport>,
        last_id: String,
    ) -> Result<(), RouterError> {
        let limits = self.limits();
        let stream = stream.to_owned();
        self.store()?
            .with(move |db| {
                let tx = db.unchecked_transaction()?;
                let mut users: Vec<&str> = Vec::new();
                for shared in &reports {
                    if shared.report.v != PROTOCOL_VERSION || shared.report.validate().is_err() {
                        tracing::warn!(launch = %shared.report.launch_id,
                            "fleet: skipped a launch report that does not pass the checks");
                        continue;
                    }
                    insert_row(&tx, &shared.user, &shared.report, shared.received_unix_ms)?;
                    if !users.contains(&shared.user.as_str()) {
                        users.push(&shared.user);
                    }
                }
                // Once per batch: ids only grow, so this keeps what trimming after each
                // report would have kept.
                trim(&tx, &users, limits)?;
                tx.execute(
                    "INSERT OR REPLACE INTO fleet_position (stream, last_id) VALUES (?1, ?2)",
                    params![stream, last_id],
                )?;
                tx.commit()
            })
            .await
    }
}

/// The query's parameters, each at most once, each known to the endpoint; empty values are
/// no filter.
fn parameters(raw: Option<&str>, known: &[&str]) -> Result<HashMap<String, String>, RouterError> {
    let mut out = HashMap::new();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !known.contains(&key.as_ref()) {
            return Err(RouterError::Malformed(format!(
                "unknown parameter {key:?} (known: {})",
                known.join(", ")
            )));
        }
        if out.contains_key(key.as_ref()) {
            return Err(RouterError::Malformed(format!(
                "parameter {key:?} is given twice"
            )));
        }
        if value.len() > 128 {
            return Err(RouterError::Malformed(format!(
                "parameter {key:?} is longer than 128 characters"
            )));
        }
        if !value.is_empty() {
            out.insert(key.into_owned(), value.into_owned());
        }
    }
    Ok(out)
}

const FILTERS: &[&str] = &["user", "resource", "gateway", "outcome", "since"];

fn filter(params: &mut HashMap<String, String>) -> Result<Filter, RouterError> {
    let name = |params: &mut HashMap<String, String>, key: &str| match params.remove(key) {
        Some(v) if !sallyport_protocol::valid_resource_name(&v) => Err(RouterError::Malformed(
            format!("{key} {}", sallyport_protocol::RESOURCE_NAME_RULE),
        )),
        other => Ok(other),
    };
    Ok(Filter {
        user: params.remove("user"),
        resource: name(params, "resource")?,
        gateway: name(params, "gateway")?,
        outcome: match params.remove("outcome") {
            None => None,
            Some(v) => Some(Outcome::parse(&v).ok_or_else(|| {
                RouterError::Malformed(format!("outcome {v:?} is not ok or failed"))
            })?),
        },
        since: match params.remove("since") {
            None => None,
            Some(v) => Some(v.parse().map_err(|_| {
                RouterError::Malformed(format!(
                    "since {v:?} is not a time in milliseconds since the Unix epoch"
                ))
            })?),
        },
    })
}

async fn list(
    State(shared): State<Arc<Shared>>,
    addr: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<LaunchList>, RouterError> {
    let result = async {
        let (_, store) = support(&shared, &headers, source_of(addr)).await?;
        let known: Vec<&str> = FILTERS.iter().copied().chain(["limit"]).collect();
        let mut params = parameters(query.as_deref(), &known)?;
        let limit = match params.remove("limit") {
            None => DEFAULT_LIST_LIMIT,
            Some(v) => v
                .parse()
                .ok()
                .filter(|n| (1..=MAX_LIST_LIMIT).contains(n))
                .ok_or_else(|| {
                    RouterError::Malformed(format!(
                        "limit {v:?} is not a number from 1 to {MAX_LIST_LIMIT}"
                    ))
                })?,
        };
        let filter = filter(&mut params)?;
        let cutoff = shared.reports.retention_cutoff();
        let launches = store
            .with(move |db| select(db, &filter, cutoff, limit))
            .await?;
        Ok(Json(LaunchList { launches }))
    }
    .await;
    result.map_err(|e| shared.fail(e))
}

async fn launch_stats(
    State(shared): State<Arc<Shared>>,
    addr: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<LaunchStats>, RouterError> {
    let result = async {
        let (_, store) = support(&shared, &headers, source_of(addr)).await?;
        let known: Vec<&str> = FILTERS.iter().copied().chain(["group_by"]).collect();
        let mut params = parameters(query.as_deref(), &known)?;
        let group_by = match params.remove("group_by") {
            None => GroupBy::Phase,
            Some(v) => GroupBy::parse(&v).ok_or_else(|| {
                RouterError::Malformed(format!("group_by {v:?} is not phase, gateway or resource"))
            })?,
        };
        let filter = filter(&mut params)?;
        let cutoff = shared.reports.retention_cutoff();
        let launches = store
            .with(move |db| select(db, &filter, cutoff, MAX_STATS_LAUNCHES))
            .await?;
        Ok(Json(stats(&launches, group_by)))
    }
    .await;
    result.map_err(|e| shared.fail(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sallyport_protocol::report::ReportCheckpoint;

    fn summary(gateway: &str, steps: &[(&str, f64)]) -> LaunchSummary {
        let mut total = 0.0;
        let checkpoints = steps
            .iter()
            .map(|(phase, step)| {
                total += step;
                ReportCheckpoint {
                    phase: (*phase).into(),
                    step_ms: *step,
                    total_ms: total,
                    attempt: None,
                }
            })
            .collect();
        LaunchSummary {
            user: "u".into(),
            launch_id: "abcd1234".into(),
            resource: "r".into(),
            gateway: Some(gateway.into()),
            profile: "fast".into(),
            outcome: Outcome::Ok,
            code: None,
            started_unix_ms: 0,
            received_unix_ms: 0,
            total_ms: total,
            attempts: 1,
            checkpoints,
            client_version: None,
        }
    }

    #[test]
    fn stats_per_gateway_compare_with_the_fleet() {
        let launches = [
            summary("a", &[("create_tube_ok", 10.0), ("answer_received", 20.0)]),
            summary("a", &[("create_tube_ok", 12.0), ("answer_received", 22.0)]),
            summary(
                "b",
                &[
                    ("create_tube_ok", 11.0),
                    ("answer_received", 200.0),
                    ("failed", 5.0),
                ],
            ),
        ];
        let by_phase = stats(&launches, GroupBy::Phase);
        assert_eq!(by_phase.launches, 3);
        let phases: Vec<_> = by_phase.phases.iter().map(|p| p.phase.as_str()).collect();
        assert_eq!(
            phases,
            ["create_tube_ok", "answer_received"],
            "pipeline order, no failed"
        );
        assert_eq!(by_phase.phases[1].p50, 22.0);
        assert_eq!(by_phase.phases[1].p99, 200.0);

        let by_gateway = stats(&launches, GroupBy::Gateway);
        let b = by_gateway
            .phases
            .iter()
            .find(|p| p.group.as_deref() == Some("b") && p.phase == "answer_received")
            .unwrap();
        assert_eq!((b.count, b.p50, b.fleet_p50), (1, 200.0, 22.0));
        assert_eq!(by_gateway.totals[0].group, None);
        assert_eq!(by_gateway.totals.len(), 3);
    }
}
