//! What the service hands the faces besides the core's own types: views for the UI and the
//! error shape every command rejects with. One naming convention across the IPC line:
//! snake_case, as the core's types (and the history file) have always been.

use sallyport_core::{ClientOption, CoreError, PinnedGateway, Profile, SsoSettings};
use sallyport_protocol::Code;
use serde::Serialize;

/// What the UI shows about the app itself.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct AppStateView {
    pub router_url: String,
    pub profile: Profile,
    /// Launches go to the embedded lab.
    pub lab: bool,
    pub token_set: bool,
    pub version: String,
    /// The token's roles at the router (`GET /v1/me`); empty when it could not say.
    pub roles: Vec<String>,
    /// The token has the `support` role: the Support panel shows.
    pub support: bool,
}

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct ResourceView {
    pub name: String,
    pub protocol: String,
    pub gateway: String,
    pub online: bool,
    pub sticky_port: Option<u16>,
    /// The first is the protocol's default, the last opens the tunnel only.
    pub client_choices: Vec<ClientOption>,
}

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct SettingsView {
    pub router_url: String,
    pub profile: Profile,
    pub token_set: bool,
    /// The profile's OpenID provider, when it has one (Settings offers to sign in).
    pub sso_issuer: Option<String>,
    /// Launches carry a single sign-on token (kept fresh in the background).
    pub signed_in: bool,
}

/// What a profile import changed, for the faces to show.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct ImportView {
    pub router_url: String,
    pub ca_file: Option<String>,
    pub sso: Option<SsoSettings>,
    pub gateways: Vec<PinnedGateway>,
}

/// A failure as both faces show it: the code, the message, and the code's hint.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
pub struct CommandError {
    pub code: Code,
    pub message: String,
    pub hint: String,
    /// With `unpinned_gateway`: the key the router lists, to show and pin once the user
    /// accepts its fingerprint (never pinned without asking).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub unpinned: Option<Box<PinnedGateway>>,
}

impl From<CoreError> for CommandError {
    fn from(e: CoreError) -> Self {
        Self::from(&e)
    }
}

impl From<&CoreError> for CommandError {
    fn from(e: &CoreError) -> Self {
        Self {
            code: e.code(),
            message: e.to_string(),
            hint: e.hint().to_owned(),
            unpinned: e.offered_key().map(Box::new),
        }
    }
}

impl std::fmt::Display for CommandError {
    /// `error [code]: message` and the hint on the next line, as the CLI prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "error [{}]: {}\nhint: {}",
            self.code, self.message, self.hint
        )
    }
}
