// What the Connect button sends. Pure: no DOM, no Tauri.
import { HINTS, type ClientChoice, type SessionInfo } from '../types';

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

/** The sessions worth a row: open ones oldest first (rows keep their place), then ended ones. */
export function visibleSessions(sessions: readonly SessionInfo[]): SessionInfo[] {
  // Open sessions oldest first, then those that ended by themselves (kept, with why, until
  // dismissed), most recent end first; a session closed by the user is gone.
  const open = sessions
    .filter((s) => s.state !== 'closed')
    .sort((a, b) => a.started_unix_ms - b.started_unix_ms || a.launch_id.localeCompare(b.launch_id));
  const ended = sessions
    .filter((s) => s.state === 'closed' && s.ended !== null)
    .sort((a, b) => (b.ended?.at_unix_ms ?? 0) - (a.ended?.at_unix_ms ?? 0));
  return [...open, ...ended];
}

/** How a session that ended by itself ended, in words: the reason's hint from the registry. */
export function endedText(s: SessionInfo): string | null {
  if (s.ended === null) return null;
  return `ended: ${s.ended.code.replace(/_/g, ' ')}. ${HINTS[s.ended.code]}`;
}

/** Launch records newest first (history() promises that order; this keeps it if it slips). */
export function newestFirst<T extends { started_unix_ms: number }>(records: readonly T[]): T[] {
  return records
    .map((r, i) => ({ r, i }))
    .sort((a, b) => b.r.started_unix_ms - a.r.started_unix_ms || a.i - b.i)
    .map((x) => x.r);
}
