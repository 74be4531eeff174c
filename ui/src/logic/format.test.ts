import { describe, expect, it } from 'vitest';
import { formatAgo, formatBytes, formatMs, formatStep, formatTotalMs, formatUptime, parsePort } from './format';

describe('formatBytes', () => {
  it('keeps small counts in bytes', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1)).toBe('1 B');
    expect(formatBytes(1023)).toBe('1023 B');
  });
  it('uses binary units with one decimal below 10', () => {
    expect(formatBytes(1024)).toBe('1 KiB');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(10 * 1024)).toBe('10 KiB');
    expect(formatBytes(16 * 1024 * 1024)).toBe('16 MiB');
    expect(formatBytes(3.25 * 1024 ** 3)).toBe('3.3 GiB');
  });
  it('carries up instead of printing 1024 of a unit', () => {
    expect(formatBytes(1024 * 1024 - 1)).toBe('1 MiB');
    expect(formatBytes(1023.9 * 1024)).toBe('1 MiB');
  });
  it('refuses nonsense', () => {
    expect(formatBytes(-1)).toBe('–');
    expect(formatBytes(Number.NaN)).toBe('–');
  });
});

describe('formatMs', () => {
  it('scales from sub-millisecond to minutes', () => {
    expect(formatMs(0)).toBe('0 ms');
    expect(formatMs(0.42)).toBe('0.4 ms');
    expect(formatMs(9.96)).toBe('10 ms');
    expect(formatMs(412.4)).toBe('412 ms');
    expect(formatMs(1240)).toBe('1.24 s');
    expect(formatMs(12_345)).toBe('12.3 s');
    expect(formatMs(123_000)).toBe('2 min 03 s');
  });
  it('prefixes steps and keeps totals parseable in ms', () => {
    expect(formatStep(50)).toBe('+50 ms');
    expect(formatTotalMs(1234.6)).toBe('1235 ms');
    expect(Number.parseFloat(formatTotalMs(98.2))).toBe(98);
  });
});

describe('formatUptime', () => {
  it('reads as a clock', () => {
    expect(formatUptime(0)).toBe('0:00');
    expect(formatUptime(7_999)).toBe('0:07');
    expect(formatUptime(187_000)).toBe('3:07');
    expect(formatUptime((2 * 3600 + 3 * 60 + 7) * 1000)).toBe('2:03:07');
    expect(formatUptime((26 * 3600 + 5) * 1000)).toBe('1d 2:00:05');
  });
  it('treats a clock skewed into the future as zero', () => {
    expect(formatUptime(-5000)).toBe('0:00');
  });
});

describe('formatAgo', () => {
  const now = 1_700_000_000_000;
  it('is coarse', () => {
    expect(formatAgo(now, now - 1000)).toBe('just now');
    expect(formatAgo(now, now - 42_000)).toBe('42 s ago');
    expect(formatAgo(now, now - 5 * 60_000)).toBe('5 min ago');
    expect(formatAgo(now, now - 3 * 3_600_000)).toBe('3 h ago');
    expect(formatAgo(now, now - 2 * 86_400_000)).toBe('2 d ago');
  });
});

describe('parsePort', () => {
  it('accepts an empty field and ports in range', () => {
    expect(parsePort('')).toBeNull();
    expect(parsePort('  ')).toBeNull();
    expect(parsePort('15432')).toBe(15432);
    expect(parsePort(' 22 ')).toBe(22);
    expect(parsePort('65535')).toBe(65535);
  });
  it('rejects everything else', () => {
    expect(parsePort('0')).toBe('invalid');
    expect(parsePort('65536')).toBe('invalid');
    expect(parsePort('-1')).toBe('invalid');
    expect(parsePort('12.5')).toBe('invalid');
    expect(parsePort('1e3')).toBe('invalid');
    expect(parsePort('ssh')).toBe('invalid');
  });
});
