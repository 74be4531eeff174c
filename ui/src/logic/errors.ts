// Command errors into one shape. Pure: no DOM, no Tauri.
import { CODES, type Code, type CommandError } from '../types';

/** A code of the registry; anything else (a newer backend's) is `unrecognized`. */
export function toCode(value: unknown): Code {
  return CODES.find((c) => c === value) ?? 'unrecognized';
}

/**
 * Sallyport's commands reject with `{ code, message, hint }`; Tauri itself rejects with a plain
 * string (an unknown command, arguments that do not deserialize); JS code throws Errors.
 */
export function toCommandError(e: unknown): CommandError {
  if (isRecord(e)) {
    if (typeof e.code === 'string' || typeof e.message === 'string') {
      return {
        code: toCode(e.code),
        message: typeof e.message === 'string' ? e.message : String(e.message ?? ''),
        hint: typeof e.hint === 'string' ? e.hint : '',
      };
    }
  }
  if (typeof e === 'string') {
    const trimmed = e.trim();
    if (trimmed.startsWith('{')) {
      try {
        const parsed: unknown = JSON.parse(trimmed);
        if (isRecord(parsed)) return toCommandError(parsed);
      } catch {
        // not JSON: fall through to a plain message
      }
    }
    return { code: 'ipc_error', message: e, hint: '' };
  }
  if (e instanceof Error) return { code: 'unrecognized', message: e.message, hint: '' };
  return { code: 'unrecognized', message: String(e), hint: '' };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}
