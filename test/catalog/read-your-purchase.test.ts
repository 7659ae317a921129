// Read-your-purchase across two app nodes as real processes: a purchase answer carries `stockVersion`, and a
// read of the product on the OTHER node with `?minVersion=` never shows a stock older than that purchase,
// whichever node owns the product and however far its memory or Redis lag.
import t from 'tap';
import { desiredOwner, shardOf } from '../../src/cluster/shards.js';
import { uniq } from '../helpers/isolation.js';
import { cluster, SHARDS } from '../helpers/cluster.js';
import { asUser } from '../helpers/tokens.js';

t.test('a read on another node never shows a stock older than the reader purchase', async (t) => {
  const c = await cluster(t, ['node-a', 'node-b']);
  await c.balanced(['node-a', 'node-b']);
  const a = c.nodes.get('node-a')!;
  const b = c.nodes.get('node-b')!;
  // One product owned by each node, so purchases are answered both by their owner and through forwarding.
  const owned: Record<string, number> = {};
  while (owned['node-a'] === undefined || owned['node-b'] === undefined) {
    const id = (await c.call(a, 'POST', '/products', { name: 'p', priceCents: 100, stock: 10_000 })).body
      .id as number;
    owned[desiredOwner(shardOf(id, SHARDS), ['node-a', 'node-b']) ?? 'none'] ??= id;
  }
  const user = uniq('u');
  const violations: string[] = [];
  let checked = 0;
  const tiers: Record<string, number> = {};
  // 20 buyers at once, each buying then reading on the other node, 10 times each, on both products.
  await Promise.all(
    Array.from({ length: 20 }, async (_, w) => {
      for (let i = 0; i < 10; i += 1) {
        const productId = [owned['node-a'], owned['node-b']][(w + i) % 2]!;
        const [buyOn, readOn] = (w + i) % 4 < 2 ? [a, b] : [b, a];
        const bought = await c.call(
          buyOn,
          'POST',
          '/purchases',
          { productId, quantity: 1 },
          { ...(await asUser(`${user}-${w}`)), 'idempotency-key': `k${i}` },
        );
        if (bought.status !== 201) {
          violations.push(`purchase ${bought.status} ${JSON.stringify(bought.body)}`);
          continue;
        }
        const stockVersion = bought.body.stockVersion as number;
        const res = await fetch(`${readOn.base}/products/${productId}?minVersion=${stockVersion}`);
        const read = (await res.json()) as { stock: number; version: number };
        const tier = res.headers.get('x-cache-tier') ?? 'none';
        tiers[tier] = (tiers[tier] ?? 0) + 1;
        checked += 1;
        if (read.version < stockVersion)
          violations.push(`read version ${read.version} < purchase's ${stockVersion} (${tier})`);
      }
    }),
  );
  t.same(violations, [], 'every read at least as new as the purchase before it');
  t.equal(checked, 200);
  t.ok(Object.keys(tiers).length > 0, `tiers seen: ${JSON.stringify(tiers)}`);
  // Stock only goes down with purchases here: the stock at version v is at most 10,000 minus the
  // purchases committed by then; the final reads on both nodes agree with the database.
  for (const productId of [owned['node-a'], owned['node-b']]) {
    const [row] = (await c.mysql.primary.query('SELECT stock, version FROM products WHERE id = ?', [
      productId,
    ])) as unknown as [{ stock: number; version: number }[]];
    const db = row[0]!;
    for (const node of [a, b]) {
      const res = await fetch(`${node.base}/products/${productId}?minVersion=${db.version}`);
      t.match(await res.json(), { stock: db.stock }, `${node.base} agrees with the database`);
    }
  }
});
