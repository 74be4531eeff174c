import { describe, expect, it } from 'vitest';
import { pinQuestion, toCommandError, toPinned } from './errors';

describe('toCommandError', () => {
  it('passes a command error through', () => {
    const e = { code: 'port_taken', message: 'port 15432 is taken', hint: 'pick another port' };
    expect(toCommandError(e)).toEqual(e);
  });
  it('fills a missing hint and code', () => {
    expect(toCommandError({ message: 'boom' })).toEqual({ code: 'unrecognized', message: 'boom', hint: '' });
    expect(toCommandError({ code: 'rrc_timeout', message: 'y' })).toEqual({ code: 'rrc_timeout', message: 'y', hint: '' });
  });
  it('reads a code it does not know as unrecognized', () => {
    expect(toCommandError({ code: 'from_a_newer_app', message: 'y' })).toMatchObject({ code: 'unrecognized' });
  });
  it('reads a JSON string', () => {
    expect(toCommandError('{"code":"rrc_timeout","message":"slow","hint":"retry"}')).toEqual({
      code: 'rrc_timeout',
      message: 'slow',
      hint: 'retry',
    });
  });
  it("keeps Tauri's own string errors as the message", () => {
    expect(toCommandError('command launch not found')).toEqual({
      code: 'ipc_error',
      message: 'command launch not found',
      hint: '',
    });
    expect(toCommandError('{not json')).toEqual({ code: 'ipc_error', message: '{not json', hint: '' });
  });
  it('handles Errors and odd values', () => {
    expect(toCommandError(new Error('nope'))).toMatchObject({ code: 'unrecognized', message: 'nope' });
    expect(toCommandError(42)).toMatchObject({ message: '42' });
    expect(toCommandError(null)).toMatchObject({ message: 'null' });
  });
});

describe('unpinned gateways', () => {
  const pin = { gateway: 'dc1', key: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=', fingerprint: 'SHA256:abc' };
  it('keeps the offered key of an unpinned_gateway error', () => {
    const e = toCommandError({ code: 'unpinned_gateway', message: 'm', hint: 'h', unpinned: pin });
    expect(e.code).toBe('unpinned_gateway');
    expect(e.unpinned).toEqual(pin);
  });
  it('drops a malformed offer', () => {
    expect(toPinned({ gateway: 'dc1', key: 'k' })).toBeNull();
    expect(toPinned({ ...pin, fingerprint: 'MD5:x' })).toBeNull();
    expect(toCommandError({ code: 'unpinned_gateway', message: 'm', unpinned: 'x' }).unpinned).toBeUndefined();
  });
  it('asks with the gateway and the fingerprint', () => {
    const q = pinQuestion(pin);
    expect(q).toContain('"dc1"');
    expect(q).toContain('SHA256:abc');
  });
});
