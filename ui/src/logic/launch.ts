// What the Connect button sends. Pure: no DOM, no Tauri.
import type { ClientChoice, SessionInfo } from '../types';

/**
 * The `client` argument of `launch` for the chosen entry of a resource's clientChoices:
 * the first entry is the protocol default (null), a null template is "no client" ("none"),
 * anything else is its template.
 */
export function clientArgument(choices: readonly ClientChoice[], index: number): string | null {
  if (index <= 0 || index >= choices.length) return null;
  const choice = choices[index];
  if (!choice) return null;
  return choice.template === null ? 'none' : choice.template;
}

/** The sessions worth a row: not yet closed, oldest first so rows keep their place. */
export function visibleSessions(sessions: readonly SessionInfo[]): SessionInfo[] {
  return sessions
    .filter((s) => s.state !== 'closed')
    .slice()
    .sort((a, b) => a.started_unix_ms - b.started_unix_ms || a.launch_id.localeCompare(b.launch_id));
}

/** Launch records newest first (history() promises that order; this keeps it if it slips). */
export function newestFirst<T extends { started_unix_ms: number }>(records: readonly T[]): T[] {
  return records
    .map((r, i) => ({ r, i }))
    .sort((a, b) => b.r.started_unix_ms - a.r.started_unix_ms || a.i - b.i)
    .map((x) => x.r);
}
