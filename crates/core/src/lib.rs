//! sallyport-core: the launch pipeline and everything it drives, with no Tauri in it.
//! The CLI, the desktop app and the tests all use this crate.
//!
//! * [`pipeline`]: the phases of a launch, in order, each emitting its checkpoint;
//! * [`tube`]: the client side of the WebRTC tube, behind its own small interface;
//! * [`session`]: the local listener, connections, native client and counters;
//! * [`checkpoint`], [`tunables`], [`cache`], [`profile`], [`native_client`], [`router_api`].

pub mod bundle;
pub mod cache;
pub mod chart;
pub mod checkpoint;
pub mod error;
pub mod history;
pub mod import;
pub mod logbuf;
pub mod native_client;
pub mod pipeline;
pub mod profile;
pub mod router_api;
pub mod secrets;
pub mod session;
pub mod sso;
pub mod tube;
pub mod tunables;

pub use checkpoint::{Checkpoint, CheckpointBus};
pub use error::{CoreError, Result};
pub use import::PinnedGateway;
pub use native_client::{ClientChoice, ClientOption, Face};
pub use pipeline::{LaunchRequest, Launched, Launcher};
pub use profile::{ClientProfile, SsoSettings, StickyPorts};
pub use session::{Session, SessionEnd, SessionEnded, SessionInfo, SessionState};
pub use tube::TubeConfig;
pub use tunables::{Profile, Tunables};

/// A short random launch id.
pub fn new_launch_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}
