//! The core's one error type. Every variant has a stable code (from the one registry,
//! [`Code`]) and so a hint the CLI and the app show alike.

use std::time::Duration;

use sallyport_protocol::Code;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{name}: {message}")]
    Tunable { name: &'static str, message: String },
    #[error("profile: {0}")]
    Profile(String),
    #[error(
        "no router token: sign in with `sallyport login --sso` (a profile with [sso]) or keep one with `sallyport login`, set SALLYPORT_TOKEN, or put token in the profile"
    )]
    MissingToken,
    #[error("the embedded lab could not start: {0}")]
    LabFailed(String),
    #[error("no active session {0:?}")]
    UnknownSession(String),
    #[error("no launch {0:?} in the history")]
    UnknownLaunch(String),
    #[error("unknown resource {0:?}: the router lists no such resource for this token")]
    UnknownResource(String),
    #[error("{}", unpinned_message(gateway, offered.as_deref()))]
    UnpinnedGateway {
        gateway: String,
        /// The key the router lists for the gateway (base64), not trusted until accepted.
        offered: Option<String>,
    },
    #[error("WARNING: the key of gateway {gateway:?} has changed: pinned {pinned}, the router now lists {listed}. Refused: someone may be impersonating the gateway, or it was given a new key")]
    GatewayKeyChanged {
        gateway: String,
        pinned: String,
        listed: String,
    },
    #[error("{file}: {message}")]
    ProfileImport { file: String, message: String },
    #[error("sign-in with {issuer}: {message}")]
    Sso { issuer: String, message: String },
    #[error("router {url} is unreachable: {message}")]
    RouterUnreachable { url: String, message: String },
    #[error("router refused the request ({status} {code}): {message}")]
    Router {
        status: u16,
        code: Code,
        message: String,
    },
    #[error(
        "offer to gateway {gateway:?} for resource {resource:?} failed after {attempts} attempt(s): {code}: {message}"
    )]
    OfferFailed {
        gateway: String,
        resource: String,
        code: Code,
        message: String,
        attempts: u32,
    },
    #[error("the gateway's reply could not be opened: {0}")]
    Seal(String),
    #[error("webrtc: {0}")]
    Tube(#[from] sallyport_tube::TubeError),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
    #[error("the gateway could not reach the target: {0}")]
    Target(sallyport_protocol::CloseReason),
    #[error("the gateway closed the tube: {0}")]
    TubeClosed(sallyport_protocol::CloseReason),
    #[error("local port {port} on 127.0.0.1 is not available: {message}")]
    PortTaken { port: u16, message: String },
    #[error("local port {0} needs privileges; choose 1024 or above")]
    InvalidPort(u16),
    #[error("native client {program:?} was not found on PATH; install it or pass --run")]
    ClientMissing { program: String },
    #[error("native client: {0}")]
    Client(String),
    #[error("keyring: {0}")]
    Keyring(String),
    #[error("this diagnostic bundle cannot be opened: {0}")]
    BundleUnsupported(String),
    #[error("this diagnostic bundle is damaged: {0}")]
    BundleDamaged(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl CoreError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> Code {
        match self {
            CoreError::Tunable { .. } => Code::InvalidTunable,
            CoreError::Profile(_) => Code::InvalidProfile,
            CoreError::MissingToken => Code::MissingToken,
            CoreError::LabFailed(_) => Code::LabFailed,
            CoreError::UnknownSession(_) => Code::UnknownSession,
            CoreError::UnknownLaunch(_) => Code::UnknownLaunch,
            CoreError::UnknownResource(_) => Code::UnknownResource,
            CoreError::UnpinnedGateway { .. } => Code::UnpinnedGateway,
            CoreError::GatewayKeyChanged { .. } => Code::GatewayKeyChanged,
            CoreError::ProfileImport { .. } => Code::InvalidProfileImport,
            CoreError::Sso { .. } => Code::SsoFailed,
            CoreError::RouterUnreachable { .. } => Code::RouterUnreachable,
            CoreError::Router { code, .. } => *code,
            CoreError::OfferFailed { code, .. } => *code,
            CoreError::Seal(_) => Code::SealRejected,
            CoreError::Tube(e) => e.code(),
            CoreError::Timeout(..) => Code::Timeout,
            CoreError::Target(reason) | CoreError::TubeClosed(reason) => reason.code(),
            CoreError::PortTaken { .. } => Code::PortTaken,
            CoreError::InvalidPort(_) => Code::InvalidPort,
            CoreError::ClientMissing { .. } => Code::ClientMissing,
            CoreError::Client(_) => Code::ClientFailed,
            CoreError::Keyring(_) => Code::KeyringError,
            CoreError::BundleUnsupported(_) => Code::BundleUnsupported,
            CoreError::BundleDamaged(_) => Code::BundleDamaged,
            CoreError::Io(_) => Code::IoError,
        }
    }

    /// For `unpinned_gateway`: the key the router lists, with its fingerprint, to ask about.
    pub fn offered_key(&self) -> Option<crate::PinnedGateway> {
        let CoreError::UnpinnedGateway {
            gateway,
            offered: Some(key),
        } = self
        else {
            return None;
        };
        let parsed = sallyport_protocol::GatewayPublicKey::from_base64(key).ok()?;
        Some(crate::PinnedGateway {
            gateway: gateway.clone(),
            key: parsed.to_base64(),
            fingerprint: parsed.fingerprint(),
        })
    }

    /// What the user can do about it; the same sentence in the CLI and the app.
    pub fn hint(&self) -> &'static str {
        self.code().hint()
    }
}

fn unpinned_message(gateway: &str, offered: Option<&str>) -> String {
    match offered.and_then(|k| sallyport_protocol::GatewayPublicKey::from_base64(k).ok()) {
        Some(key) => format!(
            "gateway {gateway:?} is not pinned; the router lists its key with fingerprint {} (not trusted until you accept it)",
            key.fingerprint()
        ),
        None => format!(
            "no pinned key for gateway {gateway:?}, and the router lists none: pin it from your administrator (profile import, Settings, or `sallyport profile pin`)"
        ),
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
