//! Tauri commands: each a few lines over the service. Arguments and results are snake_case,
//! as every type on the IPC line (ui/src/generated/ipc.ts); errors are `CommandError`.

use std::sync::Arc;

use sallyport_core::bundle::BundleView;
use sallyport_core::history::LaunchRecord;
use sallyport_core::PinnedGateway;
use sallyport_core::{Checkpoint, ClientChoice, Profile, SessionInfo};
use sallyport_protocol::report::{GroupBy, LaunchList, LaunchQuery, LaunchStats};
use sallyport_service::{
    AppStateView, CommandError, ImportView, LaunchOptions, ResourceView, Service, SettingsView,
};
use tauri::ipc::Channel;
use tauri::State;

use crate::tray::TrayModel;

type Result<T> = std::result::Result<T, CommandError>;
type Shared<'a> = State<'a, Arc<Service>>;

#[tauri::command(rename_all = "snake_case")]
pub async fn app_state(service: Shared<'_>) -> Result<AppStateView> {
    Ok(service.app_state().await)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn list_resources(service: Shared<'_>) -> Result<Vec<ResourceView>> {
    Ok(service.resources().await?)
}

#[tauri::command(rename_all = "snake_case")]
pub fn set_sticky_port(service: Shared<'_>, resource: String, port: Option<u16>) -> Result<()> {
    Ok(service.set_sticky_port(&resource, port)?)
}

/// Launch; the checkpoints reach the UI live over `on_checkpoint`. `client`: a template,
/// `"none"` for the tunnel only, or null for the protocol's default.
#[tauri::command(rename_all = "snake_case")]
pub async fn launch(
    service: Shared<'_>,
    resource: String,
    port: Option<u16>,
    client: Option<String>,
    on_checkpoint: Channel<Checkpoint>,
) -> Result<SessionInfo> {
    let mut options = LaunchOptions::new(&resource);
    options.port = port;
    options.client = match client.as_deref() {
        None => ClientChoice::Default,
        Some("none") => ClientChoice::None,
        Some(template) => ClientChoice::Template(template.to_owned()),
    };
    let send = move |c: &Checkpoint| {
        let _ = on_checkpoint.send(c.clone());
    };
    Ok(service.launch_supervised(options, send).await?)
}

/// Push the session list now, every second, and on every change, until the UI goes away.
#[tauri::command(rename_all = "snake_case")]
pub async fn watch_sessions(
    service: Shared<'_>,
    on_update: Channel<Vec<SessionInfo>>,
) -> Result<()> {
    let service = Arc::clone(&service);
    let mut changes = service.changes();
    tauri::async_runtime::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        while on_update.send(service.sessions()).is_ok() {
            tokio::select! {
                _ = tick.tick() => {}
                changed = changes.changed() => if changed.is_err() { break },
            }
        }
    });
    Ok(())
}

#[tauri::command(rename_all = "snake_case")]
pub async fn close_session(service: Shared<'_>, launch_id: String) -> Result<()> {
    Ok(service.close_session(&launch_id).await?)
}

#[tauri::command(rename_all = "snake_case")]
pub fn history(service: Shared<'_>) -> Result<Vec<LaunchRecord>> {
    Ok(service.history())
}

#[tauri::command(rename_all = "snake_case")]
pub async fn get_settings(service: Shared<'_>) -> Result<SettingsView> {
    Ok(service.settings().await)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn save_settings(
    service: Shared<'_>,
    router_url: String,
    profile: Profile,
    token: Option<String>,
) -> Result<()> {
    Ok(service.save_settings(&router_url, profile, token).await?)
}

/// Import a distributed profile: its text, as the Settings file picker read it, and its name.
#[tauri::command(rename_all = "snake_case")]
pub async fn import_profile(service: Shared<'_>, text: String, name: String) -> Result<ImportView> {
    Ok(service
        .import_profile(&text, std::path::Path::new(&name))
        .await?)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn pinned_gateways(service: Shared<'_>) -> Result<Vec<PinnedGateway>> {
    Ok(service.pinned_gateways().await)
}

/// Pin a key: typed in Settings, or the one whose fingerprint the user accepted at launch.
#[tauri::command(rename_all = "snake_case")]
pub async fn pin_gateway(
    service: Shared<'_>,
    gateway: String,
    key: String,
) -> Result<Vec<PinnedGateway>> {
    Ok(service.pin_gateway(&gateway, &key).await?)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn unpin_gateway(service: Shared<'_>, gateway: String) -> Result<Vec<PinnedGateway>> {
    Ok(service.unpin_gateway(&gateway).await?)
}

/// Sign in with the profile's OpenID provider in the system browser (PKCE, loopback redirect).
#[tauri::command(rename_all = "snake_case")]
pub async fn sso_sign_in(service: Shared<'_>) -> Result<()> {
    Ok(service.sso_sign_in().await?)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn export_bundle(service: Shared<'_>, launch_id: String) -> Result<String> {
    let path = service.export_bundle(&launch_id).await?;
    Ok(path.display().to_string())
}

/// Read and check a diagnostic bundle the user picked or dropped (the file's text).
#[tauri::command(rename_all = "snake_case")]
pub fn open_bundle(service: Shared<'_>, contents: String) -> Result<BundleView> {
    Ok(service.open_bundle(contents.as_bytes())?)
}

/// Every user's launches at the router (support role).
#[tauri::command(rename_all = "snake_case")]
pub async fn support_launches(
    service: Shared<'_>,
    query: LaunchQuery,
    limit: Option<u32>,
) -> Result<LaunchList> {
    Ok(service.support_launches(&query, limit).await?)
}

/// Per-phase percentiles at the router, grouped (support role).
#[tauri::command(rename_all = "snake_case")]
pub async fn support_stats(
    service: Shared<'_>,
    query: LaunchQuery,
    group_by: GroupBy,
) -> Result<LaunchStats> {
    Ok(service.support_stats(&query, group_by).await?)
}

/// The tray menu as currently built: labels in order (for tests and support).
#[tauri::command(rename_all = "snake_case")]
pub fn tray_menu_items(model: State<'_, TrayModel>) -> Vec<String> {
    model.labels()
}
