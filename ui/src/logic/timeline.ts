// Timeline layout: where each checkpoint's bar sits on a shared time axis, which steps are
// retries or the catch-up wait (and why), per-phase medians over earlier launches and the
// "much slower than usual" hints. Pure: no DOM, no Tauri.
// Checkpoint names come from the Rust side (generated), never spelled here.
import { ATTEMPT_PREFIX, PHASES, type Checkpoint, type LaunchError, type LaunchRecord } from '../types';

export { ATTEMPT_PREFIX };
export const READY = PHASES.READY;
export const FAILED = PHASES.FAILED;
export const LAUNCH_CACHE_HIT = PHASES.LAUNCH_CACHE_HIT;
export const CATCHUP_START = PHASES.GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_START;
export const CATCHUP_DONE = PHASES.GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_DONE;

export type BarKind = 'step' | 'retry' | 'catchup' | 'ready' | 'failed';
export type Outcome = 'running' | 'ok' | 'failed';

export interface SlowHint {
  medianMs: number;
  /** How many earlier steps of this phase the median is over. */
  samples: number;
  /** step / median (Infinity for a zero median). */
  ratio: number;
}

export interface Bar {
  phase: string;
  /** The previous checkpoint's total (0 for the first): where the bar begins, in ms. */
  fromMs: number;
  /** This checkpoint's total: where the bar ends, in ms. */
  toMs: number;
  stepMs: number;
  totalMs: number;
  /** Offset and width as fractions of the axis, each in [0, 1]. */
  start: number;
  width: number;
  kind: BarKind;
  attempt?: number;
  /** Why a retry or the catch-up wait happened, or what failed. */
  reason?: string;
  detail?: string;
  slow?: SlowHint;
}

export interface RetrySummary {
  /** Offer attempts beyond the first. */
  retries: number;
  /** Catch-up waits begun (one more than `retries` while the last wait is still running). */
  catchups: number;
  /** Time spent in the catch-up wait(s), ms. */
  waitMs: number;
  reasons: string[];
}

export interface TimelineLayout {
  bars: Bar[];
  totalMs: number;
  axisMs: number;
  outcome: Outcome;
  failure: LaunchError | null;
  retries: RetrySummary;
}

export interface HintOptions {
  /** A step is slow when it is more than `factor` × the median ... */
  factor: number;
  /** ... and more than `minExtraMs` above it. */
  minExtraMs: number;
  /** Medians over fewer earlier steps than this give no hint. */
  minSamples: number;
}

export const DEFAULT_HINT_OPTIONS: HintOptions = { factor: 2, minExtraMs: 50, minSamples: 1 };

export interface MedianStat {
  median: number;
  samples: number;
}
export type PhaseMedians = Map<string, MedianStat>;

/** The N of `gateway_offer_http_attempt_N`, else null. */
export function attemptOf(phase: string): number | null {
  if (!phase.startsWith(ATTEMPT_PREFIX)) return null;
  const rest = phase.slice(ATTEMPT_PREFIX.length);
  if (!/^\d+$/.test(rest)) return null;
  return Number(rest);
}

/** A retry is an offer attempt after the first. */
export function isRetry(phase: string): boolean {
  const n = attemptOf(phase);
  return n !== null && n >= 2;
}

export function isCatchup(phase: string): boolean {
  return phase === CATCHUP_START || phase === CATCHUP_DONE;
}

/** Checkpoints in time order (by total_ms); ties keep their arrival order. */
export function orderCheckpoints(cps: readonly Checkpoint[]): Checkpoint[] {
  return cps
    .map((cp, i) => ({ cp, i }))
    .sort((a, b) => a.cp.total_ms - b.cp.total_ms || a.i - b.i)
    .map((x) => x.cp);
}

/** Adds a live checkpoint, ignoring an exact repeat, keeping time order. */
export function addCheckpoint(cps: readonly Checkpoint[], cp: Checkpoint): Checkpoint[] {
  const dup = cps.some(
    (c) => c.phase === cp.phase && c.total_ms === cp.total_ms && c.at_unix_ms === cp.at_unix_ms,
  );
  return dup ? cps.slice() : orderCheckpoints([...cps, cp]);
}

/** A failed checkpoint's error: its code and message, as the Rust side sent them. */
export function failureOf(cp: Checkpoint): LaunchError {
  return cp.error ?? { code: 'unrecognized', message: cp.detail ?? '' };
}

export function outcomeOf(cps: readonly Checkpoint[]): Outcome {
  if (cps.some((c) => c.phase === FAILED)) return 'failed';
  if (cps.some((c) => c.phase === READY)) return 'ok';
  return 'running';
}

export function median(values: readonly number[]): number | null {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/**
 * The median step of each phase over the given launches (one resource's history, say),
 * leaving out `excludeLaunchId` (the launch being judged) and `failed` (it is no phase's work).
 */
export function phaseMedians(
  launches: readonly { launch_id: string; checkpoints: readonly Checkpoint[] }[],
  excludeLaunchId?: string,
): PhaseMedians {
  const steps = new Map<string, number[]>();
  for (const launch of launches) {
    if (excludeLaunchId !== undefined && launch.launch_id === excludeLaunchId) continue;
    for (const cp of launch.checkpoints) {
      if (cp.phase === FAILED) continue;
      const list = steps.get(cp.phase);
      if (list) list.push(cp.step_ms);
      else steps.set(cp.phase, [cp.step_ms]);
    }
  }
  const out: PhaseMedians = new Map();
  for (const [phase, list] of steps) {
    const m = median(list);
    if (m !== null) out.set(phase, { median: m, samples: list.length });
  }
  return out;
}

/** A hint when `stepMs` is much slower than the phase's median (see HintOptions), else null. */
export function slowHint(
  stepMs: number,
  stat: MedianStat | undefined,
  options: HintOptions = DEFAULT_HINT_OPTIONS,
): SlowHint | null {
  if (!stat || stat.samples < options.minSamples) return null;
  if (stepMs > options.factor * stat.median && stepMs - stat.median > options.minExtraMs) {
    return {
      medianMs: stat.median,
      samples: stat.samples,
      ratio: stat.median > 0 ? stepMs / stat.median : Infinity,
    };
  }
  return null;
}

export function summarizeRetries(cps: readonly Checkpoint[]): RetrySummary {
  let maxAttempt = 0;
  let starts = 0;
  let waitMs = 0;
  const reasons: string[] = [];
  for (const cp of cps) {
    const n = attemptOf(cp.phase);
    if (n !== null) maxAttempt = Math.max(maxAttempt, n);
    if (cp.phase === CATCHUP_START) {
      starts += 1;
      if (cp.detail) reasons.push(cp.detail);
    }
    if (cp.phase === CATCHUP_DONE) waitMs += cp.step_ms;
  }
  return { retries: Math.max(maxAttempt - 1, 0), catchups: starts, waitMs, reasons };
}

export interface LayoutOptions {
  /** Draw on an axis at least this long (to share it with other launches). */
  axisMs?: number;
  /** Per-phase medians of earlier launches, for slow-phase hints. */
  medians?: PhaseMedians;
  hint?: HintOptions;
}

/** Lays out one launch's checkpoints: one bar per checkpoint, from the previous total to its own. */
export function layoutTimeline(checkpoints: readonly Checkpoint[], options: LayoutOptions = {}): TimelineLayout {
  const cps = orderCheckpoints(checkpoints);
  const totalMs = cps.reduce((m, c) => Math.max(m, c.total_ms), 0);
  const axisMs = Math.max(totalMs, options.axisMs ?? 0);
  const frac = (ms: number) => (axisMs > 0 ? clamp01(ms / axisMs) : 0);

  const bars: Bar[] = [];
  let prevTotal = 0;
  // The reason of the catch-up wait in progress, per attempt it follows (and the latest).
  const catchupReason = new Map<number, string>();
  let lastReason: string | undefined;

  for (const cp of cps) {
    const fromMs = Math.min(prevTotal, cp.total_ms);
    const toMs = cp.total_ms;
    const bar: Bar = {
      phase: cp.phase,
      fromMs,
      toMs,
      stepMs: cp.step_ms,
      totalMs: cp.total_ms,
      start: frac(fromMs),
      width: Math.max(0, frac(toMs) - frac(fromMs)),
      kind: 'step',
    };
    if (cp.attempt !== undefined) bar.attempt = cp.attempt;
    if (cp.detail !== undefined) bar.detail = cp.detail;

    const attempt = attemptOf(cp.phase);
    if (cp.phase === FAILED) {
      bar.kind = 'failed';
      const failure = failureOf(cp);
      bar.reason = failure.message === '' ? failure.code : `${failure.code}: ${failure.message}`;
    } else if (cp.phase === READY) {
      bar.kind = 'ready';
    } else if (cp.phase === CATCHUP_START) {
      bar.kind = 'catchup';
      if (cp.detail) {
        bar.reason = cp.detail;
        lastReason = cp.detail;
        if (cp.attempt !== undefined) catchupReason.set(cp.attempt, cp.detail);
      }
    } else if (cp.phase === CATCHUP_DONE) {
      bar.kind = 'catchup';
      const reason = (cp.attempt !== undefined ? catchupReason.get(cp.attempt) : undefined) ?? lastReason;
      if (reason) bar.reason = reason;
    } else if (attempt !== null && attempt >= 2) {
      bar.kind = 'retry';
      const reason = catchupReason.get(attempt - 1) ?? lastReason ?? cp.detail;
      if (reason) bar.reason = reason;
    }

    if (cp.phase !== FAILED && options.medians) {
      const hint = slowHint(cp.step_ms, options.medians.get(cp.phase), options.hint);
      if (hint) bar.slow = hint;
    }
    bars.push(bar);
    prevTotal = Math.max(prevTotal, cp.total_ms);
  }

  const outcome = outcomeOf(cps);
  const failedCp = cps.find((c) => c.phase === FAILED);
  return {
    bars,
    totalMs,
    axisMs,
    outcome,
    failure: failedCp ? failureOf(failedCp) : null,
    retries: summarizeRetries(cps),
  };
}

/** The resource's earlier launches from history (newest first), without `excludeLaunchId`. */
export function earlierLaunches(
  history: readonly LaunchRecord[],
  resource: string,
  excludeLaunchId: string | undefined,
  limit = 8,
): LaunchRecord[] {
  return history
    .filter((r) => r.resource === resource && r.launch_id !== excludeLaunchId)
    .slice()
    .sort((a, b) => b.started_unix_ms - a.started_unix_ms)
    .slice(0, limit);
}

/** One axis long enough for every launch given (by total_ms), never 0. */
export function sharedAxisMs(totals: readonly number[]): number {
  const max = totals.reduce((m, t) => (Number.isFinite(t) ? Math.max(m, t) : m), 0);
  return max > 0 ? max : 1;
}

function clamp01(x: number): number {
  return x < 0 ? 0 : x > 1 ? 1 : x;
}

/**
 * Round tick positions (ms) for an axis of `axisMs`: steps of 1, 2 or 5 × 10^k, about
 * `target` of them, from 0 up to at most the axis end.
 */
export function axisTicks(axisMs: number, target = 5): number[] {
  if (!(axisMs > 0) || !Number.isFinite(axisMs)) return [0];
  const raw = axisMs / Math.max(1, target);
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw) ?? 10 * pow;
  const ticks: number[] = [];
  for (let t = 0; t <= axisMs + step * 1e-9; t += step) ticks.push(Math.round(t * 1e6) / 1e6);
  return ticks;
}
