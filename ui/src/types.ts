// The shapes the Rust side sends and takes are generated from the Rust types
// (generated/ipc.ts; `SALLYPORT_WRITE_TYPES=1 cargo test -p sallyport-service` rewrites it and
// a test fails when it is stale). One naming convention across the line: snake_case.
// This file only gives the UI's own names to some of them.
export * from './generated/ipc';
import type { AppStateView, ClientOption, SettingsView } from './generated/ipc';

export type AppState = AppStateView;
export type Settings = SettingsView;
export type ClientChoice = ClientOption;
