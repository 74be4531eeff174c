// Every call into the Rust side lives here. Each function rejects with a CommandError
// ({ code, message, hint }), whatever shape the rejection had on the wire.
import { Channel, invoke } from '@tauri-apps/api/core';
import { toCommandError } from './logic/errors';
import { HINTS } from './types';
import type {
  AppState,
  BundleView,
  GroupBy,
  LaunchList,
  LaunchQuery,
  LaunchStats,
  Checkpoint,
  CommandError,
  ImportView,
  LaunchRecord,
  PinnedGateway,
  Profile,
  ResourceView,
  SessionInfo,
  Settings,
} from './types';

declare global {
  interface Window {
    __TAURI_INTERNALS__?: unknown;
  }
}

/** True inside the Tauri webview (or under the dev mock); false in a plain browser. */
export function inTauri(): boolean {
  return typeof window !== 'undefined' && window.__TAURI_INTERNALS__ != null;
}

export const NOT_IN_APP: CommandError = {
  code: 'not_in_app',
  message: 'not running inside the Sallyport app',
  hint: HINTS.not_in_app,
};

// Command arguments are snake_case, as everything on the IPC line (the commands say so).

async function call<T>(command: string, args?: Record<string, unknown>): Promise<T> {
  // Outside Tauri there is no IPC at all, and `new Channel()` would throw: fail cleanly.
  if (!inTauri()) throw NOT_IN_APP;
  try {
    return await invoke<T>(command, args);
  } catch (e) {
    throw toCommandError(e);
  }
}

export function appState(): Promise<AppState> {
  return call('app_state');
}

export function listResources(): Promise<ResourceView[]> {
  return call('list_resources');
}

export function setStickyPort(resource: string, port: number | null): Promise<void> {
  return call('set_sticky_port', { resource, port });
}

/**
 * Launches `resource`. `client` is a template, "none" for no client, or null for the protocol
 * default. Each checkpoint reaches `onCheckpoint` live, before the returned promise settles.
 */
export function launch(
  resource: string,
  port: number | null,
  client: string | null,
  onCheckpoint: (cp: Checkpoint) => void,
): Promise<SessionInfo> {
  if (!inTauri()) return Promise.reject(NOT_IN_APP);
  const channel = new Channel<Checkpoint>(onCheckpoint);
  return call('launch', { resource, port, client, on_checkpoint: channel });
}

/** Subscribes to the full session list, pushed every second and on every change. */
export function watchSessions(onUpdate: (sessions: SessionInfo[]) => void): Promise<void> {
  if (!inTauri()) return Promise.reject(NOT_IN_APP);
  const channel = new Channel<SessionInfo[]>(onUpdate);
  return call('watch_sessions', { on_update: channel });
}

export function closeSession(launchId: string): Promise<void> {
  return call('close_session', { launch_id: launchId });
}

/** Past launches, newest first. */
export function history(): Promise<LaunchRecord[]> {
  return call('history');
}

export function getSettings(): Promise<Settings> {
  return call('get_settings');
}

/** `token` null keeps the stored token. */
export function saveSettings(routerUrl: string, profile: Profile, token: string | null): Promise<void> {
  return call('save_settings', { router_url: routerUrl, profile, token });
}

/** Writes a support bundle for the launch; resolves to the path written. */
export function exportBundle(launchId: string): Promise<string> {
  return call('export_bundle', { launch_id: launchId });
}

/** Reads and checks a diagnostic bundle's text (the service refuses a damaged or foreign one). */
export function openBundle(contents: string): Promise<BundleView> {
  return call('open_bundle', { contents });
}

/** Every user's launches at the router, newest first (support role). */
export function supportLaunches(query: LaunchQuery, limit: number | null): Promise<LaunchList> {
  return call('support_launches', { query, limit });
}

/** Per-phase percentiles at the router (support role). */
export function supportStats(query: LaunchQuery, groupBy: GroupBy): Promise<LaunchStats> {
  return call('support_stats', { query, group_by: groupBy });
}

/** Imports a distributed profile: the text of the file the user picked, and its name. */
export function importProfile(text: string, name: string): Promise<ImportView> {
  return call('import_profile', { text, name });
}

/** The pinned gateways with their key fingerprints. */
export function pinnedGateways(): Promise<PinnedGateway[]> {
  return call('pinned_gateways');
}

export function pinGateway(gateway: string, key: string): Promise<PinnedGateway[]> {
  return call('pin_gateway', { gateway, key });
}

export function unpinGateway(gateway: string): Promise<PinnedGateway[]> {
  return call('unpin_gateway', { gateway });
}

/** Signs in with the profile's OpenID provider in the system browser; resolves once done. */
export function ssoSignIn(): Promise<void> {
  return call('sso_sign_in');
}
