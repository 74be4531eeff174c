import { describe, expect, it } from 'vitest';
import { HAPPY_PATH, type Checkpoint, type LaunchRecord } from '../types';
import {
  addCheckpoint,
  axisTicks,
  attemptOf,
  earlierLaunches,
  isRetry,
  layoutTimeline,
  median,
  orderCheckpoints,
  outcomeOf,
  failureOf,
  phaseMedians,
  sharedAxisMs,
  slowHint,
  summarizeRetries,
} from './timeline';

/** Checkpoints from [phase, step] pairs, totals accumulated. */
function run(launch_id: string, steps: [string, number, Partial<Checkpoint>?][], resource = 'bastion'): Checkpoint[] {
  let total = 0;
  return steps.map(([phase, step, extra]) => {
    total += step;
    return { launch_id, resource, phase, step_ms: step, total_ms: total, at_unix_ms: 1_000_000 + total, ...extra };
  });
}

// The pipeline's own happy path (generated from the Rust side, which an end-to-end test holds
// the real pipeline to), with made-up steps: 2, 3, 15, 20, 10, ... ms.
const STEPS = [2, 3, 15, 20, 10, 50, 0, 30, 20, 10, 5, 15, 1, 9, 10, 0];
const happy = run(
  'L1',
  HAPPY_PATH.map((phase, i) => [phase, STEPS[i % STEPS.length]!] as [string, number]),
);
const happyTotal = happy[happy.length - 1]!.total_ms;

const withRetry = run('L2', [
  ['resource_resolved', 2],
  ['create_tube_ok', 18],
  ['gateway_offer_http_attempt_1', 30, { attempt: 1 }],
  ['gateway_offer_backend_catchup_delay_start', 5, { attempt: 1, detail: 'controller_down: gateway gw-1 is not connected' }],
  ['gateway_offer_backend_catchup_delay_done', 1250, { attempt: 1 }],
  ['gateway_offer_http_attempt_2', 1, { attempt: 2 }],
  ['gateway_offer_http_done', 40, { attempt: 2 }],
  ['ready', 100],
]);

describe('attempts and retries', () => {
  it('parses the attempt number', () => {
    expect(attemptOf('gateway_offer_http_attempt_1')).toBe(1);
    expect(attemptOf('gateway_offer_http_attempt_12')).toBe(12);
    expect(attemptOf('gateway_offer_http_attempt_')).toBeNull();
    expect(attemptOf('gateway_offer_http_done')).toBeNull();
    expect(isRetry('gateway_offer_http_attempt_1')).toBe(false);
    expect(isRetry('gateway_offer_http_attempt_2')).toBe(true);
  });
  it('does not count a retry before its attempt starts', () => {
    const waiting = withRetry.slice(0, 4); // catch-up begun, attempt 2 not yet
    expect(summarizeRetries(waiting)).toMatchObject({ retries: 0, catchups: 1, waitMs: 0 });
  });
  it('summarizes retries, their wait and reasons', () => {
    expect(summarizeRetries(happy)).toEqual({ retries: 0, catchups: 0, waitMs: 0, reasons: [] });
    expect(summarizeRetries(withRetry)).toEqual({
      retries: 1,
      catchups: 1,
      waitMs: 1250,
      reasons: ['controller_down: gateway gw-1 is not connected'],
    });
  });
});

describe('layoutTimeline', () => {
  it('draws each bar from the previous total to its own, as fractions of the axis', () => {
    const t = layoutTimeline(happy);
    expect(t.totalMs).toBe(happyTotal);
    expect(t.axisMs).toBe(happyTotal);
    expect(t.bars).toHaveLength(happy.length);
    expect(t.bars.map((b) => b.phase)).toEqual(HAPPY_PATH);
    const tube = t.bars[2]!;
    expect(tube.phase).toBe('create_tube_ok');
    expect(tube.fromMs).toBe(5);
    expect(tube.toMs).toBe(20);
    expect(tube.start).toBeCloseTo(5 / happyTotal);
    expect(tube.width).toBeCloseTo(15 / happyTotal);
    expect(t.bars.filter((b) => b.kind === 'step')).toHaveLength(HAPPY_PATH.length - 1);
    // contiguous, covering the whole axis
    for (let i = 1; i < t.bars.length; i++) {
      expect(t.bars[i]!.start).toBeCloseTo(t.bars[i - 1]!.start + t.bars[i - 1]!.width);
    }
    const last = t.bars[t.bars.length - 1]!;
    expect(last.start + last.width).toBeCloseTo(1);
    expect(last.kind).toBe('ready');
    expect(t.outcome).toBe('ok');
    expect(t.failure).toBeNull();
  });

  it('shares a longer axis when asked', () => {
    const t = layoutTimeline(happy, { axisMs: 2 * happyTotal });
    expect(t.axisMs).toBe(2 * happyTotal);
    const last = t.bars[t.bars.length - 1]!;
    expect(last.start + last.width).toBeCloseTo(0.5);
  });

  it('never divides by zero', () => {
    const t = layoutTimeline(run('Z', [['resource_resolved', 0]]));
    expect(t.bars[0]!.start).toBe(0);
    expect(t.bars[0]!.width).toBe(0);
    expect(layoutTimeline([]).bars).toEqual([]);
    expect(layoutTimeline([]).outcome).toBe('running');
  });

  it('orders checkpoints that arrive out of order', () => {
    const shuffled = [happy[3]!, happy[0]!, happy[2]!, happy[1]!];
    expect(layoutTimeline(shuffled).bars.map((b) => b.phase)).toEqual(HAPPY_PATH.slice(0, 4));
  });

  it('marks the catch-up wait and the retry with the reason', () => {
    const t = layoutTimeline(withRetry);
    const byPhase = new Map(t.bars.map((b) => [b.phase, b]));
    expect(byPhase.get('gateway_offer_http_attempt_1')!.kind).toBe('step');
    const start = byPhase.get('gateway_offer_backend_catchup_delay_start')!;
    const done = byPhase.get('gateway_offer_backend_catchup_delay_done')!;
    const retry = byPhase.get('gateway_offer_http_attempt_2')!;
    expect(start.kind).toBe('catchup');
    expect(done.kind).toBe('catchup');
    expect(retry.kind).toBe('retry');
    const reason = 'controller_down: gateway gw-1 is not connected';
    expect(start.reason).toBe(reason);
    expect(done.reason).toBe(reason);
    expect(retry.reason).toBe(reason);
    expect(done.stepMs).toBe(1250);
    expect(t.retries.retries).toBe(1);
  });

  it('reports a failure with its code and message', () => {
    const failed = run('F', [
      ['resource_resolved', 2],
      ['gateway_offer_http_attempt_1', 30],
      ['failed', 5, { error: { code: 'rrc_timeout', message: 'offer to gateway gw-1 failed: no answer' } }],
    ]);
    const t = layoutTimeline(failed);
    expect(t.outcome).toBe('failed');
    expect(t.failure).toEqual({ code: 'rrc_timeout', message: 'offer to gateway gw-1 failed: no answer' });
    expect(t.bars[2]!.kind).toBe('failed');
    expect(t.bars[2]!.reason).toBe('rrc_timeout: offer to gateway gw-1 failed: no answer');
  });
});

describe('live checkpoints', () => {
  it('adds in time order and ignores an exact repeat', () => {
    let cps: Checkpoint[] = [];
    cps = addCheckpoint(cps, happy[1]!);
    cps = addCheckpoint(cps, happy[0]!);
    cps = addCheckpoint(cps, happy[1]!);
    expect(cps.map((c) => c.phase)).toEqual(['resource_resolved', 'websocket_listener_started_early']);
  });
  it('keeps arrival order for equal totals', () => {
    const a = { ...happy[0]!, phase: 'a', total_ms: 5 };
    const b = { ...happy[0]!, phase: 'b', total_ms: 5 };
    expect(orderCheckpoints([a, b]).map((c) => c.phase)).toEqual(['a', 'b']);
    expect(orderCheckpoints([b, a]).map((c) => c.phase)).toEqual(['b', 'a']);
  });
  it('knows when a launch is still running', () => {
    expect(outcomeOf(happy.slice(0, 4))).toBe('running');
    expect(outcomeOf(happy)).toBe('ok');
  });
});

describe('failureOf', () => {
  it('takes the code and message as fields', () => {
    const [cp] = run('F', [['failed', 1, { error: { code: 'port_taken', message: 'port 15432: address in use' } }]]);
    expect(failureOf(cp!)).toEqual({ code: 'port_taken', message: 'port 15432: address in use' });
  });
  it('reads a failed checkpoint without an error as unrecognized', () => {
    const [cp] = run('F', [['failed', 1]]);
    expect(failureOf(cp!)).toEqual({ code: 'unrecognized', message: '' });
  });
});

describe('medians and slow-phase hints', () => {
  it('computes medians of odd and even counts', () => {
    expect(median([])).toBeNull();
    expect(median([5])).toBe(5);
    expect(median([9, 1, 5])).toBe(5);
    expect(median([1, 2, 3, 10])).toBe(2.5);
  });

  const history = [
    { launch_id: 'h1', checkpoints: run('h1', [['create_tube_ok', 10], ['webrtc_data_plane_connected', 80], ['failed', 3]]) },
    { launch_id: 'h2', checkpoints: run('h2', [['create_tube_ok', 12], ['webrtc_data_plane_connected', 90]]) },
    { launch_id: 'h3', checkpoints: run('h3', [['create_tube_ok', 14], ['webrtc_data_plane_connected', 1000]]) },
    { launch_id: 'now', checkpoints: run('now', [['create_tube_ok', 500]]) },
  ];

  it('takes per-phase medians over earlier launches, without the current one or failed', () => {
    const m = phaseMedians(history, 'now');
    expect(m.get('create_tube_ok')).toEqual({ median: 12, samples: 3 });
    expect(m.get('webrtc_data_plane_connected')).toEqual({ median: 90, samples: 3 });
    expect(m.has('failed')).toBe(false);
    expect(phaseMedians(history).get('create_tube_ok')).toEqual({ median: 13, samples: 4 });
  });

  it('hints only when both more than 2x and more than 50 ms above the median', () => {
    const stat = { median: 12, samples: 3 };
    expect(slowHint(500, stat)).toMatchObject({ medianMs: 12, samples: 3 });
    expect(slowHint(500, stat)!.ratio).toBeCloseTo(500 / 12);
    // 3x the median but only 24 ms more: noise, no hint
    expect(slowHint(36, stat)).toBeNull();
    // 60 ms more but under 2x: no hint
    expect(slowHint(160, { median: 100, samples: 3 })).toBeNull();
    // exactly 2x is not "more than" 2x
    expect(slowHint(200, { median: 100, samples: 3 })).toBeNull();
    expect(slowHint(201, { median: 100, samples: 3 })).not.toBeNull();
    // a zero median still needs the 50 ms
    expect(slowHint(40, { median: 0, samples: 3 })).toBeNull();
    expect(slowHint(60, { median: 0, samples: 3 })!.ratio).toBe(Infinity);
    expect(slowHint(500, undefined)).toBeNull();
    expect(slowHint(500, { median: 12, samples: 1 }, { factor: 2, minExtraMs: 50, minSamples: 2 })).toBeNull();
  });

  it('annotates the slow bars of a launch', () => {
    const medians = phaseMedians(history, 'now');
    const t = layoutTimeline(run('now', [['create_tube_ok', 500], ['webrtc_data_plane_connected', 95], ['failed', 9000]]), {
      medians,
    });
    expect(t.bars[0]!.slow).toBeDefined();
    expect(t.bars[1]!.slow).toBeUndefined();
    expect(t.bars[2]!.slow).toBeUndefined(); // failed is never "slow"
  });
});

describe('earlier launches', () => {
  const rec = (launch_id: string, resource: string, started: number, total: number): LaunchRecord => ({
    launch_id,
    resource,
    profile: 'fast',
    started_unix_ms: started,
    outcome: 'ok',
    error: null,
    checkpoints: [],
    total_ms: total,
  });
  const history = [rec('a', 'bastion', 10, 300), rec('b', 'orders-db', 20, 900), rec('c', 'bastion', 30, 250), rec('d', 'bastion', 40, 200)];

  it("keeps the resource's launches, newest first, without the current one, up to a limit", () => {
    expect(earlierLaunches(history, 'bastion', 'd').map((r) => r.launch_id)).toEqual(['c', 'a']);
    expect(earlierLaunches(history, 'bastion', undefined, 2).map((r) => r.launch_id)).toEqual(['d', 'c']);
    expect(earlierLaunches(history, 'nothing', undefined)).toEqual([]);
  });
  it('shares an axis as long as the longest launch', () => {
    expect(sharedAxisMs([200, 300, 250])).toBe(300);
    expect(sharedAxisMs([])).toBe(1);
    expect(sharedAxisMs([0, Number.NaN])).toBe(1);
  });
});

describe('axisTicks', () => {
  it('picks round steps that stay on the axis', () => {
    expect(axisTicks(200)).toEqual([0, 50, 100, 150, 200]);
    expect(axisTicks(1234)).toEqual([0, 500, 1000]);
    expect(axisTicks(1000)).toEqual([0, 200, 400, 600, 800, 1000]);
    expect(axisTicks(7)).toEqual([0, 2, 4, 6]);
  });
  it('copes with an empty axis', () => {
    expect(axisTicks(0)).toEqual([0]);
    expect(axisTicks(Number.NaN)).toEqual([0]);
  });
});
