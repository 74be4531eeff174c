//! Log lines per launch, for the diagnostic bundle: a tracing layer that keeps the events
//! recorded inside each `launch` span, keyed by the span's `id` field.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

const LINES_PER_LAUNCH: usize = 1000;
const LAUNCHES_KEPT: usize = 100;

/// The lines, shared between the layer and whoever exports them.
#[derive(Clone, Default)]
pub struct LaunchLogs {
    inner: Arc<Mutex<Lines>>,
}

/// Lines per launch id, and the ids in arrival order so the oldest can be dropped.
#[derive(Default)]
struct Lines {
    by_launch: HashMap<String, Vec<String>>,
    order: VecDeque<String>,
}

impl LaunchLogs {
    pub fn lines(&self, launch_id: &str) -> Vec<String> {
        self.inner
            .lock()
            .unwrap()
            .by_launch
            .get(launch_id)
            .cloned()
            .unwrap_or_default()
    }

    fn push(&self, launch_id: &str, line: String) {
        let mut guard = self.inner.lock().unwrap();
        let Lines {
            by_launch: map,
            order,
        } = &mut *guard;
        if !map.contains_key(launch_id) {
            order.push_back(launch_id.to_owned());
            if order.len() > LAUNCHES_KEPT {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
        let lines = map.entry(launch_id.to_owned()).or_default();
        if lines.len() < LINES_PER_LAUNCH {
            lines.push(line);
        }
    }

    /// The layer to add to the process's subscriber.
    pub fn layer(&self) -> LaunchLogLayer {
        LaunchLogLayer { logs: self.clone() }
    }
}

pub struct LaunchLogLayer {
    logs: LaunchLogs,
}

/// The launch id stored on a `launch` span.
struct LaunchId(String);

struct IdVisitor(Option<String>);

impl Visit for IdVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "id" {
            self.0 = Some(value.to_owned());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "id" {
            self.0 = Some(format!("{value:?}").trim_matches('"').to_owned());
        }
    }
}

struct LineVisitor(String);

impl Visit for LineVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl<S> Layer<S> for LaunchLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "launch" {
            return;
        }
        let mut visitor = IdVisitor(None);
        attrs.record(&mut visitor);
        if let (Some(launch_id), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().insert(LaunchId(launch_id));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        let launch_id = scope
            .from_root()
            .find_map(|span| span.extensions().get::<LaunchId>().map(|l| l.0.clone()));
        let Some(launch_id) = launch_id else {
            return;
        };
        let meta = event.metadata();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let mut visitor = LineVisitor(format!("{now} {} {}:", meta.level(), meta.target()));
        event.record(&mut visitor);
        self.logs.push(&launch_id, visitor.0);
    }
}
