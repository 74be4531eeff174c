// Human formatting of bytes, durations and uptimes. Pure: no DOM, no Tauri.

const BYTE_UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const;

/** 0 → "0 B", 1536 → "1.5 KiB", 10485760 → "10 MiB" (binary units, 3 significant digits at most). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '–';
  if (n < 1023.5) return `${Math.round(n)} B`;
  let value = n;
  let unit = 'B';
  // Move up while the value would print as 1024 or more, so 1023.9 KiB reads "1 MiB".
  for (const u of BYTE_UNITS) {
    if (value < 1023.5) break;
    value /= 1024;
    unit = u;
  }
  const text = value < 9.95 ? trimZero(value.toFixed(1)) : String(Math.round(value));
  return `${text} ${unit}`;
}

function trimZero(s: string): string {
  return s.endsWith('.0') ? s.slice(0, -2) : s;
}

/** A duration in milliseconds: "0.4 ms", "412 ms", "1.24 s", "12.3 s", "2 min 03 s". */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '–';
  if (ms < 10) return `${trimZero(ms.toFixed(1))} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10_000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const totalSec = Math.round(ms / 1000);
  const min = Math.floor(totalSec / 60);
  const sec = totalSec % 60;
  return `${min} min ${pad2(sec)} s`;
}

/** A step between checkpoints: "+412 ms". */
export function formatStep(ms: number): string {
  return `+${formatMs(ms)}`;
}

/** Whole milliseconds, no unit conversion, parseable by parseFloat: "1234 ms". */
export function formatTotalMs(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '–';
  return `${Math.round(ms)} ms`;
}

/** A running session's age as a clock: "0:07", "3:07", "2:03:07", "1d 2:03:07". */
export function formatUptime(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) ms = 0;
  const total = Math.floor(ms / 1000);
  const days = Math.floor(total / 86_400);
  const hours = Math.floor((total % 86_400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  if (days > 0) return `${days}d ${hours}:${pad2(minutes)}:${pad2(seconds)}`;
  if (hours > 0) return `${hours}:${pad2(minutes)}:${pad2(seconds)}`;
  return `${minutes}:${pad2(seconds)}`;
}

/** How long ago, coarse: "just now", "42 s ago", "5 min ago", "3 h ago", "2 d ago". */
export function formatAgo(nowMs: number, thenMs: number): string {
  const diff = nowMs - thenMs;
  if (!Number.isFinite(diff)) return '–';
  if (diff < 5_000) return 'just now';
  if (diff < 60_000) return `${Math.floor(diff / 1000)} s ago`;
  if (diff < 3_600_000) return `${Math.floor(diff / 60_000)} min ago`;
  if (diff < 86_400_000) return `${Math.floor(diff / 3_600_000)} h ago`;
  return `${Math.floor(diff / 86_400_000)} d ago`;
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/**
 * A typed local port: "" → null (use the remembered or a free one), "15432" → 15432,
 * anything else (not an integer in 1..65535) → "invalid".
 */
export function parsePort(text: string): number | null | 'invalid' {
  const t = text.trim();
  if (t === '') return null;
  if (!/^\d+$/.test(t)) return 'invalid';
  const n = Number(t);
  return n >= 1 && n <= 65535 ? n : 'invalid';
}
