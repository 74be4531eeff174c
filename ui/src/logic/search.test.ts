import { describe, expect, it } from 'vitest';
import { filterResources } from './search';

const resources = [
  { name: 'bastion', protocol: 'ssh' },
  { name: 'orders-db', protocol: 'postgresql' },
  { name: 'billing-db', protocol: 'mysql' },
  { name: 'demo-echo', protocol: 'tcp' },
  { name: 'k8s-prod', protocol: 'kubernetes' },
];
const names = (q: string) => filterResources(resources, q).map((r) => r.name);

describe('filterResources', () => {
  it('keeps everything for an empty or blank query', () => {
    expect(names('')).toEqual(resources.map((r) => r.name));
    expect(names('   ')).toHaveLength(5);
  });
  it('matches the name or the protocol, case-insensitively', () => {
    expect(names('DB')).toEqual(['orders-db', 'billing-db']);
    expect(names('ssh')).toEqual(['bastion']);
    expect(names('postgres')).toEqual(['orders-db']);
    expect(names('sql')).toEqual(['orders-db', 'billing-db']);
  });
  it('needs every word to match', () => {
    expect(names('db my')).toEqual(['billing-db']);
    expect(names('db ssh')).toEqual([]);
  });
  it('does not match the gateway or other fields', () => {
    expect(filterResources([{ name: 'a', protocol: 'ssh', gateway: 'gw-east' }], 'east')).toEqual([]);
  });
  it('returns a new array', () => {
    const out = filterResources(resources, '');
    expect(out).not.toBe(resources);
  });
});
