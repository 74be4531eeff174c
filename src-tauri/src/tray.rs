//! The tray: recent resources (one click relaunches), active sessions (one click closes),
//! sessions that ended by themselves and why (one click dismisses), open the window, quit.
//! Rebuilt whenever sessions or the history change.

use std::sync::{Arc, Mutex};

use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::AppHandle;

use sallyport_core::SessionState;
use sallyport_service::{LaunchOptions, Service};

pub const TRAY_ID: &str = "sallyport";

/// One menu line: id (what a click does) and label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Header(String),
    Item { id: String, label: String },
    Separator,
}

/// The menu currently installed, kept for `tray_menu_items`.
#[derive(Default, Clone)]
pub struct TrayModel(Arc<Mutex<Vec<Entry>>>);

impl TrayModel {
    pub fn labels(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| match e {
                Entry::Header(label) | Entry::Item { label, .. } => label.clone(),
                Entry::Separator => "---".into(),
            })
            .collect()
    }
}

/// The menu's content, from the service's state; no Tauri here.
pub fn model(service: &Service) -> Vec<Entry> {
    let mut entries = vec![Entry::Header("Recent".into())];
    let recent = service.recent_resources(5);
    if recent.is_empty() {
        entries.push(Entry::Header("  (none yet)".into()));
    }
    for resource in recent {
        entries.push(Entry::Item {
            id: format!("relaunch:{resource}"),
            label: format!("Launch {resource}"),
        });
    }
    entries.push(Entry::Separator);
    entries.push(Entry::Header("Active sessions".into()));
    let (ended, sessions): (Vec<_>, Vec<_>) = service
        .sessions()
        .into_iter()
        .partition(|s| s.ended.is_some());
    if sessions.is_empty() {
        entries.push(Entry::Header("  (none)".into()));
    }
    for s in sessions {
        entries.push(Entry::Item {
            id: format!("close:{}", s.launch_id),
            label: match s.state {
                SessionState::Reconnecting => format!(
                    "Close {} (127.0.0.1:{}, reconnecting…)",
                    s.resource, s.local_port
                ),
                _ => format!("Close {} (127.0.0.1:{})", s.resource, s.local_port),
            },
        });
    }
    if !ended.is_empty() {
        entries.push(Entry::Header("Ended".into()));
    }
    for s in ended {
        let reason = s.ended.map_or("", |e| e.code.as_str()).replace('_', " ");
        entries.push(Entry::Item {
            id: format!("close:{}", s.launch_id),
            label: format!("Dismiss {} (ended: {reason})", s.resource),
        });
    }
    entries.push(Entry::Separator);
    entries.push(Entry::Item {
        id: "open".into(),
        label: "Open Sallyport".into(),
    });
    entries.push(Entry::Item {
        id: "quit".into(),
        label: "Quit".into(),
    });
    entries
}

fn build_menu(app: &AppHandle, entries: &[Entry]) -> tauri::Result<Menu<tauri::Wry>> {
    let menu = Menu::new(app)?;
    for (i, entry) in entries.iter().enumerate() {
        match entry {
            Entry::Header(label) => menu.append(&MenuItem::with_id(
                app,
                format!("header:{i}"),
                label,
                false,
                None::<&str>,
            )?)?,
            Entry::Item { id, label } => {
                menu.append(&MenuItem::with_id(app, id, label, true, None::<&str>)?)?
            }
            Entry::Separator => menu.append(&PredefinedMenuItem::separator(app)?)?,
        }
    }
    Ok(menu)
}

/// Create the tray icon and keep its menu in step with the service.
pub fn install(app: &AppHandle, service: Arc<Service>, model_slot: TrayModel) -> tauri::Result<()> {
    let entries = model(&service);
    let menu = build_menu(app, &entries)?;
    *model_slot.0.lock().unwrap() = entries;
    let icon = tauri::image::Image::from_bytes(include_bytes!("../../icons/tray.png"))?;
    let handler_service = service.clone();
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(icon)
        .tooltip("Sallyport")
        .menu(&menu)
        .on_menu_event(move |app, event| on_menu(app, &handler_service, event.id().as_ref()))
        .build(app)?;

    let app = app.clone();
    let mut changes = service.changes();
    tauri::async_runtime::spawn(async move {
        while changes.changed().await.is_ok() {
            let entries = model(&service);
            if *model_slot.0.lock().unwrap() == entries {
                continue;
            }
            match (build_menu(&app, &entries), app.tray_by_id(TRAY_ID)) {
                (Ok(menu), Some(tray)) => {
                    if let Err(e) = tray.set_menu(Some(menu)) {
                        tracing::warn!(error = %e, "could not update the tray menu");
                    }
                    *model_slot.0.lock().unwrap() = entries;
                }
                (Err(e), _) => tracing::warn!(error = %e, "could not build the tray menu"),
                _ => {}
            }
        }
    });
    Ok(())
}

fn on_menu(app: &AppHandle, service: &Arc<Service>, id: &str) {
    if id == "open" {
        crate::show_main_window(app);
    } else if id == "quit" {
        let service = service.clone();
        let app = app.clone();
        tauri::async_runtime::spawn(async move {
            service.close_all().await;
            app.exit(0);
        });
    } else if let Some(launch_id) = id.strip_prefix("close:") {
        let service = service.clone();
        let launch_id = launch_id.to_owned();
        tauri::async_runtime::spawn(async move {
            if let Err(e) = service.close_session(&launch_id).await {
                tracing::warn!(error = %e, "tray close failed");
            }
        });
    } else if let Some(resource) = id.strip_prefix("relaunch:") {
        let service = service.clone();
        let resource = resource.to_owned();
        tauri::async_runtime::spawn(async move {
            let relaunch = service.launch_supervised(LaunchOptions::new(&resource), |_| {});
            if let Err(e) = relaunch.await {
                tracing::warn!(code = %e.code(), error = %e, "tray relaunch failed");
            }
        });
    }
}
