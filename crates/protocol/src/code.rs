//! The one registry of codes: every error code on the wire, every close reason, and every code
//! the client, the CLI and the app show. Each serializes as the string it always had, so the wire
//! does not change. The HTTP status, whether a failure is worth another attempt, and the hint a
//! user reads are exhaustive matches below: a new code does not compile until all three are
//! decided.

use serde::{Deserialize, Serialize};

macro_rules! registry {
    ($( $(#[doc = $doc:literal])* $variant:ident = $text:literal, )*) => {
        /// A stable, machine-readable code (see the module's documentation).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ts_rs::TS)]
        pub enum Code {
            $( $(#[doc = $doc])* #[serde(rename = $text)] $variant, )*
            /// A code this build does not know (a newer peer's); never sent by this build.
            #[serde(other, rename = "unrecognized")]
            Unrecognized,
        }

        impl Code {
            /// Every code but [`Code::Unrecognized`], in registry order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as it is written on the wire and shown to users.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)*
                    Code::Unrecognized => "unrecognized",
                }
            }
        }
    };
}

registry! {
    // Answers of the router and the gateway (`{code, message}` bodies and error frames).
    Unauthorized = "unauthorized",
    Forbidden = "forbidden",
    UnknownGateway = "unknown_gateway",
    UnknownResource = "unknown_resource",
    Malformed = "malformed",
    NotFound = "not_found",
    TooLarge = "too_large",
    /// The resource's gateway is not connected to the router.
    ControllerDown = "controller_down",
    /// The gateway did not answer a forwarded message in time.
    RrcTimeout = "rrc_timeout",
    /// The routers' shared store (Redis) did not answer: the fleet cannot route for now.
    FleetUnavailable = "fleet_unavailable",
    /// The gateway cannot serve the message yet (its answer is not ready, it is stopping).
    BadState = "bad_state",
    SealRejected = "seal_rejected",
    /// A key that is not base64 of 32 bytes, in a local file or setting. On the wire a bad
    /// `epk` is `seal_rejected`.
    InvalidKey = "invalid_key",
    /// The router closed a connection that did not send a complete request head in time.
    HeaderTimeout = "header_timeout",
    /// A request body stalled: no byte of it arrived within the router's idle timeout.
    RequestTimeout = "request_timeout",
    /// Too many connections from one source address.
    TooManyConnections = "too_many_connections",
    /// The router holds as many connections as it may and none of them can be let go.
    Overloaded = "overloaded",
    UnsupportedVersion = "unsupported_version",
    Internal = "internal",
    /// This router keeps no launch reports (`[reports] enabled = false`).
    ReportsDisabled = "reports_disabled",
    /// The OpenID token has expired (past `exp`, beyond the router's leeway).
    TokenExpired = "token_expired",
    /// The OpenID token was issued by another issuer than the router's `[sso] issuer`.
    WrongIssuer = "wrong_issuer",
    /// The OpenID token was issued for another audience (client id).
    WrongAudience = "wrong_audience",
    /// The OpenID token's signature does not verify with the issuer's keys.
    BadSignature = "bad_signature",
    /// The user's groups claim names no group of the router's `[[sso.groups]]`.
    NotInGroup = "not_in_group",
    /// The router cannot fetch the OpenID issuer's discovery document or keys.
    SsoUnavailable = "sso_unavailable",

    // Why a connection or a tube closed (`CloseReason`); `session_limit` is also an answer.
    Normal = "normal",
    TargetRefused = "target_refused",
    TargetTimeout = "target_timeout",
    TargetUnreachable = "target_unreachable",
    TargetError = "target_error",
    SessionLimit = "session_limit",
    ClosedByAdmin = "closed_by_admin",
    GatewayShutdown = "gateway_shutdown",
    ClientClosed = "client_closed",
    ProtocolError = "protocol_error",

    // How a session ended on the client's side, besides a close reason.
    /// The tube's network path failed (ICE or DTLS gave up).
    NetworkFailed = "network_failed",
    /// The router reported the gateway gone and nothing answered over the tube.
    GatewayLost = "gateway_lost",
    /// Closed on this side.
    Closed = "closed",

    // The router's and the gateway's own failures (their logs and metrics, their exit).
    ConfigInvalid = "config_invalid",
    RouterRefused = "router_refused",
    /// A gateway message for a conversation the router does not know (metrics only).
    UnknownConversation = "unknown_conversation",
    /// A client socket that does not read its messages fast enough (metrics only).
    ClientSlow = "client_slow",
    /// A kept-alive connection closed after its idle timeout (metrics only).
    IdleTimeout = "idle_timeout",
    /// An idle connection let go to make room for a new one (metrics only).
    Evicted = "evicted",
    /// A TLS handshake with the router failed (counted in the metrics; nothing is answered).
    TlsHandshake = "tls_handshake",

    // The tube.
    WebrtcError = "webrtc_error",
    InvalidSdp = "invalid_sdp",
    InvalidCandidate = "invalid_candidate",
    WebrtcTimeout = "webrtc_timeout",
    TubeClosed = "tube_closed",
    WebrtcFailed = "webrtc_failed",
    InvalidConfig = "invalid_config",
    IoError = "io_error",

    // The client: the launch pipeline, the service, the CLI and the app.
    InvalidTunable = "invalid_tunable",
    InvalidProfile = "invalid_profile",
    /// No router token: not in the keyring, not in `SALLYPORT_TOKEN`, not in the profile.
    MissingToken = "missing_token",
    /// The embedded lab could not start.
    LabFailed = "lab_failed",
    /// No active session has this launch id.
    UnknownSession = "unknown_session",
    /// No launch with this id in the history.
    UnknownLaunch = "unknown_launch",
    /// The gateway's key is not pinned in the profile (the message carries the fingerprint
    /// of the key the router lists for it, to compare before pinning).
    UnpinnedGateway = "unpinned_gateway",
    /// The key the router lists for a gateway differs from the one pinned: refused.
    GatewayKeyChanged = "gateway_key_changed",
    /// A distributed profile (`sallyport profile import`) that does not validate.
    InvalidProfileImport = "invalid_profile_import",
    /// Sign-in with the OpenID provider failed (unreachable, refused, denied, expired code).
    SsoFailed = "sso_failed",
    RouterUnreachable = "router_unreachable",
    /// The router answered with an error status and no readable `{code, message}`.
    HttpError = "http_error",
    /// No answer in time to a request of ours.
    Timeout = "timeout",
    /// The connection to the router failed (refused, reset, DNS).
    ConnectionError = "connection_error",
    /// The router's TLS certificate was refused (unknown CA, expired, another host name).
    RouterTls = "router_tls",
    /// A reply that should carry the gateway's answer carried none.
    EmptyReply = "empty_reply",
    PortTaken = "port_taken",
    /// A local port this user may not choose (below 1024).
    InvalidPort = "invalid_port",
    ClientMissing = "client_missing",
    ClientFailed = "client_failed",
    KeyringError = "keyring_error",
    BenchFailed = "bench_failed",
    /// The UI runs outside the app (a plain browser): it has no backend to call.
    NotInApp = "not_in_app",
    /// A diagnostic bundle of a kind or version this build does not read, or no bundle at all.
    BundleUnsupported = "bundle_unsupported",
    /// A diagnostic bundle cut short, changed after export (its digest does not match), or
    /// not JSON.
    BundleDamaged = "bundle_damaged",
    /// Tauri rejected a call itself (an unknown command, arguments that do not deserialize).
    IpcError = "ipc_error",
}

impl Code {
    /// The code named by its wire string; `None` for a string this build does not know.
    pub fn parse(text: &str) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.as_str() == text)
    }

    /// The code named by a wire string, [`Code::Unrecognized`] when unknown.
    pub fn from_wire(text: &str) -> Code {
        Code::parse(text).unwrap_or(Code::Unrecognized)
    }

    /// The HTTP status the router answers with when a request fails with this code. Codes the
    /// router never answers with (the client's own, the tube's) are 500 should one get there; a
    /// code a gateway reports about itself is 502, the gateway could not serve the message.
    pub fn http_status(self) -> u16 {
        use Code::*;
        match self {
            Unauthorized | TokenExpired | WrongIssuer | WrongAudience | BadSignature => 401,
            Forbidden | NotInGroup => 403,
            UnknownGateway | UnknownResource | NotFound | ReportsDisabled => 404,
            Malformed | SealRejected | UnsupportedVersion | InvalidKey => 400,
            TooLarge => 413,
            RequestTimeout | HeaderTimeout => 408,
            TooManyConnections | SessionLimit => 429,
            Overloaded | ControllerDown | FleetUnavailable | SsoUnavailable => 503,
            RrcTimeout => 504,
            Internal => 500,
            BadState | Normal | TargetRefused | TargetTimeout | TargetUnreachable | TargetError
            | ClosedByAdmin | GatewayShutdown | ClientClosed | ProtocolError | NetworkFailed
            | GatewayLost | Closed | WebrtcError | InvalidSdp | InvalidCandidate
            | WebrtcTimeout | TubeClosed | WebrtcFailed | InvalidConfig | Unrecognized => 502,
            ConfigInvalid | RouterRefused | UnknownConversation | ClientSlow | IdleTimeout
            | Evicted | TlsHandshake | IoError | InvalidTunable | InvalidProfile | MissingToken
            | LabFailed | UnknownSession | UnknownLaunch | UnpinnedGateway | RouterUnreachable
            | HttpError | Timeout | ConnectionError | RouterTls | EmptyReply | PortTaken
            | InvalidPort | ClientMissing | ClientFailed | KeyringError | BenchFailed
            | NotInApp | IpcError | BundleUnsupported | BundleDamaged | GatewayKeyChanged
            | InvalidProfileImport | SsoFailed => 500,
        }
    }

    /// Whether the same offer may succeed if sent again after the catch-up delay: the gateway
    /// was not there yet, was slow, or the router could not be reached for a moment.
    pub fn is_transient(self) -> bool {
        use Code::*;
        match self {
            ControllerDown | RrcTimeout | BadState | Overloaded | Timeout | ConnectionError
            | FleetUnavailable | SsoUnavailable => true,
            Unauthorized | Forbidden | UnknownGateway | UnknownResource | Malformed | NotFound
            | TooLarge | SealRejected | InvalidKey | HeaderTimeout | RequestTimeout
            | TooManyConnections | UnsupportedVersion | Internal | Normal | TargetRefused
            | TargetTimeout | TargetUnreachable | TargetError | SessionLimit | ClosedByAdmin
            | GatewayShutdown | ClientClosed | ProtocolError | NetworkFailed | GatewayLost
            | Closed | ConfigInvalid | RouterRefused | UnknownConversation | ClientSlow
            | IdleTimeout | Evicted | TlsHandshake | WebrtcError | InvalidSdp
            | InvalidCandidate | WebrtcTimeout | TubeClosed | WebrtcFailed | InvalidConfig
            | IoError | InvalidTunable | InvalidProfile | MissingToken | LabFailed
            | UnknownSession | UnknownLaunch | UnpinnedGateway | RouterUnreachable | RouterTls
            | HttpError | EmptyReply | PortTaken | InvalidPort | ClientMissing | ClientFailed
            | KeyringError | BenchFailed | NotInApp | IpcError | Unrecognized | ReportsDisabled
            | BundleUnsupported | BundleDamaged | TokenExpired | WrongIssuer | WrongAudience
            | BadSignature | NotInGroup | GatewayKeyChanged | InvalidProfileImport | SsoFailed => {
                false
            }
        }
    }

    /// A sentence a user can act on; the CLI and the app show the same one.
    pub fn hint(self) -> &'static str {
        use Code::*;
        match self {
            RouterUnreachable | ConnectionError => {
                "Check the router URL in Settings (or the profile) and that the router is running."
            }
            RouterTls => {
                "The router's certificate was refused: set the profile's ca_file to the CA that signed it, or check the router URL's host name."
            }
            Unauthorized => {
                "The router refused the token: paste a valid one in Settings, or run `sallyport login`."
            }
            MissingToken => {
                "Sign in (Settings, or `sallyport login --sso`), or give a router token: in Settings, with `sallyport login`, or in SALLYPORT_TOKEN."
            }
            Forbidden => {
                "Your token may not do this (launch this resource, or read launch reports without the support role); ask an administrator."
            }
            ReportsDisabled => {
                "This router keeps no launch reports; its administrator can turn them on ([reports] enabled = true)."
            }
            BundleUnsupported => {
                "Open the bundle with the Sallyport version that wrote it (named in the message), or ask for a bundle from this version."
            }
            BundleDamaged => {
                "The file was cut short or changed after export; ask for the bundle again, sent as an attachment."
            }
            ControllerDown | GatewayLost => {
                "The resource's gateway is offline; try again when its dot is green."
            }
            RrcTimeout | BadState | Timeout | WebrtcTimeout | Overloaded | TooManyConnections
            | FleetUnavailable => {
                "The gateway or the router did not answer in time; try again."
            }
            SealRejected | InvalidKey => {
                "The gateway's key does not match the key pinned in your profile."
            }
            UnpinnedGateway => {
                "Compare the fingerprint with the one your administrator gave you, then accept it (or `sallyport profile pin GATEWAY KEY`)."
            }
            GatewayKeyChanged => {
                "The gateway's key differs from the pinned one: do not accept it until your administrator confirms the new fingerprint; then remove the old pin in Settings (or `sallyport profile unpin GATEWAY`)."
            }
            InvalidProfileImport => "Fix the field named in the message, or ask your administrator for a corrected profile.",
            TokenExpired => "Your sign-in has expired: run `sallyport login --sso` (or sign in again in Settings).",
            WrongIssuer | WrongAudience => {
                "The token is from another identity provider or application: check the profile's [sso] issuer and client_id against the router's."
            }
            BadSignature => "The token's signature does not verify: sign in again; if it persists, tell an administrator.",
            NotInGroup => "Your account is in no group this router admits; ask an administrator to add you.",
            SsoUnavailable => "The router cannot reach the identity provider; try again shortly.",
            SsoFailed => "Sign-in with the identity provider failed; see the message, then try again.",
            TargetRefused | TargetTimeout | TargetUnreachable | TargetError => {
                "The gateway cannot reach this resource's target; tell its administrator."
            }
            PortTaken => "Choose another local port for this resource.",
            InvalidPort => "Choose a local port from 1024 to 65535, or leave it empty for a free one.",
            ClientMissing => "Install that client, or pick another \"connect with\" option.",
            ClientFailed => "Check the client command; it could not be started.",
            UnknownResource | UnknownGateway => {
                "Refresh the resource list; it may have been removed."
            }
            SessionLimit => "The gateway has too many sessions; close one and try again.",
            KeyringError => "The OS keyring is not available; unlock it and try again.",
            InvalidProfile => "Fix the profile (router URL, pinned keys) in Settings or profile.toml.",
            InvalidTunable => "Fix the environment variable named in the message.",
            LabFailed => "The embedded lab could not start; see the message, free its port, and restart.",
            UnknownSession => "That session has already ended; refresh the session list.",
            UnknownLaunch => "That launch is no longer in the history.",
            NetworkFailed | WebrtcFailed => {
                "The network path to the gateway failed; check UDP reachability and try again."
            }
            GatewayShutdown | ClosedByAdmin => {
                "The gateway ended the session; launch again when it is back."
            }
            NotInApp => "Open it through the Sallyport desktop app, where the UI can reach the launcher.",
            Normal | ClientClosed | Closed => "The session was closed.",
            Unrecognized | Malformed | NotFound | TooLarge | HeaderTimeout | RequestTimeout
            | UnsupportedVersion | Internal | ProtocolError | ConfigInvalid | RouterRefused
            | UnknownConversation | ClientSlow | IdleTimeout | Evicted | TlsHandshake | WebrtcError | InvalidSdp
            | InvalidCandidate | TubeClosed | InvalidConfig | IoError | HttpError | EmptyReply | BenchFailed
            | IpcError => "Open the launch's timeline and export a diagnostic bundle for support.",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Code {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Code::parse(text).ok_or_else(|| format!("unknown code {text:?}"))
    }
}

impl From<Code> for String {
    fn from(code: Code) -> String {
        code.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_serializes_as_its_string_and_back() {
        for code in Code::ALL {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<Code>(&json).unwrap(), *code);
            assert_eq!(Code::parse(code.as_str()), Some(*code));
        }
        let mut seen = std::collections::HashSet::new();
        assert!(
            Code::ALL.iter().all(|c| seen.insert(c.as_str())),
            "no string twice"
        );
    }

    #[test]
    fn an_unknown_string_reads_as_unrecognized() {
        assert_eq!(
            serde_json::from_str::<Code>("\"from_a_newer_router\"").unwrap(),
            Code::Unrecognized
        );
        assert_eq!(Code::from_wire("nope"), Code::Unrecognized);
        assert_eq!(Code::parse("nope"), None);
    }

    #[test]
    fn statuses_and_transience_of_the_router_codes() {
        assert_eq!(Code::ControllerDown.http_status(), 503);
        assert_eq!(Code::RrcTimeout.http_status(), 504);
        assert_eq!(Code::BadState.http_status(), 502);
        assert_eq!(Code::Unauthorized.http_status(), 401);
        assert_eq!(Code::TooLarge.http_status(), 413);
        assert_eq!(Code::Unrecognized.http_status(), 502);
        for transient in [Code::ControllerDown, Code::RrcTimeout, Code::BadState] {
            assert!(transient.is_transient(), "{transient}");
        }
        for lasting in [Code::Unauthorized, Code::SealRejected, Code::SessionLimit] {
            assert!(!lasting.is_transient(), "{lasting}");
        }
    }
}
