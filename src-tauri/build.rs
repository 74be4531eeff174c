fn main() {
    // Every command the UI may call gets an `allow-<name>` permission; the capability in
    // capabilities/default.json grants exactly these, nothing else.
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(
        tauri_build::AppManifest::new().commands(&[
            "app_state",
            "list_resources",
            "set_sticky_port",
            "launch",
            "watch_sessions",
            "close_session",
            "history",
            "get_settings",
            "save_settings",
            "export_bundle",
            "open_bundle",
            "support_launches",
            "support_stats",
            "import_profile",
            "pinned_gateways",
            "pin_gateway",
            "unpin_gateway",
            "sso_sign_in",
            "tray_menu_items",
        ]),
    ))
    .expect("tauri build step");
}
