// The app's state and a tiny publish/subscribe: panels subscribe to the topics they draw.
// No DOM, no Tauri.
import { EMPTY_FILTER, type SupportFilter } from './logic/support';
import type { AppState, BundleView, Checkpoint, CommandError, LaunchRecord, LaunchStats, LaunchSummary, PinnedGateway, ResourceView, SessionInfo, Settings } from './types';

export type PanelName = 'resources' | 'timeline' | 'sessions' | 'history' | 'support' | 'settings';
export const PANELS: readonly PanelName[] = ['resources', 'timeline', 'sessions', 'history', 'support', 'settings'];

export type Topic = 'app' | 'nav' | 'banner' | 'resources' | 'timeline' | 'sessions' | 'history' | 'support' | 'settings';

/** A launch started from this window, drawn live as its checkpoints arrive. */
export interface LiveLaunch {
  key: number;
  resource: string;
  launchId: string | null;
  checkpoints: Checkpoint[];
  status: 'running' | 'ok' | 'failed';
  error: CommandError | null;
  session: SessionInfo | null;
  startedAt: number;
}

/**
 * What the Timeline panel shows: a live launch of this window, a past one from history, the
 * launch of an opened bundle, or a launch reported to the router (Support).
 */
export type TimelineSubject =
  | { kind: 'live'; key: number }
  | { kind: 'record'; launchId: string }
  | { kind: 'imported' }
  | { kind: 'report'; key: string }
  | null;

/** An opened diagnostic bundle and the file it came from. */
export interface Imported {
  bundle: BundleView;
  fileName: string;
}

/** The Support panel: the router's launch reports, filtered, and their statistics. */
export interface SupportState {
  filter: SupportFilter;
  groupBy: 'gateway' | 'resource';
  launches: LaunchSummary[];
  stats: LaunchStats | null;
  loaded: boolean;
  loading: boolean;
}

export interface State {
  tauri: boolean;
  app: AppState | null;
  panel: PanelName;
  error: CommandError | null;

  resources: ResourceView[];
  resourcesLoaded: boolean;
  query: string;
  /** The chosen "connect with" entry per resource (index into clientChoices). */
  clientIndex: Map<string, number>;

  launches: Map<number, LiveLaunch>;
  timeline: TimelineSubject;

  sessions: SessionInfo[];
  sessionsUpdatedAt: number | null;
  /** Close clicked, not yet confirmed by a push. */
  closing: Set<string>;

  history: LaunchRecord[];
  historyLoaded: boolean;
  exported: Map<string, string>;

  settings: Settings | null;
  imported: Imported | null;
  support: SupportState;
  /** The pinned gateways with their fingerprints (Settings). */
  pins: PinnedGateway[];
}

export const state: State = {
  tauri: false,
  app: null,
  panel: 'resources',
  error: null,
  resources: [],
  resourcesLoaded: false,
  query: '',
  clientIndex: new Map(),
  launches: new Map(),
  timeline: null,
  sessions: [],
  sessionsUpdatedAt: null,
  closing: new Set(),
  history: [],
  historyLoaded: false,
  exported: new Map(),
  settings: null,
  imported: null,
  support: { filter: { ...EMPTY_FILTER }, groupBy: 'gateway', launches: [], stats: null, loaded: false, loading: false },
  pins: [],
};

type Listener = () => void;
const listeners = new Map<Topic, Set<Listener>>();

export function subscribe(topic: Topic, fn: Listener): void {
  let set = listeners.get(topic);
  if (!set) listeners.set(topic, (set = new Set()));
  set.add(fn);
}

export function emit(...topics: Topic[]): void {
  for (const t of new Set(topics)) {
    for (const fn of listeners.get(t) ?? []) fn();
  }
}

/** The live launch currently shown, if the Timeline shows one. */
export function shownLiveLaunch(): LiveLaunch | null {
  const t = state.timeline;
  return t && t.kind === 'live' ? state.launches.get(t.key) ?? null : null;
}

/** Whether a launch of `resource` from this window is still running. */
export function isLaunching(resource: string): boolean {
  for (const l of state.launches.values()) if (l.resource === resource && l.status === 'running') return true;
  return false;
}
