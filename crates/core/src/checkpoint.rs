//! Named, timestamped checkpoints of a launch, on a stream any number of subscribers read.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sallyport_protocol::Code;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Checkpoint names. Support scripts match them exactly: never rename one.
pub mod names {
    pub const RESOURCE_RESOLVED: &str = "resource_resolved";
    pub const LAUNCH_CACHE_HIT: &str = "launch_cache_hit";
    pub const WEBSOCKET_LISTENER_STARTED_EARLY: &str = "websocket_listener_started_early";
    /// Legacy profile only: the listener started after the tube, as the old design did.
    pub const WEBSOCKET_LISTENER_STARTED: &str = "websocket_listener_started";
    pub const CREATE_TUBE_OK: &str = "create_tube_ok";
    pub const WEBSOCKET_REGISTERED: &str = "websocket_registered";
    pub const WEBSOCKET_READY_BACKEND_DELAY_DONE: &str = "websocket_ready_backend_delay_done";
    pub const PRE_OFFER_SLEEP_DONE: &str = "pre_offer_sleep_done";
    /// Followed by the attempt number: `gateway_offer_http_attempt_1`, `_2`, ...
    pub const GATEWAY_OFFER_HTTP_ATTEMPT_PREFIX: &str = "gateway_offer_http_attempt_";
    pub const GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_START: &str =
        "gateway_offer_backend_catchup_delay_start";
    pub const GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_DONE: &str =
        "gateway_offer_backend_catchup_delay_done";
    pub const GATEWAY_OFFER_HTTP_DONE: &str = "gateway_offer_http_done";
    pub const ANSWER_RECEIVED: &str = "answer_received";
    /// The data plane, layer by layer, each stamped when its layer came up.
    pub const ICE_CONNECTED: &str = "ice_connected";
    pub const DTLS_CONNECTED: &str = "dtls_connected";
    pub const SCTP_CONNECTED: &str = "sctp_connected";
    pub const CHANNEL_OPEN: &str = "channel_open";
    pub const WEBRTC_DATA_PLANE_CONNECTED: &str = "webrtc_data_plane_connected";
    pub const LOCAL_LISTENER_READY: &str = "local_listener_ready";
    pub const TARGET_CONNECTED: &str = "target_connected";
    pub const CLIENT_SPAWNED: &str = "client_spawned";
    pub const READY: &str = "ready";
    /// Emitted instead of `ready` when a launch fails; `error` carries its code and message.
    pub const FAILED: &str = "failed";
    /// After `ready`: the session's path broke and came back (its step is how long it was
    /// down; `detail` is the new path).
    pub const RECONNECTED: &str = "reconnected";

    /// Every name, in pipeline order (`reconnected` after `ready`, `failed` last); offer attempts are
    /// [`GATEWAY_OFFER_HTTP_ATTEMPT_PREFIX`] and their number.
    pub const ALL: &[&str] = &[
        RESOURCE_RESOLVED,
        LAUNCH_CACHE_HIT,
        WEBSOCKET_LISTENER_STARTED_EARLY,
        WEBSOCKET_LISTENER_STARTED,
        CREATE_TUBE_OK,
        WEBSOCKET_REGISTERED,
        WEBSOCKET_READY_BACKEND_DELAY_DONE,
        PRE_OFFER_SLEEP_DONE,
        GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_START,
        GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_DONE,
        GATEWAY_OFFER_HTTP_DONE,
        ANSWER_RECEIVED,
        ICE_CONNECTED,
        DTLS_CONNECTED,
        SCTP_CONNECTED,
        CHANNEL_OPEN,
        WEBRTC_DATA_PLANE_CONNECTED,
        LOCAL_LISTENER_READY,
        TARGET_CONNECTED,
        CLIENT_SPAWNED,
        READY,
        RECONNECTED,
        FAILED,
    ];

    /// The checkpoints of a `fast` launch that succeeds at once without a client, in order.
    /// The end-to-end test holds the real pipeline to it, and the UI's tests use it (generated).
    pub const HAPPY_PATH: &[&str] = &[
        RESOURCE_RESOLVED,
        WEBSOCKET_LISTENER_STARTED_EARLY,
        CREATE_TUBE_OK,
        PRE_OFFER_SLEEP_DONE,
        "gateway_offer_http_attempt_1",
        GATEWAY_OFFER_HTTP_DONE,
        ANSWER_RECEIVED,
        WEBSOCKET_REGISTERED,
        ICE_CONNECTED,
        DTLS_CONNECTED,
        SCTP_CONNECTED,
        CHANNEL_OPEN,
        WEBRTC_DATA_PLANE_CONNECTED,
        LOCAL_LISTENER_READY,
        TARGET_CONNECTED,
        READY,
    ];
}

/// Why a launch failed: its code (from the registry) and the message, as fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct LaunchError {
    pub code: Code,
    pub message: String,
}

/// One checkpoint of one launch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct Checkpoint {
    pub launch_id: String,
    pub resource: String,
    /// The checkpoint's name (see [`names`]).
    pub phase: String,
    /// Milliseconds since the previous checkpoint of this launch.
    pub step_ms: f64,
    /// Milliseconds since the launch began.
    pub total_ms: f64,
    /// The offer attempt this checkpoint belongs to, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub attempt: Option<u32>,
    /// Why (a retry's reason) or what (the resource's gateway, the local port, the client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub detail: Option<String>,
    /// On `failed` only: the launch's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub error: Option<LaunchError>,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

/// The stream of checkpoints of every launch in this process.
#[derive(Clone)]
pub struct CheckpointBus {
    sender: broadcast::Sender<Checkpoint>,
}

impl Default for CheckpointBus {
    fn default() -> Self {
        Self::new()
    }
}

impl CheckpointBus {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(1024);
        Self { sender }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Checkpoint> {
        self.sender.subscribe()
    }

    fn publish(&self, checkpoint: Checkpoint) {
        // No subscriber is fine: the launch records its own copy.
        let _ = self.sender.send(checkpoint);
    }
}

/// Called with each checkpoint of one launch as it is recorded.
pub type Observer = Arc<dyn Fn(&Checkpoint) + Send + Sync>;

/// Records one launch's checkpoints: publishes each, keeps a copy, hands it to the launch's
/// observer, and prints it to stderr when `PAM_CONNECT_TIMING=1`.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<RecorderState>>,
    bus: CheckpointBus,
    observer: Option<Observer>,
    launch_id: String,
    resource: String,
    label: String,
    print: bool,
}

struct RecorderState {
    started: Instant,
    last: Instant,
    recorded: Vec<Checkpoint>,
}

impl Recorder {
    pub fn new(bus: CheckpointBus, launch_id: &str, resource: &str, print: bool) -> Self {
        let now = Instant::now();
        Self {
            inner: Arc::new(Mutex::new(RecorderState {
                started: now,
                last: now,
                recorded: Vec::new(),
            })),
            bus,
            launch_id: launch_id.to_owned(),
            resource: resource.to_owned(),
            label: format!("sallyport[{resource}#{launch_id}]"),
            print,
            observer: None,
        }
    }

    pub fn with_observer(mut self, observer: Option<Observer>) -> Self {
        self.observer = observer;
        self
    }

    pub fn launch_id(&self) -> &str {
        &self.launch_id
    }

    pub fn mark(&self, phase: &str) -> Checkpoint {
        self.mark_with(phase, None, None)
    }

    pub fn mark_with(
        &self,
        phase: &str,
        attempt: Option<u32>,
        detail: Option<String>,
    ) -> Checkpoint {
        self.record(phase, Instant::now(), attempt, detail, None, None)
    }

    /// A checkpoint for something that took `lasted` and has just ended (the session's
    /// `reconnected`): its step is that duration, not the time since the previous checkpoint.
    pub fn mark_lasting(
        &self,
        phase: &str,
        lasted: std::time::Duration,
        detail: Option<String>,
    ) -> Checkpoint {
        self.record(phase, Instant::now(), None, detail, Some(lasted), None)
    }

    /// The `failed` checkpoint, with the error's code and message as fields.
    pub fn mark_failed(&self, code: Code, message: String) -> Checkpoint {
        let error = LaunchError { code, message };
        self.record(names::FAILED, Instant::now(), None, None, None, Some(error))
    }

    /// A checkpoint for something that happened at `at` (a layer of the data plane coming up
    /// in the tube's own task), not when the pipeline got to look.
    pub fn mark_at(&self, phase: &str, at: Instant) -> Checkpoint {
        self.record(phase, at, None, None, None, None)
    }

    fn record(
        &self,
        phase: &str,
        at: Instant,
        attempt: Option<u32>,
        detail: Option<String>,
        lasted: Option<std::time::Duration>,
        error: Option<LaunchError>,
    ) -> Checkpoint {
        let checkpoint = {
            let mut state = self.inner.lock().unwrap();
            // Checkpoints stay in order: nothing is stamped before the previous one.
            let now = at.max(state.last);
            let checkpoint = Checkpoint {
                launch_id: self.launch_id.clone(),
                resource: self.resource.clone(),
                phase: phase.to_owned(),
                step_ms: ms(lasted.unwrap_or(now - state.last)),
                total_ms: ms(now - state.started),
                attempt,
                detail,
                error,
                at_unix_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
            };
            state.last = now;
            state.recorded.push(checkpoint.clone());
            checkpoint
        };
        tracing::info!(
            phase,
            step_ms = checkpoint.step_ms,
            total_ms = checkpoint.total_ms,
            attempt,
            detail = checkpoint.detail.as_deref(),
            error = checkpoint.error.as_ref().map(|e| e.code.as_str()),
            "checkpoint"
        );
        if self.print {
            eprintln!("{}", format_line(&self.label, &checkpoint));
            if phase == names::READY || phase == names::FAILED {
                eprintln!("{}", format_total(&self.label, &checkpoint));
            }
        }
        if let Some(observe) = &self.observer {
            observe(&checkpoint);
        }
        self.bus.publish(checkpoint.clone());
        checkpoint
    }

    /// Everything recorded so far, in order.
    pub fn checkpoints(&self) -> Vec<Checkpoint> {
        self.inner.lock().unwrap().recorded.clone()
    }
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

/// `<label> | <phase padded to 44> | +<step> ms (step) | <total> ms (total)`
pub fn format_line(label: &str, c: &Checkpoint) -> String {
    format!(
        "{label} | {:<44} | +{:.1} ms (step) | {:.1} ms (total)",
        c.phase, c.step_ms, c.total_ms
    )
}

/// `<label> | <phase> | TOTAL <ms> ms`
pub fn format_total(label: &str, c: &Checkpoint) -> String {
    format!("{label} | {} | TOTAL {:.1} ms", c.phase, c.total_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_documented_shape() {
        let c = Checkpoint {
            launch_id: "l".into(),
            resource: "r".into(),
            phase: names::CREATE_TUBE_OK.into(),
            step_ms: 1.25,
            total_ms: 10.5,
            attempt: None,
            detail: None,
            error: None,
            at_unix_ms: 0,
        };
        let line = format_line("lbl", &c);
        assert_eq!(
            line,
            format!(
                "lbl | {:<44} | +1.2 ms (step) | 10.5 ms (total)",
                "create_tube_ok"
            )
        );
        assert_eq!(
            format_total("lbl", &c),
            "lbl | create_tube_ok | TOTAL 10.5 ms"
        );
    }

    #[tokio::test]
    async fn every_subscriber_sees_every_checkpoint_in_order() {
        let bus = CheckpointBus::new();
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        let recorder = Recorder::new(bus, "id", "res", false);
        recorder.mark("one");
        recorder.mark_with("two", Some(2), Some("why".into()));
        for rx in [&mut a, &mut b] {
            assert_eq!(rx.recv().await.unwrap().phase, "one");
            let two = rx.recv().await.unwrap();
            assert_eq!((two.phase.as_str(), two.attempt), ("two", Some(2)));
            assert!(two.total_ms >= two.step_ms);
        }
        assert_eq!(recorder.checkpoints().len(), 2);
    }
}
