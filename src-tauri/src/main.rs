//! Sallyport's desktop app: wiring only. State and logic live in sallyport-service (which the
//! CLI calls too); commands are a few lines; the tray follows the service.

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;
mod tray;

use std::sync::Arc;

use sallyport_core::logbuf::LaunchLogs;
use tauri::{AppHandle, Manager, WindowEvent};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use sallyport_core::Face;
use sallyport_service::{CommandError, Connect, Options, Service};
use tray::TrayModel;

pub fn show_main_window(app: &AppHandle) {
    if let Some(window) = app.get_webview_window("main") {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
    }
}

fn main() {
    let logs = LaunchLogs::default();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "info,rtc=error,rtc_ice=error,rtc_dtls=error,webrtc=error".into()
            }),
        )
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(logs.layer())
        .init();

    let home = sallyport_core::profile::home_dir();
    let options = Options {
        logs,
        ..Options::new(home, Face::Desktop, Connect::RouterOrLab)
    };
    let service = match tauri::async_runtime::block_on(Service::start(options)) {
        Ok(service) => Arc::new(service),
        Err(e) => {
            eprintln!("{}", CommandError::from(e));
            std::process::exit(1);
        }
    };
    let tray_model = TrayModel::default();

    let app = tauri::Builder::default()
        // A second start focuses the first instead of running twice.
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            show_main_window(app);
        }))
        .manage(service.clone())
        .manage(tray_model.clone())
        .invoke_handler(tauri::generate_handler![
            commands::app_state,
            commands::list_resources,
            commands::set_sticky_port,
            commands::launch,
            commands::watch_sessions,
            commands::close_session,
            commands::history,
            commands::get_settings,
            commands::save_settings,
            commands::export_bundle,
            commands::open_bundle,
            commands::support_launches,
            commands::support_stats,
            commands::import_profile,
            commands::pinned_gateways,
            commands::pin_gateway,
            commands::unpin_gateway,
            commands::sso_sign_in,
            commands::tray_menu_items,
        ])
        .setup({
            let service = service.clone();
            move |app| {
                tray::install(app.handle(), service, tray_model)?;
                Ok(())
            }
        })
        // Closing the window keeps the app (and its sessions) running in the tray.
        .on_window_event(|window, event| {
            if let WindowEvent::CloseRequested { api, .. } = event {
                let _ = window.hide();
                api.prevent_close();
            }
        })
        .build(tauri::generate_context!())
        .expect("the Tauri application builds");

    app.run(move |_app, event| {
        if let tauri::RunEvent::Exit = event {
            tauri::async_runtime::block_on(service.close_all());
        }
    });
}
