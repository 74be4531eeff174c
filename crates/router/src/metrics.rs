//! Prometheus text metrics, kept as plain atomics and a small map.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub(crate) struct Metrics {
    /// Client messages forwarded to a gateway.
    pub forwarded: AtomicU64,
    /// Gateway messages delivered to a client WebSocket.
    pub streamed: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    pub fn failure(&self, code: sallyport_protocol::Code) {
        *self
            .failures
            .lock()
            .unwrap()
            .entry(code.as_str().to_owned())
            .or_default() += 1;
    }

    pub fn render(&self, gateways: usize, conversations: usize, connections: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP sallyport_connections_open Connections open now (HTTP and WebSocket)."
        );
        let _ = writeln!(out, "# TYPE sallyport_connections_open gauge");
        let _ = writeln!(out, "sallyport_connections_open {connections}");
        let _ = writeln!(
            out,
            "# HELP sallyport_gateways_connected Gateways connected now."
        );
        let _ = writeln!(out, "# TYPE sallyport_gateways_connected gauge");
        let _ = writeln!(out, "sallyport_gateways_connected {gateways}");
        let _ = writeln!(
            out,
            "# HELP sallyport_conversations Conversations the router tracks now."
        );
        let _ = writeln!(out, "# TYPE sallyport_conversations gauge");
        let _ = writeln!(out, "sallyport_conversations {conversations}");
        let tasks = tokio::runtime::Handle::try_current()
            .map(|h| h.metrics().num_alive_tasks())
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "# HELP sallyport_tasks Tasks alive in the router's runtime (a leak shows here)."
        );
        let _ = writeln!(out, "# TYPE sallyport_tasks gauge");
        let _ = writeln!(out, "sallyport_tasks {tasks}");
        let _ = writeln!(
            out,
            "# HELP sallyport_messages_forwarded_total Client messages forwarded to gateways."
        );
        let _ = writeln!(out, "# TYPE sallyport_messages_forwarded_total counter");
        let _ = writeln!(
            out,
            "sallyport_messages_forwarded_total {}",
            self.forwarded.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP sallyport_messages_streamed_total Gateway messages delivered to clients."
        );
        let _ = writeln!(out, "# TYPE sallyport_messages_streamed_total counter");
        let _ = writeln!(
            out,
            "sallyport_messages_streamed_total {}",
            self.streamed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP sallyport_failures_total Failed requests, frames and connections, by code."
        );
        let _ = writeln!(out, "# TYPE sallyport_failures_total counter");
        for (code, count) in self.failures.lock().unwrap().iter() {
            let _ = writeln!(out, "sallyport_failures_total{{code=\"{code}\"}} {count}");
        }
        out
    }
}
