/**
 * Products hash into a fixed number of shards; a node owns shards, not products, so lease renewal costs
 * the same whatever the catalog's size. Which node should own a shard is decided by rendezvous (highest
 * random weight) hashing over the live nodes: every node computes the same answer from the same list,
 * shards spread evenly, and a join or a leave moves only the shards it must.
 */

/** 32-bit mix (the murmur3 finalizer): spreads sequential ids over all shards. */
function mix32(value: number): number {
  let h = value | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** FNV-1a over a string, for node ids. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function shardOf(productId: number, shardCount: number): number {
  // Ids above 2^32 fold their high part in, so every bit of the id counts.
  const high = Math.floor(productId / 0x1_0000_0000);
  return mix32(mix32(productId >>> 0) ^ high) % shardCount;
}

/** The live node that should own `shard` (undefined when no node is live). */
export function desiredOwner(shard: number, nodes: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestWeight = -1;
  for (const node of nodes) {
    const weight = mix32(fnv1a(node) ^ mix32(shard + 1));
    if (weight > bestWeight || (weight === bestWeight && best !== undefined && node < best)) {
      best = node;
      bestWeight = weight;
    }
  }
  return best;
}

/** Every shard `node` should own among `nodes`. */
export function desiredShards(node: string, nodes: readonly string[], shardCount: number): number[] {
  const out: number[] = [];
  for (let shard = 0; shard < shardCount; shard += 1)
    if (desiredOwner(shard, nodes) === node) out.push(shard);
  return out;
}
