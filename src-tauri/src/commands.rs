//! Tauri commands: a few lines each, calling the backend. Errors carry a stable code, the
//! message and a hint the UI shows as is.

use std::sync::Arc;

use sallyport_core::history::LaunchRecord;
use sallyport_core::{Checkpoint, CoreError, Profile, SessionInfo};
use serde::Serialize;
use tauri::ipc::Channel;
use tauri::State;

use crate::backend::{hint_for, AppStateView, Backend, ResourceView, SettingsView};
use crate::tray::TrayModel;

#[derive(Debug, Serialize)]
pub struct CommandError {
    code: String,
    message: String,
    hint: String,
}

impl From<CoreError> for CommandError {
    fn from(e: CoreError) -> Self {
        let code = e.code().to_owned();
        Self {
            hint: hint_for(&code).to_owned(),
            message: e.to_string(),
            code,
        }
    }
}

type Result<T> = std::result::Result<T, CommandError>;
type Shared<'a> = State<'a, Arc<Backend>>;

#[tauri::command]
pub async fn app_state(backend: Shared<'_>) -> Result<AppStateView> {
    Ok(backend.app_state().await)
}

#[tauri::command]
pub async fn list_resources(backend: Shared<'_>) -> Result<Vec<ResourceView>> {
    Ok(backend.resources().await?)
}

#[tauri::command]
pub fn set_sticky_port(backend: Shared<'_>, resource: String, port: Option<u16>) -> Result<()> {
    Ok(backend.set_sticky_port(&resource, port)?)
}

/// Launch; the checkpoints reach the UI live over `on_checkpoint`, unchanged.
#[tauri::command]
pub async fn launch(
    backend: Shared<'_>,
    resource: String,
    port: Option<u16>,
    client: Option<String>,
    on_checkpoint: Channel<Checkpoint>,
) -> Result<SessionInfo> {
    let info = backend
        .launch(&resource, port, client, move |c| {
            let _ = on_checkpoint.send(c);
        })
        .await?;
    let backend = Arc::clone(&backend);
    let launch_id = info.launch_id.clone();
    tauri::async_runtime::spawn(async move { backend.supervise(&launch_id).await });
    Ok(info)
}

/// Push the session list now, every second, and on every change, until the UI goes away.
#[tauri::command]
pub async fn watch_sessions(
    backend: Shared<'_>,
    on_update: Channel<Vec<SessionInfo>>,
) -> Result<()> {
    let backend = Arc::clone(&backend);
    let mut changes = backend.changes();
    tauri::async_runtime::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            if on_update.send(backend.sessions()).is_err() {
                break;
            }
            tokio::select! {
                _ = tick.tick() => {}
                changed = changes.changed() => if changed.is_err() { break },
            }
        }
    });
    Ok(())
}

#[tauri::command]
pub async fn close_session(backend: Shared<'_>, launch_id: String) -> Result<()> {
    Ok(backend.close_session(&launch_id).await?)
}

#[tauri::command]
pub fn history(backend: Shared<'_>) -> Result<Vec<LaunchRecord>> {
    Ok(backend.history())
}

#[tauri::command]
pub async fn get_settings(backend: Shared<'_>) -> Result<SettingsView> {
    Ok(backend.settings().await)
}

#[tauri::command]
pub async fn save_settings(
    backend: Shared<'_>,
    router_url: String,
    profile: String,
    token: Option<String>,
) -> Result<()> {
    let profile: Profile = profile.parse()?;
    Ok(backend.save_settings(&router_url, profile, token).await?)
}

#[tauri::command]
pub async fn export_bundle(backend: Shared<'_>, launch_id: String) -> Result<String> {
    Ok(backend
        .export_bundle(&launch_id)
        .await?
        .display()
        .to_string())
}

/// The tray menu as currently built: labels in order (for tests and support).
#[tauri::command]
pub fn tray_menu_items(model: State<'_, TrayModel>) -> Vec<String> {
    model.labels()
}
