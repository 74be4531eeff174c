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
        "no router token: run `sallyport login`, set SALLYPORT_TOKEN, or put token in the profile"
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
    #[error("no pinned key for gateway {0:?}: add it to the profile's [gateways] table")]
    UnpinnedGateway(String),
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
            CoreError::UnpinnedGateway(_) => Code::UnpinnedGateway,
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

    /// What the user can do about it; the same sentence in the CLI and the app.
    pub fn hint(&self) -> &'static str {
        self.code().hint()
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
