//! The audit trail: one JSON line per event in `audit_log` (docs/PROTOCOL.md section 9), and
//! reading it back (`sallyport-router audit`). It names who did what (the client's name, the
//! resource, the gateway, the conversation), never a token, a key or a target address.

use std::collections::HashMap;
use std::io::BufRead;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sallyport_ops::jsonl::JsonLines;
use sallyport_protocol::{Code, ConversationReport, ReportEvent};
use serde::{Deserialize, Serialize};

use crate::RouterError;

/// The events, as the `event` field spells them.
pub mod events {
    pub const SIGN_IN: &str = "sign_in";
    pub const SIGN_IN_REFUSED: &str = "sign_in_refused";
    pub const LAUNCH_REQUESTED: &str = "launch_requested";
    pub const LAUNCH_REFUSED: &str = "launch_refused";
    pub const TUBE_CONNECTED: &str = "tube_connected";
    pub const SESSION_CLOSED: &str = "session_closed";
    pub const GATEWAY_CONNECTED: &str = "gateway_connected";
    pub const GATEWAY_REFUSED: &str = "gateway_refused";
    pub const GATEWAY_DISCONNECTED: &str = "gateway_disconnected";
}

/// One line of the audit log. Absent fields are left out of the line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// UTC time, `2025-03-01T09:30:00.250Z`; written by the log itself.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ts: String,
    pub event: String,
    /// The client's name in the router's configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The IP address the request came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// The error code of a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The close reason of a session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_from_client: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_to_client: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

impl AuditRecord {
    pub fn new(event: &str) -> Self {
        Self {
            event: event.to_owned(),
            ..Self::default()
        }
    }

    pub fn source(mut self, source: Option<IpAddr>) -> Self {
        self.source = source.map(|ip| ip.to_string());
        self
    }

    /// The launch fields: who, what, through which gateway, which conversation.
    pub fn launch(mut self, user: &str, resource: &str, gateway: &str, conversation: &str) -> Self {
        self.user = Some(user.to_owned());
        self.resource = Some(resource.to_owned());
        self.gateway = Some(gateway.to_owned());
        self.conversation_id = Some(conversation.to_owned());
        self
    }
}

/// Who launched a conversation, kept until its gateway reports it closed, so the gateway's
/// reports can be attributed.
struct Launch {
    user: String,
    resource: String,
    gateway: String,
    at: Instant,
}

/// A launch never reported closed (its gateway died, say) is forgotten after this long.
const LAUNCH_MEMORY: Duration = Duration::from_secs(7 * 24 * 3600);
/// A user's sign-in from an address is written once, and again only after this long without
/// one from there: clients refresh their resource list every few seconds.
const SIGN_IN_QUIET: Duration = Duration::from_secs(3600);

/// The audit trail of a running router; does nothing without `audit_log`.
#[derive(Default)]
pub(crate) struct Audit {
    log: Option<JsonLines>,
    launches: Mutex<HashMap<String, Launch>>,
    /// When each user last signed in from each address.
    signed_in: Mutex<HashMap<(String, Option<IpAddr>), Instant>>,
}

impl Audit {
    pub fn disabled() -> Self {
        Self::default()
    }

    pub fn open(path: Option<&Path>) -> Result<Self, RouterError> {
        let log = path
            .map(|path| {
                JsonLines::open(path).map_err(|e| {
                    RouterError::Config(format!("audit_log {}: cannot open: {e}", path.display()))
                })
            })
            .transpose()?;
        Ok(Self {
            log,
            ..Self::default()
        })
    }

    pub fn enabled(&self) -> bool {
        self.log.is_some()
    }

    /// Open the file anew, after a rotation (on SIGHUP).
    pub fn reopen(&self) -> std::io::Result<()> {
        self.log.as_ref().map_or(Ok(()), |log| log.reopen())
    }

    pub fn record(&self, record: &AuditRecord) {
        if let Some(log) = &self.log {
            log.append(record);
        }
    }

    /// A client's token was accepted for its resource list: a `sign_in`, unless the same user
    /// signed in from the same address less than [`SIGN_IN_QUIET`] before.
    pub fn signed_in(&self, user: &str, source: Option<IpAddr>) {
        if !self.enabled() {
            return;
        }
        let now = Instant::now();
        let previous = self
            .signed_in
            .lock()
            .unwrap()
            .insert((user.to_owned(), source), now);
        if previous.is_none_or(|at| now.duration_since(at) >= SIGN_IN_QUIET) {
            self.record(&AuditRecord {
                user: Some(user.to_owned()),
                ..AuditRecord::new(events::SIGN_IN).source(source)
            });
        }
    }

    /// A gateway accepted a launch: remember who made it, for the gateway's reports.
    pub fn launched(&self, user: &str, resource: &str, gateway: &str, conversation: &str) {
        if !self.enabled() {
            return;
        }
        self.launches.lock().unwrap().insert(
            conversation.to_owned(),
            Launch {
                user: user.to_owned(),
                resource: resource.to_owned(),
                gateway: gateway.to_owned(),
                at: Instant::now(),
            },
        );
    }

    /// Record a gateway's report about one of its conversations. A report about a conversation
    /// the router bound to another gateway is refused (`forbidden`), and one with an invalid id
    /// is `malformed`; both are left out of the log.
    pub fn report(&self, gateway: &str, report: ConversationReport) -> Result<(), Code> {
        if !sallyport_protocol::valid_conversation_id(&report.conversation_id) {
            return Err(Code::Malformed);
        }
        let mut launches = self.launches.lock().unwrap();
        let launch = launches.get(&report.conversation_id);
        if launch.is_some_and(|l| l.gateway != gateway) {
            return Err(Code::Forbidden);
        }
        let mut record = AuditRecord::new(report.event.as_str());
        record.gateway = Some(gateway.to_owned());
        record.conversation_id = Some(report.conversation_id.clone());
        match launch {
            Some(launch) => {
                record.user = Some(launch.user.clone());
                record.resource = Some(launch.resource.clone());
            }
            // Launched before this router started: the gateway's word for the resource.
            None => {
                record.resource = sallyport_protocol::valid_resource_name(&report.resource)
                    .then_some(report.resource);
            }
        }
        if report.event == ReportEvent::SessionClosed {
            launches.remove(&report.conversation_id);
            record.reason = report.reason.map(|r| r.as_str().to_owned());
            record.bytes_from_client = report.bytes_from_client;
            record.bytes_to_client = report.bytes_to_client;
            record.duration_ms = report.duration_ms;
        }
        drop(launches);
        self.record(&record);
        Ok(())
    }

    pub fn sweep(&self) {
        self.launches
            .lock()
            .unwrap()
            .retain(|_, l| l.at.elapsed() < LAUNCH_MEMORY);
        self.signed_in
            .lock()
            .unwrap()
            .retain(|_, at| at.elapsed() < SIGN_IN_QUIET);
    }
}

/// Which lines `sallyport-router audit` prints.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// The earliest `ts` to print (the format of [`sallyport_ops::jsonl::timestamp`]).
    pub since: String,
    pub user: Option<String>,
    pub resource: Option<String>,
}

impl AuditQuery {
    pub fn matches(&self, record: &AuditRecord) -> bool {
        record.ts >= self.since
            && self
                .user
                .as_ref()
                .is_none_or(|u| record.user.as_ref() == Some(u))
            && self
                .resource
                .as_ref()
                .is_none_or(|r| record.resource.as_ref() == Some(r))
    }
}

/// The records of the audit log at `path` that `query` selects, in file order, and the number
/// of lines that are not audit records (reported, not fatal: a line cut by a full disk must not
/// hide the rest).
pub fn read(path: &Path, query: &AuditQuery) -> std::io::Result<(Vec<AuditRecord>, usize)> {
    let file = std::fs::File::open(path)?;
    let mut records = Vec::new();
    let mut unreadable = 0;
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<AuditRecord>(&line) {
            Ok(record) if query.matches(&record) => records.push(record),
            Ok(_) => {}
            Err(_) => unreadable += 1,
        }
    }
    Ok((records, unreadable))
}

/// One record as a line for people: time, event, then the fields it has as `name=value`.
pub fn format_record(record: &AuditRecord) -> String {
    let mut line = format!("{}  {:<20}", record.ts, record.event);
    let text = [
        ("user", &record.user),
        ("source", &record.source),
        ("resource", &record.resource),
        ("gateway", &record.gateway),
        ("conversation", &record.conversation_id),
        ("code", &record.code),
        ("reason", &record.reason),
    ];
    for (name, value) in text {
        if let Some(value) = value {
            line.push_str(&format!(" {name}={value}"));
        }
    }
    let numbers = [
        ("bytes_from_client", record.bytes_from_client),
        ("bytes_to_client", record.bytes_to_client),
        ("duration_ms", record.duration_ms),
    ];
    for (name, value) in numbers {
        if let Some(value) = value {
            line.push_str(&format!(" {name}={value}"));
        }
    }
    line.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sallyport_protocol::CloseReason;

    fn report(id: &str, event: ReportEvent) -> ConversationReport {
        ConversationReport {
            conversation_id: id.into(),
            event,
            resource: "db".into(),
            reason: Some(CloseReason::ClientClosed),
            bytes_from_client: Some(3),
            bytes_to_client: Some(4),
            duration_ms: Some(5),
        }
    }

    #[test]
    fn reports_are_attributed_to_the_launch_and_checked_against_its_gateway() {
        let dir = std::env::temp_dir().join(format!("sallyport-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let audit = Audit::open(Some(&path)).unwrap();
        audit.launched("alice", "db", "dc1", "conversation-1");
        assert_eq!(
            audit.report("dc2", report("conversation-1", ReportEvent::TubeConnected)),
            Err(Code::Forbidden)
        );
        assert_eq!(
            audit.report("dc1", report("bad id", ReportEvent::TubeConnected)),
            Err(Code::Malformed)
        );
        audit
            .report("dc1", report("conversation-1", ReportEvent::TubeConnected))
            .unwrap();
        audit
            .report("dc1", report("conversation-1", ReportEvent::SessionClosed))
            .unwrap();
        // Not launched through this router: logged without a user.
        audit
            .report("dc1", report("conversation-2", ReportEvent::SessionClosed))
            .unwrap();
        let (records, unreadable) = read(&path, &AuditQuery::default()).unwrap();
        assert_eq!(unreadable, 0);
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].event, events::TUBE_CONNECTED);
        assert_eq!(records[0].user.as_deref(), Some("alice"));
        assert_eq!(records[0].reason, None, "a connect has no reason");
        assert_eq!(records[1].reason.as_deref(), Some("client_closed"));
        assert_eq!(
            (
                records[1].bytes_from_client,
                records[1].bytes_to_client,
                records[1].duration_ms
            ),
            (Some(3), Some(4), Some(5))
        );
        assert_eq!(records[2].user, None);
        assert_eq!(records[2].resource.as_deref(), Some("db"));
        // Filters.
        let alice = AuditQuery {
            user: Some("alice".into()),
            ..AuditQuery::default()
        };
        assert_eq!(read(&path, &alice).unwrap().0.len(), 2);
        let future = AuditQuery {
            since: "9999-01-01T00:00:00.000Z".into(),
            ..AuditQuery::default()
        };
        assert!(read(&path, &future).unwrap().0.is_empty());
        // A client refreshing its list signs in once per address.
        let (here, there) = (Some([10, 0, 0, 1].into()), Some([10, 0, 0, 2].into()));
        for source in [here, here, there, here] {
            audit.signed_in("alice", source);
        }
        let query = AuditQuery::default();
        let sign_ins: Vec<_> = read(&path, &query)
            .unwrap()
            .0
            .into_iter()
            .filter(|r| r.event == events::SIGN_IN)
            .map(|r| r.source.unwrap())
            .collect();
        assert_eq!(sign_ins, ["10.0.0.1", "10.0.0.2"]);
        std::fs::write(&path, "{\"ts\":\"x\"}\nnot json\n").unwrap();
        assert_eq!(read(&path, &AuditQuery::default()).unwrap().1, 2);
        let line = format_record(&records[1]);
        assert!(
            line.contains("session_closed")
                && line.contains("user=alice")
                && line.contains("bytes_to_client=4"),
            "{line}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
