//! The core's one error type. Every variant has a stable code the CLI and the UI show.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{name}: {message}")]
    Tunable { name: &'static str, message: String },
    #[error("profile: {0}")]
    Profile(String),
    #[error("unknown resource {0:?}: the router lists no such resource for this token")]
    UnknownResource(String),
    #[error("no pinned key for gateway {0:?}: add it to the profile's [gateways] table")]
    UnpinnedGateway(String),
    #[error("router {url} is unreachable: {message}")]
    RouterUnreachable { url: String, message: String },
    #[error("router refused the request ({status} {code}): {message}")]
    Router {
        status: u16,
        code: String,
        message: String,
    },
    #[error(
        "offer to gateway {gateway:?} for resource {resource:?} failed after {attempts} attempt(s): {code}: {message}"
    )]
    OfferFailed {
        gateway: String,
        resource: String,
        code: String,
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
    #[error("native client {program:?} was not found on PATH; install it or pass --run")]
    ClientMissing { program: String },
    #[error("native client: {0}")]
    Client(String),
    #[error("keyring: {0}")]
    Keyring(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl CoreError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &str {
        match self {
            CoreError::Tunable { .. } => "invalid_tunable",
            CoreError::Profile(_) => "invalid_profile",
            CoreError::UnknownResource(_) => "unknown_resource",
            CoreError::UnpinnedGateway(_) => "unpinned_gateway",
            CoreError::RouterUnreachable { .. } => "router_unreachable",
            CoreError::Router { code, .. } => code,
            CoreError::OfferFailed { code, .. } => code,
            CoreError::Seal(_) => "seal_rejected",
            CoreError::Tube(e) => e.code(),
            CoreError::Timeout(..) => "timeout",
            CoreError::Target(reason) | CoreError::TubeClosed(reason) => reason.as_str(),
            CoreError::PortTaken { .. } => "port_taken",
            CoreError::ClientMissing { .. } => "client_missing",
            CoreError::Client(_) => "client_failed",
            CoreError::Keyring(_) => "keyring_error",
            CoreError::Io(_) => "io_error",
        }
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
