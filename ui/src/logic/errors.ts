// Command errors into one shape. Pure: no DOM, no Tauri.
import { CODES, type Code, type CommandError, type PinnedGateway } from '../types';

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
      const error: CommandError = {
        code: toCode(e.code),
        message: typeof e.message === 'string' ? e.message : String(e.message ?? ''),
        hint: typeof e.hint === 'string' ? e.hint : '',
      };
      const unpinned = toPinned(e.unpinned);
      if (unpinned) error.unpinned = unpinned;
      return error;
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

/** The key an `unpinned_gateway` error offers for the user to accept, when well formed. */
export function toPinned(v: unknown): PinnedGateway | null {
  if (!isRecord(v)) return null;
  const { gateway, key, fingerprint } = v;
  if (typeof gateway !== 'string' || typeof key !== 'string' || typeof fingerprint !== 'string') return null;
  if (!fingerprint.startsWith('SHA256:')) return null;
  return { gateway, key, fingerprint };
}

/** What the dialog asks before pinning a gateway's key, as SSH asks on a first connection. */
export function pinQuestion(p: PinnedGateway): string {
  return (
    `The gateway "${p.gateway}" is not pinned yet.\n\n` +
    `The router lists its key with fingerprint\n${p.fingerprint}\n\n` +
    'Compare it with the fingerprint your administrator gave you. Pin this key and launch?'
  );
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}
