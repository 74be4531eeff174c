//! What the gateway writes down about its conversations: one JSON line per event in its own
//! `connection_log` (connections to targets, with their addresses, which are the gateway's
//! own business), and, for a tube connecting and ending, a `report` to the router's audit trail
//! (without any address). docs/PROTOCOL.md sections 4.2 and 9 describe both.

use std::collections::VecDeque;
use std::time::Duration;

use sallyport_protocol::{CloseReason, ConversationReport, GatewayToRouter, ReportEvent};
use sallyport_tube::ConnectionEnd;
use serde::Serialize;

use crate::{Gateway, ResourceConfig};

/// Reports kept while the router link is down, sent once it is back (oldest dropped past this).
const MAX_UNSENT_REPORTS: usize = 1024;

pub(crate) enum Event {
    /// The tube's data channel opened.
    TubeConnected,
    /// The tube ended.
    SessionClosed {
        reason: CloseReason,
        bytes_from_client: u64,
        bytes_to_client: u64,
        duration: Duration,
    },
    /// A connection the client opened was bridged to the target.
    TargetConnected { conn: u32 },
    /// The target could not be reached.
    TargetFailed { conn: u32, reason: CloseReason },
    /// A bridged connection ended.
    TargetClosed {
        conn: u32,
        end: ConnectionEnd,
        duration: Duration,
    },
}

/// One line of the connection log.
#[derive(Serialize)]
struct Line<'a> {
    event: &'static str,
    conversation_id: &'a str,
    resource: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conn: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_from_client: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_to_client: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
}

/// Reports for the router, queued while its link is down.
#[derive(Default)]
pub(crate) struct Reports {
    /// The router of the current link takes reports (its `welcome` said so).
    pub accepted: bool,
    pub unsent: VecDeque<ConversationReport>,
}

impl Gateway {
    /// Write `event` of conversation `id` to the connection log and, for a tube connecting or
    /// ending, report it to the router.
    pub(crate) fn record(&self, id: &str, resource: &ResourceConfig, event: Event) {
        let mut line = Line {
            event: "",
            conversation_id: id,
            resource: &resource.name,
            target: None,
            conn: None,
            reason: None,
            bytes_from_client: None,
            bytes_to_client: None,
            duration_ms: None,
        };
        // The router's share: which event, and the close reason.
        let mut report = None;
        match event {
            Event::TubeConnected => {
                line.event = "tube_connected";
                report = Some((ReportEvent::TubeConnected, None));
            }
            Event::SessionClosed {
                reason,
                bytes_from_client,
                bytes_to_client,
                duration,
            } => {
                line.event = "session_closed";
                line.reason = Some(reason.as_str());
                line.bytes_from_client = Some(bytes_from_client);
                line.bytes_to_client = Some(bytes_to_client);
                line.duration_ms = Some(duration.as_millis() as u64);
                report = Some((ReportEvent::SessionClosed, Some(reason)));
            }
            Event::TargetConnected { conn } => {
                line.event = "target_connected";
                line.conn = Some(conn);
            }
            Event::TargetFailed { conn, reason } => {
                line.event = "target_failed";
                line.conn = Some(conn);
                line.reason = Some(reason.as_str());
            }
            Event::TargetClosed {
                conn,
                end,
                duration,
            } => {
                line.event = "target_closed";
                line.conn = Some(conn);
                line.reason = Some(match end {
                    ConnectionEnd::Closed => CloseReason::Normal.as_str(),
                    ConnectionEnd::Reset(reason) => reason.as_str(),
                    ConnectionEnd::LocalFailed => CloseReason::TargetError.as_str(),
                });
                line.duration_ms = Some(duration.as_millis() as u64);
            }
        }
        if line.conn.is_some() {
            line.target = Some(&resource.target);
        }
        if let Some(log) = &self.connection_log {
            log.append(&line);
        }
        if let Some((event, reason)) = report {
            self.report(ConversationReport {
                conversation_id: id.to_owned(),
                event,
                resource: resource.name.clone(),
                reason,
                bytes_from_client: line.bytes_from_client,
                bytes_to_client: line.bytes_to_client,
                duration_ms: line.duration_ms,
            });
        }
    }

    /// Send a report now, or keep it until the router link is back.
    fn report(&self, report: ConversationReport) {
        let mut reports = self.reports.lock().unwrap();
        let sender = self.outbound.lock().unwrap().clone();
        match sender {
            Some(sender) if reports.accepted => {
                if sender.try_send(GatewayToRouter::Report(report)).is_err() {
                    tracing::warn!("router link is congested or down; dropped a report");
                }
            }
            // This router takes no reports.
            Some(_) => {}
            None => {
                if reports.unsent.len() >= MAX_UNSENT_REPORTS {
                    reports.unsent.pop_front();
                    tracing::warn!("router link down for long; dropped the oldest unsent report");
                }
                reports.unsent.push_back(report);
            }
        }
    }
}
