// The shapes the Rust side sends and takes. Mind the casing: the app's own views
// (AppState, ResourceView, Settings) are camelCase; Checkpoint, SessionInfo and LaunchRecord are
// the core's serde types passed through unchanged, so they are snake_case.

export type Profile = 'legacy' | 'tuned' | 'fast';
export const PROFILES: readonly Profile[] = ['legacy', 'tuned', 'fast'];

export interface AppState {
  routerUrl: string;
  profile: Profile;
  lab: boolean;
  tokenSet: boolean;
  version: string;
}

export interface ClientChoice {
  label: string;
  /** null means "no client". */
  template: string | null;
}

export interface ResourceView {
  name: string;
  protocol: string;
  gateway: string;
  online: boolean;
  stickyPort: number | null;
  /** The first entry is the protocol default. */
  clientChoices: ClientChoice[];
}

export interface Checkpoint {
  launch_id: string;
  resource: string;
  phase: string;
  step_ms: number;
  total_ms: number;
  attempt?: number;
  detail?: string;
  at_unix_ms: number;
}

export type SessionState = 'active' | 'closing' | 'closed';

export interface SessionInfo {
  launch_id: string;
  resource: string;
  protocol: string;
  gateway: string;
  local_port: number;
  state: SessionState;
  client: string | null;
  bytes_in: number;
  bytes_out: number;
  started_unix_ms: number;
  ready_ms: number;
}

export interface LaunchError {
  code: string;
  message: string;
}

export interface LaunchRecord {
  launch_id: string;
  resource: string;
  profile: string;
  started_unix_ms: number;
  outcome: 'ok' | 'failed';
  error: LaunchError | null;
  checkpoints: Checkpoint[];
  total_ms: number;
}

export interface Settings {
  routerUrl: string;
  profile: string;
  tokenSet: boolean;
}

/** What every command rejects with (normalised by `toCommandError`). */
export interface CommandError {
  code: string;
  message: string;
  hint: string;
}
