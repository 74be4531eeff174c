// The Support panel's logic: filters to the router's query, a reported launch as checkpoints
// for the Timeline, and the per-gateway chart of phase medians against the fleet's. Pure: no
// DOM, no Tauri.
import type { Checkpoint, LaunchQuery, LaunchStats, LaunchSummary, Outcome, PhaseStats } from '../types';

export type TimeWindow = 'all' | '1h' | '24h' | '7d';
export const TIME_WINDOWS: readonly { value: TimeWindow; label: string }[] = [
  { value: '1h', label: 'last hour' },
  { value: '24h', label: 'last 24 hours' },
  { value: '7d', label: 'last 7 days' },
  { value: 'all', label: 'all kept' },
];

const WINDOW_MS: Record<Exclude<TimeWindow, 'all'>, number> = {
  '1h': 3_600_000,
  '24h': 86_400_000,
  '7d': 7 * 86_400_000,
};

export interface SupportFilter {
  user: string;
  resource: string;
  gateway: string;
  outcome: '' | Outcome;
  window: TimeWindow;
}

export const EMPTY_FILTER: SupportFilter = { user: '', resource: '', gateway: '', outcome: '', window: '24h' };

/** The router's query for a filter at `nowMs`: blank fields match everything. */
export function toQuery(filter: SupportFilter, nowMs: number): LaunchQuery {
  const text = (s: string) => (s.trim() === '' ? null : s.trim());
  return {
    user: text(filter.user),
    resource: text(filter.resource),
    gateway: text(filter.gateway),
    outcome: filter.outcome === '' ? null : filter.outcome,
    since: filter.window === 'all' ? null : Math.max(0, nowMs - WINDOW_MS[filter.window]),
  };
}

/** The key a reported launch is known by (launch ids are each user's own). */
export function reportKey(l: Pick<LaunchSummary, 'user' | 'launch_id'>): string {
  return `${l.user}/${l.launch_id}`;
}

/** A reported launch's checkpoints as the Timeline draws them (reports carry no details). */
export function reportCheckpoints(l: LaunchSummary): Checkpoint[] {
  return l.checkpoints.map((c) => ({
    launch_id: l.launch_id,
    resource: l.resource,
    phase: c.phase,
    step_ms: c.step_ms,
    total_ms: c.total_ms,
    ...(c.attempt != null ? { attempt: c.attempt } : {}),
    ...(c.phase === 'failed' && l.code ? { error: { code: l.code, message: '' } } : {}),
    at_unix_ms: l.started_unix_ms + c.total_ms,
  }));
}

/** The distinct non-empty values of one field across launches, sorted (filter suggestions). */
export function distinct(launches: readonly LaunchSummary[], field: 'user' | 'resource' | 'gateway'): string[] {
  const set = new Set<string>();
  for (const l of launches) {
    const v = l[field];
    if (v) set.add(v);
  }
  return [...set].sort();
}

/**
 * Slow beside the fleet: a median more than twice the fleet's and over 50 ms above it (the
 * CLI's `support stats` marks the same).
 */
export function slowerThanFleet(p50: number, fleetP50: number): boolean {
  return p50 > 2 * fleetP50 && p50 - fleetP50 > 50;
}

export interface Segment {
  phase: string;
  p50: number;
  fleetP50: number;
  /** Offset and width as fractions of the chart's axis. */
  start: number;
  width: number;
  slow: boolean;
  /** p50 / fleet p50 (Infinity for a zero fleet median). */
  ratio: number;
}

export interface ChartRow {
  /** The gateway or resource; null for the fleet. */
  group: string | null;
  /** Launches in the group. */
  launches: number;
  /** Sum of the phase medians: where a typical launch's time goes. */
  sumMs: number;
  segments: Segment[];
  slow: Segment[];
}

export interface StatsChart {
  phases: string[];
  axisMs: number;
  rows: ChartRow[];
}

/**
 * One row for the fleet and one per group, each a stack of phase medians in pipeline order,
 * on one axis; the segments slower than the fleet's median of their phase are marked.
 */
export function statsChart(stats: LaunchStats): StatsChart {
  const phases: string[] = [];
  const fleet = new Map<string, number>();
  for (const p of stats.phases) {
    if (!fleet.has(p.phase)) {
      fleet.set(p.phase, p.fleet_p50);
      phases.push(p.phase);
    }
  }
  const groups = new Map<string | null, PhaseStats[]>();
  if (stats.group_by === 'phase') {
    groups.set(null, stats.phases);
  } else {
    groups.set(
      null,
      phases.map((phase) => ({ phase, count: 0, p50: fleet.get(phase)!, p90: 0, p99: 0, fleet_p50: fleet.get(phase)! })),
    );
    for (const p of stats.phases) {
      const key = p.group ?? '';
      const list = groups.get(key);
      if (list) list.push(p);
      else groups.set(key, [p]);
    }
  }
  const launches = new Map<string | null, number>();
  for (const t of stats.totals) launches.set(t.group ?? null, t.count);

  const sums = [...groups.values()].map((list) => list.reduce((s, p) => s + p.p50, 0));
  const axisMs = Math.max(1, ...sums);
  const rows: ChartRow[] = [];
  for (const [group, list] of groups) {
    const byPhase = new Map(list.map((p) => [p.phase, p]));
    let at = 0;
    const segments: Segment[] = [];
    for (const phase of phases) {
      const p = byPhase.get(phase);
      if (!p) continue;
      const fleetP50 = fleet.get(phase) ?? p.fleet_p50;
      segments.push({
        phase,
        p50: p.p50,
        fleetP50,
        start: at / axisMs,
        width: p.p50 / axisMs,
        slow: group !== null && slowerThanFleet(p.p50, fleetP50),
        ratio: fleetP50 > 0 ? p.p50 / fleetP50 : Infinity,
      });
      at += p.p50;
    }
    rows.push({ group, launches: launches.get(group) ?? 0, sumMs: at, segments, slow: segments.filter((s) => s.slow) });
  }
  return { phases, axisMs, rows };
}
