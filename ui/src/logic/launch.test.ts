import { describe, expect, it } from 'vitest';
import type { SessionInfo } from '../types';
import { clientArgument, endedText, newestFirst, visibleSessions } from './launch';

describe('clientArgument', () => {
  const choices = [
    { label: 'ssh (default)', template: 'ssh -p {port} 127.0.0.1' },
    { label: 'no client', template: null },
    { label: 'mosh', template: 'mosh --ssh="ssh -p {port}" 127.0.0.1' },
  ];
  it('sends null for the protocol default', () => {
    expect(clientArgument(choices, 0)).toBeNull();
  });
  it('sends "none" for a null template', () => {
    expect(clientArgument(choices, 1)).toBe('none');
  });
  it('sends the template otherwise', () => {
    expect(clientArgument(choices, 2)).toBe('mosh --ssh="ssh -p {port}" 127.0.0.1');
  });
  it('falls back to the default for an index out of range', () => {
    expect(clientArgument(choices, 7)).toBeNull();
    expect(clientArgument([], 0)).toBeNull();
  });
});

describe('visibleSessions', () => {
  const s = (launch_id: string, state: SessionInfo['state'], started: number): SessionInfo => ({
    launch_id,
    resource: 'r',
    protocol: 'tcp',
    gateway: 'g',
    local_port: 1,
    state,
    client: null,
    bytes_in: 0,
    bytes_out: 0,
    started_unix_ms: started,
    ready_ms: 1,
    ended: null,
  });
  it('drops closed sessions and orders the rest oldest first', () => {
    const out = visibleSessions([s('c', 'active', 30), s('a', 'closed', 10), s('b', 'reconnecting', 20), s('d', 'active', 5)]);
    expect(out.map((x) => x.launch_id)).toEqual(['d', 'b', 'c']);
  });
  it('keeps sessions that ended by themselves after the open ones, latest end first', () => {
    const lost = { ...s('e', 'closed', 1), ended: { code: 'gateway_lost' as const, at_unix_ms: 50 } };
    const shut = { ...s('f', 'closed', 2), ended: { code: 'gateway_shutdown' as const, at_unix_ms: 60 } };
    const out = visibleSessions([lost, s('a', 'active', 10), shut, s('x', 'closed', 3)]);
    expect(out.map((x) => x.launch_id)).toEqual(['a', 'f', 'e']);
    expect(endedText(lost)).toMatch(/^ended: gateway lost\. \S/);
    expect(endedText(s('a', 'active', 10))).toBeNull();
  });
});

describe('newestFirst', () => {
  it('orders by start time, newest first, keeping ties in their order', () => {
    const recs = [
      { id: 'a', started_unix_ms: 10 },
      { id: 'b', started_unix_ms: 30 },
      { id: 'c', started_unix_ms: 20 },
      { id: 'd', started_unix_ms: 30 },
    ];
    expect(newestFirst(recs).map((r) => r.id)).toEqual(['b', 'd', 'c', 'a']);
    expect(recs[0]!.id).toBe('a'); // input untouched
  });
});
