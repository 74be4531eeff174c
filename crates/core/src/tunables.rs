//! The launch tunables, read from the environment under their established names, and the three
//! launch profiles that bundle them.

use std::time::Duration;

use crate::error::{CoreError, Result};

/// Which bundle of tunables a launch uses.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    ts_rs::TS,
)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// The old values: 2.0 s window, 1.0 s pre-offer sleep, 0.2 s open delay, 100 ms poll,
    /// listener started after the tube, no acknowledgement.
    Legacy,
    /// The table's defaults, no acknowledgement.
    Tuned,
    /// Acknowledgement-based registration; no fixed sleep on the happy path.
    Fast,
}

impl Profile {
    pub const ALL: [Profile; 3] = [Profile::Legacy, Profile::Tuned, Profile::Fast];

    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Legacy => "legacy",
            Profile::Tuned => "tuned",
            Profile::Fast => "fast",
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "legacy" => Ok(Profile::Legacy),
            "tuned" => Ok(Profile::Tuned),
            "fast" => Ok(Profile::Fast),
            other => Err(CoreError::Tunable {
                name: "--profile",
                message: format!("{other:?} is not one of legacy, tuned, fast"),
            }),
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every knob of the pipeline. Built from a profile, then overridden from the environment.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Tunables {
    pub profile: Profile,
    /// `WEBSOCKET_BACKEND_DELAY`: fallback registration window when the router gives no ack.
    pub websocket_backend_delay: Duration,
    /// `WEBSOCKET_BACKEND_DELAY_LEGACY`: the old window; sets the retry catch-up.
    pub websocket_backend_delay_legacy: Duration,
    /// `PAM_PRE_OFFER_SEC` (or 1.0 s with `PAM_PRE_OFFER_LEGACY=1`).
    pub pre_offer: Duration,
    /// `PAM_OFFER_RETRY_EXTRA_SEC`: base delay before an offer retry.
    pub offer_retry_extra: Duration,
    /// `PAM_GATEWAY_OFFER_MAX_ATTEMPTS`.
    pub offer_max_attempts: u32,
    /// `PAM_OPEN_CONNECTION_DELAY`: pause between connected and opening the first connection.
    pub open_connection_delay: Duration,
    /// `PAM_WEBRTC_POLL_MS`: state-check tick where something must be polled.
    pub webrtc_poll: Duration,
    /// `PAM_WEBRTC_CONNECT_TIMEOUT_SEC`: give up on ICE/DTLS/SCTP.
    pub webrtc_connect_timeout: Duration,
    /// `PAM_CONNECT_TIMING=1`: print every checkpoint to stderr.
    pub connect_timing: bool,
    /// Start the router WebSocket before creating the tube (all but legacy).
    pub listener_early: bool,
    /// Wait for the router's explicit `subscribed` instead of a fixed window (fast only).
    pub use_ack: bool,
    /// Poll the data plane's state every `webrtc_poll` instead of reacting to it (legacy).
    pub poll_state: bool,
    /// Send the offer without first waiting for the router's registration (fast only). The
    /// reply carries the answer and the router keeps what the gateway streams until the socket
    /// subscribes, so the registration's round trips overlap the offer's instead of preceding
    /// them; `websocket_registered` then follows `answer_received`.
    pub offer_at_once: bool,
    /// Ask the gateway to open the first connection to the target when the offer arrives
    /// (fast only): the target's round trip then runs beside the WebRTC handshake, and the
    /// gateway says how it went through the router, usually before the channel opens.
    pub open_first: bool,
}

impl Tunables {
    /// The profile's values, without looking at the environment.
    pub fn for_profile(profile: Profile) -> Self {
        let tuned = Tunables {
            profile,
            websocket_backend_delay: Duration::from_millis(300),
            websocket_backend_delay_legacy: Duration::from_secs(2),
            pre_offer: Duration::ZERO,
            offer_retry_extra: Duration::from_millis(1250),
            offer_max_attempts: 2,
            open_connection_delay: Duration::from_millis(50),
            webrtc_poll: Duration::from_millis(25),
            webrtc_connect_timeout: Duration::from_secs(30),
            connect_timing: false,
            listener_early: true,
            use_ack: false,
            poll_state: false,
            offer_at_once: false,
            open_first: false,
        };
        match profile {
            Profile::Tuned => tuned,
            Profile::Legacy => Tunables {
                websocket_backend_delay: Duration::from_secs(2),
                pre_offer: Duration::from_secs(1),
                open_connection_delay: Duration::from_millis(200),
                webrtc_poll: Duration::from_millis(100),
                listener_early: false,
                poll_state: true,
                ..tuned
            },
            Profile::Fast => Tunables {
                open_connection_delay: Duration::ZERO,
                use_ack: true,
                offer_at_once: true,
                open_first: true,
                ..tuned
            },
        }
    }

    /// The profile's values with any tunable set in the process environment applied.
    pub fn from_env(profile: Profile) -> Result<Self> {
        Self::from_lookup(profile, |name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env), reading variables through `lookup` (for tests).
    pub fn from_lookup(profile: Profile, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut t = Self::for_profile(profile);
        let secs = |name: &'static str| -> Result<Option<Duration>> {
            lookup(name).map(|v| parse_seconds(name, &v)).transpose()
        };
        if let Some(d) = secs("WEBSOCKET_BACKEND_DELAY")? {
            t.websocket_backend_delay = d;
        }
        if let Some(d) = secs("WEBSOCKET_BACKEND_DELAY_LEGACY")? {
            t.websocket_backend_delay_legacy = d;
        }
        if let Some(d) = secs("PAM_PRE_OFFER_SEC")? {
            t.pre_offer = d;
        }
        if let Some(v) = lookup("PAM_PRE_OFFER_LEGACY") {
            if parse_flag("PAM_PRE_OFFER_LEGACY", &v)? {
                t.pre_offer = Duration::from_secs(1);
            }
        }
        if let Some(d) = secs("PAM_OFFER_RETRY_EXTRA_SEC")? {
            t.offer_retry_extra = d;
        }
        if let Some(v) = lookup("PAM_GATEWAY_OFFER_MAX_ATTEMPTS") {
            t.offer_max_attempts = match v.trim().parse::<u32>() {
                Ok(n) if (1..=10).contains(&n) => n,
                _ => {
                    return Err(CoreError::Tunable {
                        name: "PAM_GATEWAY_OFFER_MAX_ATTEMPTS",
                        message: format!("{v:?} is not a whole number from 1 to 10"),
                    })
                }
            };
        }
        if let Some(d) = secs("PAM_OPEN_CONNECTION_DELAY")? {
            t.open_connection_delay = d;
        }
        if let Some(v) = lookup("PAM_WEBRTC_POLL_MS") {
            t.webrtc_poll = match v.trim().parse::<u64>() {
                Ok(ms) if (1..=10_000).contains(&ms) => Duration::from_millis(ms),
                _ => {
                    return Err(CoreError::Tunable {
                        name: "PAM_WEBRTC_POLL_MS",
                        message: format!(
                            "{v:?} is not a whole number of milliseconds from 1 to 10000"
                        ),
                    })
                }
            };
        }
        if let Some(d) = secs("PAM_WEBRTC_CONNECT_TIMEOUT_SEC")? {
            if d.is_zero() {
                return Err(CoreError::Tunable {
                    name: "PAM_WEBRTC_CONNECT_TIMEOUT_SEC",
                    message: "must be greater than zero".into(),
                });
            }
            t.webrtc_connect_timeout = d;
        }
        if let Some(v) = lookup("PAM_CONNECT_TIMING") {
            t.connect_timing = parse_flag("PAM_CONNECT_TIMING", &v)?;
        }
        Ok(t)
    }

    /// The wait before an offer retry: the base delay plus the old window's surplus, so an
    /// unlucky launch still gets the legacy safety margin.
    pub fn retry_catchup(&self) -> Duration {
        self.offer_retry_extra
            + self
                .websocket_backend_delay_legacy
                .saturating_sub(self.websocket_backend_delay)
    }

    /// (name, value) pairs under the environment variables' names, for bundles and `--json`.
    pub fn as_env_pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "WEBSOCKET_BACKEND_DELAY",
                secs_str(self.websocket_backend_delay),
            ),
            (
                "WEBSOCKET_BACKEND_DELAY_LEGACY",
                secs_str(self.websocket_backend_delay_legacy),
            ),
            ("PAM_PRE_OFFER_SEC", secs_str(self.pre_offer)),
            (
                "PAM_OFFER_RETRY_EXTRA_SEC",
                secs_str(self.offer_retry_extra),
            ),
            (
                "PAM_GATEWAY_OFFER_MAX_ATTEMPTS",
                self.offer_max_attempts.to_string(),
            ),
            (
                "PAM_OPEN_CONNECTION_DELAY",
                secs_str(self.open_connection_delay),
            ),
            (
                "PAM_WEBRTC_POLL_MS",
                self.webrtc_poll.as_millis().to_string(),
            ),
            (
                "PAM_WEBRTC_CONNECT_TIMEOUT_SEC",
                secs_str(self.webrtc_connect_timeout),
            ),
            (
                "PAM_CONNECT_TIMING",
                u8::from(self.connect_timing).to_string(),
            ),
        ]
    }
}

fn secs_str(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

fn parse_seconds(name: &'static str, value: &str) -> Result<Duration> {
    let v = value.trim();
    let seconds: f64 = v.parse().map_err(|_| CoreError::Tunable {
        name,
        message: format!("{value:?} is not a number of seconds"),
    })?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(CoreError::Tunable {
            name,
            message: format!("{value:?} must be a non-negative number of seconds"),
        });
    }
    if seconds > 3600.0 {
        return Err(CoreError::Tunable {
            name,
            message: format!("{value:?} is more than an hour"),
        });
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_flag(name: &'static str, value: &str) -> Result<bool> {
    match value.trim() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(CoreError::Tunable {
            name,
            message: format!("{other:?} is not 0 or 1"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)], profile: Profile) -> Result<Tunables> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Tunables::from_lookup(profile, |name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_design_table() {
        let t = with(&[], Profile::Tuned).unwrap();
        assert_eq!(t.websocket_backend_delay, Duration::from_millis(300));
        assert_eq!(t.websocket_backend_delay_legacy, Duration::from_secs(2));
        assert_eq!(t.pre_offer, Duration::ZERO);
        assert_eq!(t.offer_retry_extra, Duration::from_millis(1250));
        assert_eq!(t.offer_max_attempts, 2);
        assert_eq!(t.open_connection_delay, Duration::from_millis(50));
        assert_eq!(t.webrtc_poll, Duration::from_millis(25));
        assert!(!t.connect_timing);
        assert!(t.listener_early && !t.use_ack && !t.offer_at_once);
        // 1.25 + (2.0 - 0.3)
        assert_eq!(t.retry_catchup(), Duration::from_millis(2950));
    }

    #[test]
    fn profiles_differ_as_designed() {
        let legacy = with(&[], Profile::Legacy).unwrap();
        assert_eq!(legacy.websocket_backend_delay, Duration::from_secs(2));
        assert_eq!(legacy.pre_offer, Duration::from_secs(1));
        assert_eq!(legacy.open_connection_delay, Duration::from_millis(200));
        assert_eq!(legacy.webrtc_poll, Duration::from_millis(100));
        assert!(!legacy.listener_early && !legacy.use_ack);
        let fast = with(&[], Profile::Fast).unwrap();
        assert!(fast.use_ack && fast.listener_early && fast.offer_at_once);
        assert_eq!(fast.pre_offer, Duration::ZERO);
        assert_eq!(fast.open_connection_delay, Duration::ZERO);
    }

    #[test]
    fn environment_overrides_and_validation() {
        let t = with(
            &[
                ("WEBSOCKET_BACKEND_DELAY", "0.5"),
                ("PAM_GATEWAY_OFFER_MAX_ATTEMPTS", "3"),
            ],
            Profile::Fast,
        )
        .unwrap();
        assert_eq!(t.websocket_backend_delay, Duration::from_millis(500));
        assert_eq!(t.offer_max_attempts, 3);
        let t = with(&[("PAM_PRE_OFFER_LEGACY", "1")], Profile::Fast).unwrap();
        assert_eq!(t.pre_offer, Duration::from_secs(1));

        for (name, value) in [
            ("WEBSOCKET_BACKEND_DELAY", "-1"),
            ("WEBSOCKET_BACKEND_DELAY_LEGACY", "soon"),
            ("PAM_PRE_OFFER_SEC", "NaN"),
            ("PAM_OFFER_RETRY_EXTRA_SEC", "-0.1"),
            ("PAM_GATEWAY_OFFER_MAX_ATTEMPTS", "0"),
            ("PAM_GATEWAY_OFFER_MAX_ATTEMPTS", "two"),
            ("PAM_OPEN_CONNECTION_DELAY", "inf"),
            ("PAM_WEBRTC_POLL_MS", "-25"),
            ("PAM_WEBRTC_CONNECT_TIMEOUT_SEC", "0"),
            ("PAM_CONNECT_TIMING", "maybe"),
        ] {
            let err = with(&[(name, value)], Profile::Tuned).unwrap_err();
            assert_eq!(err.code(), sallyport_protocol::Code::InvalidTunable);
            assert!(err.to_string().contains(name), "{err} should name {name}");
        }
    }

    #[test]
    fn profile_names_parse() {
        assert_eq!("fast".parse::<Profile>().unwrap(), Profile::Fast);
        assert!("quick".parse::<Profile>().is_err());
    }
}
