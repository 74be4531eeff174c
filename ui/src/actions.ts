// What the panels ask for: each action calls the API, updates the state and says which topics
// changed. Command errors go to the banner.
import * as api from './api';
import { pinQuestion, toCommandError } from './logic/errors';
import { ask } from './ui/confirm';
import { parsePort } from './logic/format';
import { clientArgument, newestFirst } from './logic/launch';
import { toQuery } from './logic/support';
import { addCheckpoint, outcomeOf } from './logic/timeline';
import { emit, state, type LiveLaunch, type PanelName } from './store';
import { HINTS, type CommandError, type ImportView, type Profile } from './types';

export function showError(e: unknown): void {
  state.error = toCommandError(e);
  emit('banner');
}

export function dismissError(): void {
  state.error = null;
  emit('banner');
}

export function go(panel: PanelName): void {
  if (state.panel === panel) return;
  state.panel = panel;
  emit('nav');
  if (panel === 'history' || panel === 'timeline') void refreshHistory();
  if (panel === 'resources') void refreshResources();
  if (panel === 'settings') void loadSettings();
  if (panel === 'support') void refreshSupport();
}

export async function loadAppState(): Promise<void> {
  try {
    state.app = await api.appState();
    emit('app');
  } catch (e) {
    showError(e);
  }
}

let resourcesInFlight: Promise<void> | null = null;
export function refreshResources(quiet = false): Promise<void> {
  if (resourcesInFlight) return resourcesInFlight;
  resourcesInFlight = (async () => {
    try {
      state.resources = await api.listResources();
      state.resourcesLoaded = true;
      emit('resources', 'app');
    } catch (e) {
      if (!quiet) showError(e);
    } finally {
      resourcesInFlight = null;
    }
  })();
  return resourcesInFlight;
}

export async function refreshHistory(): Promise<void> {
  try {
    state.history = newestFirst(await api.history());
    state.historyLoaded = true;
    emit('history', 'timeline');
  } catch (e) {
    showError(e);
  }
}

export function setQuery(query: string): void {
  state.query = query;
  emit('resources');
}

export function chooseClient(resource: string, index: number): void {
  state.clientIndex.set(resource, index);
}

/** Saves a typed sticky port; returns false (and says why) when the text is no port. */
export async function saveStickyPort(resource: string, text: string): Promise<boolean> {
  const port = parsePort(text);
  if (port === 'invalid') {
    showError(invalidPort(text));
    return false;
  }
  try {
    await api.setStickyPort(resource, port);
    const r = state.resources.find((x) => x.name === resource);
    if (r) r.sticky_port = port;
    return true;
  } catch (e) {
    showError(e);
    return false;
  }
}

function invalidPort(text: string): CommandError {
  return {
    code: 'invalid_port',
    message: `"${text}" is not a port`,
    hint: HINTS.invalid_port,
  };
}

let nextKey = 1;

/** Launches `resource`, drawing its checkpoints live on the Timeline. */
export async function launch(resource: string, portText: string): Promise<void> {
  const r = state.resources.find((x) => x.name === resource);
  const port = parsePort(portText);
  if (port === 'invalid') {
    showError(invalidPort(portText));
    return;
  }
  const client = clientArgument(r?.client_choices ?? [], state.clientIndex.get(resource) ?? 0);
  const live: LiveLaunch = {
    key: nextKey++,
    resource,
    launchId: null,
    checkpoints: [],
    status: 'running',
    error: null,
    session: null,
    startedAt: Date.now(),
  };
  state.launches.set(live.key, live);
  state.timeline = { kind: 'live', key: live.key };
  state.panel = 'timeline';
  if (state.error?.code !== 'not_in_app') state.error = null;
  emit('nav', 'timeline', 'resources', 'banner');

  try {
    const session = await api.launch(resource, port, client, (cp) => {
      live.launchId ??= cp.launch_id;
      live.checkpoints = addCheckpoint(live.checkpoints, cp);
      emit('timeline');
    });
    live.session = session;
    live.launchId ??= session.launch_id;
    live.status = outcomeOf(live.checkpoints) === 'failed' ? 'failed' : 'ok';
    if (!state.sessions.some((s) => s.launch_id === session.launch_id)) {
      state.sessions = [...state.sessions, session];
      emit('sessions');
    }
  } catch (e) {
    live.status = 'failed';
    live.error = toCommandError(e);
    showError(live.error);
    // Like SSH's first connection: show the fingerprint, pin only if the user accepts.
    const offered = live.error.unpinned;
    if (live.error.code === 'unpinned_gateway' && offered && (await ask('Pin this gateway?', pinQuestion(offered), 'Pin and launch', 'Cancel'))) {
      if (await pinGateway(offered.gateway, offered.key)) {
        dismissError();
        void launch(resource, portText);
      }
    }
  } finally {
    emit('timeline', 'resources');
    void refreshHistory();
    void refreshResources(true);
  }
}

/** Pins a gateway's key; resolves true when pinned. */
export async function pinGateway(gateway: string, key: string): Promise<boolean> {
  try {
    state.pins = await api.pinGateway(gateway.trim(), key.trim());
    emit('settings');
    return true;
  } catch (e) {
    showError(e);
    return false;
  }
}

export async function unpinGateway(gateway: string): Promise<void> {
  try {
    state.pins = await api.unpinGateway(gateway);
    emit('settings');
  } catch (e) {
    showError(e);
  }
}

/** Imports the profile file the user picked; resolves to what it set, or null. */
export async function importProfile(file: File): Promise<ImportView | null> {
  try {
    const view = await api.importProfile(await file.text(), file.name);
    state.pins = view.gateways;
    await Promise.all([loadSettings(), loadAppState()]);
    void refreshResources(true);
    return view;
  } catch (e) {
    showError(e);
    return null;
  }
}

/** Shows a past launch (from history) on the Timeline. */
export function showRecord(launchId: string): void {
  state.timeline = { kind: 'record', launchId };
  state.panel = 'timeline';
  emit('nav', 'timeline');
}

/** Largest file offered to the service as a bundle (the service checks again). */
const MAX_BUNDLE_BYTES = 32 * 1024 * 1024;

/** Opens a diagnostic bundle (picked or dropped) and shows its launch on the Timeline. */
export async function openBundleFile(file: File): Promise<void> {
  if (file.size > MAX_BUNDLE_BYTES) {
    showError({
      code: 'bundle_damaged',
      message: `${file.name}: ${file.size} bytes is more than a bundle holds`,
      hint: HINTS.bundle_damaged,
    });
    return;
  }
  try {
    const bundle = await api.openBundle(await file.text());
    state.imported = { bundle, fileName: file.name };
    state.timeline = { kind: 'imported' };
    state.panel = 'timeline';
    if (state.error?.code === 'bundle_damaged' || state.error?.code === 'bundle_unsupported') state.error = null;
    emit('nav', 'timeline', 'banner');
  } catch (e) {
    showError(e);
  }
}

/** Loads the router's launch reports and their statistics for the Support panel's filter. */
export async function refreshSupport(): Promise<void> {
  const s = state.support;
  s.loading = true;
  emit('support');
  const query = toQuery(s.filter, Date.now());
  try {
    const [list, stats] = await Promise.all([api.supportLaunches(query, 200), api.supportStats(query, s.groupBy)]);
    s.launches = list.launches;
    s.stats = stats;
    s.loaded = true;
  } catch (e) {
    showError(e);
  } finally {
    s.loading = false;
    emit('support', 'timeline');
  }
}

/** Shows a reported launch (Support) on the Timeline. */
export function showReport(key: string): void {
  state.timeline = { kind: 'report', key };
  state.panel = 'timeline';
  emit('nav', 'timeline');
}

let watchRetry: ReturnType<typeof setTimeout> | null = null;

/** Subscribes to session pushes; on a failure says so and tries again in 5 s. */
export async function watchSessions(): Promise<void> {
  if (watchRetry) clearTimeout(watchRetry);
  watchRetry = null;
  try {
    await api.watchSessions((sessions) => {
      state.sessions = sessions;
      state.sessionsUpdatedAt = Date.now();
      for (const id of [...state.closing]) {
        const s = sessions.find((x) => x.launch_id === id);
        // Closing is shown until the session itself says closing or closed (a reconnecting
        // session is still open).
        if (!s || s.state === 'closing' || s.state === 'closed') state.closing.delete(id);
      }
      emit('sessions', 'app');
    });
  } catch (e) {
    showError(e);
    if (state.tauri) watchRetry = setTimeout(() => void watchSessions(), 5000);
  }
}

export async function closeSession(launchId: string): Promise<void> {
  state.closing.add(launchId);
  emit('sessions');
  try {
    await api.closeSession(launchId);
  } catch (e) {
    state.closing.delete(launchId);
    emit('sessions');
    showError(e);
  }
}

export async function exportBundle(launchId: string): Promise<void> {
  try {
    const path = await api.exportBundle(launchId);
    state.exported.set(launchId, path);
    emit('history');
  } catch (e) {
    showError(e);
  }
}

export async function loadSettings(): Promise<void> {
  try {
    state.settings = await api.getSettings();
    state.pins = await api.pinnedGateways();
    emit('settings');
  } catch (e) {
    showError(e);
  }
}

/** Saves the settings; `token` empty keeps the stored one. Resolves true when saved. */
export async function saveSettings(routerUrl: string, profile: Profile, token: string): Promise<boolean> {
  try {
    await api.saveSettings(routerUrl.trim(), profile, token === '' ? null : token);
  } catch (e) {
    showError(e);
    return false;
  }
  await Promise.all([loadSettings(), loadAppState()]);
  void refreshResources(true);
  return true;
}

/** Signs in through the browser (the provider's page opens there); resolves true when done. */
export async function ssoSignIn(): Promise<boolean> {
  try {
    await api.ssoSignIn();
  } catch (e) {
    showError(e);
    return false;
  }
  await Promise.all([loadSettings(), loadAppState()]);
  void refreshResources(true);
  return true;
}
