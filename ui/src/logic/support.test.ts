import { describe, expect, it } from 'vitest';
import type { LaunchStats, LaunchSummary } from '../types';
import { EMPTY_FILTER, distinct, reportCheckpoints, reportKey, slowerThanFleet, statsChart, toQuery } from './support';
import { layoutTimeline } from './timeline';

const NOW = 1_700_000_000_000;

function launch(extra: Partial<LaunchSummary> = {}): LaunchSummary {
  return {
    user: 'alice',
    launch_id: 'abcd1234',
    resource: 'orders-db',
    gateway: 'dc1',
    profile: 'fast',
    outcome: 'ok',
    code: null,
    started_unix_ms: NOW - 60_000,
    received_unix_ms: NOW - 59_000,
    total_ms: 60,
    attempts: 1,
    checkpoints: [
      { phase: 'resource_resolved', step_ms: 10, total_ms: 10 },
      { phase: 'gateway_offer_http_attempt_1', step_ms: 20, total_ms: 30, attempt: 1 },
      { phase: 'ready', step_ms: 30, total_ms: 60 },
    ],
    client_version: '0.1.0',
    ...extra,
  };
}

describe('filters', () => {
  it('blank fields match everything and the window becomes a since', () => {
    expect(toQuery({ ...EMPTY_FILTER, window: 'all' }, NOW)).toEqual({ user: null, resource: null, gateway: null, outcome: null, since: null });
    expect(toQuery({ user: ' bob ', resource: 'db', gateway: '', outcome: 'failed', window: '1h' }, NOW)).toEqual({
      user: 'bob',
      resource: 'db',
      gateway: null,
      outcome: 'failed',
      since: NOW - 3_600_000,
    });
    expect(toQuery({ ...EMPTY_FILTER, window: '7d' }, NOW).since).toBe(NOW - 7 * 86_400_000);
  });

  it('suggests each distinct value once, sorted', () => {
    const list = [launch({ user: 'zed' }), launch(), launch({ user: 'alice', gateway: null })];
    expect(distinct(list, 'user')).toEqual(['alice', 'zed']);
    expect(distinct(list, 'gateway')).toEqual(['dc1']);
  });
});

describe('a reported launch on the Timeline', () => {
  it('draws as checkpoints with its attempts, and a failure with its code', () => {
    const cps = reportCheckpoints(launch());
    expect(cps.map((c) => c.phase)).toEqual(['resource_resolved', 'gateway_offer_http_attempt_1', 'ready']);
    expect(cps[1]!.attempt).toBe(1);
    expect(layoutTimeline(cps).outcome).toBe('ok');

    const failed = launch({
      outcome: 'failed',
      code: 'controller_down',
      checkpoints: [
        { phase: 'resource_resolved', step_ms: 10, total_ms: 10 },
        { phase: 'failed', step_ms: 5, total_ms: 15 },
      ],
    });
    const layout = layoutTimeline(reportCheckpoints(failed));
    expect(layout.outcome).toBe('failed');
    expect(layout.failure?.code).toBe('controller_down');
    expect(reportKey(failed)).toBe('alice/abcd1234');
  });
});

describe('where the time goes, per gateway', () => {
  const stats: LaunchStats = {
    group_by: 'gateway',
    launches: 12,
    phases: [
      { group: 'dc1', phase: 'create_tube_ok', count: 10, p50: 20, p90: 30, p99: 40, fleet_p50: 20 },
      { group: 'dc1', phase: 'answer_received', count: 10, p50: 40, p90: 50, p99: 60, fleet_p50: 45 },
      { group: 'dc2', phase: 'create_tube_ok', count: 2, p50: 22, p90: 30, p99: 40, fleet_p50: 20 },
      { group: 'dc2', phase: 'answer_received', count: 2, p50: 400, p90: 500, p99: 600, fleet_p50: 45 },
    ],
    totals: [
      { count: 12, p50: 70, p90: 90, p99: 600 },
      { group: 'dc1', count: 10, p50: 60, p90: 80, p99: 90 },
      { group: 'dc2', count: 2, p50: 420, p90: 500, p99: 600 },
    ],
  };

  it('stacks phase medians in pipeline order on one axis, the fleet first', () => {
    const chart = statsChart(stats);
    expect(chart.phases).toEqual(['create_tube_ok', 'answer_received']);
    expect(chart.rows.map((r) => r.group)).toEqual([null, 'dc1', 'dc2']);
    expect(chart.rows.map((r) => r.launches)).toEqual([12, 10, 2]);
    expect(chart.axisMs).toBe(422);
    const dc2 = chart.rows[2]!;
    expect(dc2.segments[1]!.start).toBeCloseTo(22 / 422);
    expect(dc2.segments[1]!.width).toBeCloseTo(400 / 422);
    for (const r of chart.rows) {
      const end = r.segments[r.segments.length - 1]!;
      expect(end.start + end.width).toBeLessThanOrEqual(1 + 1e-9);
    }
  });

  it('marks the gateway and phase slower than the fleet, not the fleet itself', () => {
    const chart = statsChart(stats);
    expect(chart.rows[0]!.slow).toEqual([]);
    expect(chart.rows[1]!.slow).toEqual([]);
    expect(chart.rows[2]!.slow.map((s) => s.phase)).toEqual(['answer_received']);
    expect(chart.rows[2]!.slow[0]!.ratio).toBeCloseTo(400 / 45);
    expect(slowerThanFleet(400, 45)).toBe(true);
    expect(slowerThanFleet(30, 10)).toBe(false); // twice as slow but only 20 ms more
  });

  it('grouped by phase, it is one fleet row', () => {
    const chart = statsChart({
      group_by: 'phase',
      launches: 3,
      phases: [{ phase: 'ready', count: 3, p50: 5, p90: 6, p99: 7, fleet_p50: 5 }],
      totals: [{ count: 3, p50: 5, p90: 6, p99: 7 }],
    });
    expect(chart.rows).toHaveLength(1);
    expect(chart.rows[0]!.group).toBeNull();
  });
});
