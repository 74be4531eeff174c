// The Resources search box. Pure: no DOM, no Tauri.

export interface Searchable {
  name: string;
  protocol: string;
}

/**
 * Keeps the resources every whitespace-separated word of `query` matches (case-insensitive
 * substring of the name or the protocol), in their original order. An empty query keeps all.
 */
export function filterResources<T extends Searchable>(resources: readonly T[], query: string): T[] {
  const words = query.toLowerCase().split(/\s+/).filter((w) => w.length > 0);
  if (words.length === 0) return resources.slice();
  return resources.filter((r) => {
    const name = r.name.toLowerCase();
    const protocol = r.protocol.toLowerCase();
    return words.every((w) => name.includes(w) || protocol.includes(w));
  });
}
