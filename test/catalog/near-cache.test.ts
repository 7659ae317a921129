// The node's memory tier of reads: versions only move forward, and nothing is served that the stock-change
// feed may have missed (not live, an older generation, past its TTL, older than the version asked for).
import t from 'tap';
import { NearCache, type NearProduct } from '../../src/catalog/near-cache.js';

const product = (id: number, stock: number, version: number): NearProduct => ({
  id,
  name: `p${id}`,
  priceCents: 100,
  strategy: 'actor',
  createdAt: '2026-12-03T00:00:00.000Z',
  stock,
  version,
});

function clocked(options: { maxProducts?: number; stockTtlMs?: number; refreshAfterShare?: number } = {}) {
  let now = 1_000;
  const cache = new NearCache({ ...options, now: () => now });
  cache.setLive(true);
  return { cache, advance: (ms: number) => (now += ms) };
}

t.test('a stock version never goes backwards, whatever the order offers arrive in', async (t) => {
  const { cache } = clocked();
  cache.remember(product(1, 10, 3));
  cache.offerStock(1, 12, 2); // a late feed message of an older commit
  t.match(cache.get(1), { stock: 10, version: 3 }, 'an older offer is ignored');
  cache.offerStock(1, 7, 5);
  t.match(cache.get(1), { stock: 7, version: 5 }, 'a newer offer wins');
  cache.remember(product(1, 9, 4)); // a reload from a lagging replica
  t.match(cache.get(1), { stock: 7, version: 5, name: 'p1' }, 'an older reload keeps the newer stock');
  cache.remember({ ...product(1, 7, 5), name: 'renamed' });
  t.match(cache.get(1), { stock: 7, version: 5, name: 'renamed' });

  // Offers shuffled: the highest version is what remains.
  const versions = Array.from({ length: 50 }, (_, i) => i + 6).sort(() => Math.random() - 0.5);
  for (const v of versions) cache.offerStock(1, 1_000 - v, v);
  t.match(cache.get(1), { stock: 1_000 - 55, version: 55 });
});

t.test(
  'a feed change before the details arrive is kept; the older details reload does not undo it',
  async (t) => {
    const { cache } = clocked();
    cache.offerStock(2, 4, 8);
    t.equal(cache.get(2), undefined, 'no details yet: not served');
    cache.remember(product(2, 5, 7));
    t.match(cache.get(2), { stock: 4, version: 8, name: 'p2' });
  },
);

t.test('minVersion: an older stock is not served', async (t) => {
  const { cache } = clocked();
  cache.remember(product(3, 10, 4));
  t.match(cache.get(3, 4), { version: 4 });
  t.equal(cache.get(3, 5), undefined);
  t.equal(cache.versionOf(3), 4);
});

t.test('trust ends with the feed, a new generation and the TTL', async (t) => {
  const { cache, advance } = clocked({ stockTtlMs: 1_000 });
  cache.remember(product(4, 10, 1));
  advance(1_000);
  t.ok(cache.get(4), 'still trusted at its TTL');
  advance(1);
  t.equal(cache.get(4), undefined, 'not past it');
  cache.offerStock(4, 10, 1); // the same version again (the owner's echo) confirms it
  t.ok(cache.get(4), 'confirmed again');

  cache.setLive(false);
  t.equal(cache.get(4), undefined, 'nothing served while the feed is down');
  cache.setLive(true);
  t.equal(cache.get(4), undefined, 'what was learned before the outage needs confirming');
  cache.offerStock(4, 9, 2);
  t.match(cache.get(4), { stock: 9, version: 2 });
});

t.test('the answer body is made once per version', async (t) => {
  const { cache } = clocked();
  let renders = 0;
  const render = (p: NearProduct) => {
    renders += 1;
    return Buffer.from(JSON.stringify({ id: p.id, stock: p.stock, version: p.version }));
  };
  const text = (body: Uint8Array | undefined) => body && Buffer.from(body).toString();
  cache.remember(product(5, 3, 1));
  t.equal(text(cache.body(5, 0, render)), '{"id":5,"stock":3,"version":1}');
  t.equal(text(cache.body(5, 0, render)), '{"id":5,"stock":3,"version":1}');
  t.equal(renders, 1);
  cache.offerStock(5, 2, 2);
  t.equal(text(cache.body(5, 0, render)), '{"id":5,"stock":2,"version":2}');
  t.equal(renders, 2);
  t.equal(cache.body(5, 3, render), undefined, 'older than asked');
});

t.test('bounded: past maxProducts the longest-unrefreshed goes; 0 keeps nothing', async (t) => {
  const { cache } = clocked({ maxProducts: 3 });
  for (const id of [1, 2, 3]) cache.remember(product(id, 1, 1));
  cache.remember(product(1, 1, 2)); // refreshed: now the newest
  cache.remember(product(4, 1, 1));
  t.equal(cache.stats().products, 3);
  t.equal(cache.get(2), undefined, 'the longest-unrefreshed was dropped');
  t.ok(cache.get(1) && cache.get(3) && cache.get(4));

  const off = clocked({ maxProducts: 0 }).cache;
  off.remember(product(1, 1, 1));
  off.offerStock(2, 1, 1);
  t.equal(off.stats().products, 0);
  t.equal(off.get(1), undefined);
});

t.test('a read past 75% of the trust asks for a refresh; an untrusted entry does not', async (t) => {
  const { cache, advance } = clocked({ stockTtlMs: 1_000 });
  const aging: number[] = [];
  cache.onAging = (id) => aging.push(id);
  cache.remember(product(5, 10, 1));
  advance(750);
  t.ok(cache.get(5));
  t.same(aging, [], 'not before');
  advance(1);
  t.ok(
    cache.body(5, 0, () => Buffer.from('x')),
    'still served while aging',
  );
  t.ok(cache.get(5));
  t.same(aging, [5], 'told once');
  advance(200);
  t.ok(cache.get(5));
  t.same(aging, [5], 'not again within the rest of the trust (a reload that could not confirm it)');
  advance(49);
  t.ok(cache.get(5), 'at the end of its trust');
  t.same(aging, [5]);
  cache.offerStock(5, 10, 1);
  t.ok(cache.get(5));
  t.same(aging, [5], 'confirmed: young again');
  advance(751);
  t.ok(cache.get(5));
  t.same(aging, [5, 5], 'aging again: told again');
  advance(250);
  t.equal(cache.get(5), undefined);
  t.same(aging, [5, 5], 'past the trust: a miss, not a refresh');
});
