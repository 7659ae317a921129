// Stock subscribers across two app nodes as real processes (one cluster under a key prefix of its own):
// a subscriber on node B sees every change of a product node A owns, and keeps receiving after node A is
// killed and node B takes the product over.
import t from 'tap';
import { desiredOwner, shardOf } from '../../src/cluster/shards.js';
import { uniq } from '../helpers/isolation.js';
import { totals } from '../helpers/database.js';
import { cluster, SHARDS } from '../helpers/cluster.js';
import { asUser } from '../helpers/tokens.js';
import { connectSubscriber, wsUrl, type Subscriber } from '../helpers/ws-client.js';

/** The distinct stock values a subscriber applied, in order (a newer version may repeat a stock). */
const changes = (s: Subscriber, productId: number): number[] =>
  (s.applied.get(productId) ?? [])
    .map((x) => x.stock)
    .filter((stock, i, all) => i === 0 || stock !== all[i - 1]);

t.test('node B sees every change of a product owned by node A, also after A dies', async (t) => {
  const c = await cluster(t, ['node-a', 'node-b']);
  await c.balanced(['node-a', 'node-b']);
  const a = c.nodes.get('node-a')!;
  const b = c.nodes.get('node-b')!;
  let productId = 0;
  while (productId === 0) {
    const id = (await c.call(b, 'POST', '/products', { name: 'p', priceCents: 100, stock: 1_500 })).body
      .id as number;
    if (desiredOwner(shardOf(id, SHARDS), ['node-a', 'node-b']) === 'node-a') productId = id;
  }
  const onA = await connectSubscriber(t, wsUrl(a.base));
  const onB = await connectSubscriber(t, wsUrl(b.base), { protocol: 'msgpack' });
  for (const s of [onA, onB]) {
    s.send({ op: 'subscribe', ids: [productId] });
    await s.waitForStock(productId, 1_500);
  }

  // A burst of 1,000 purchases from 100 concurrent buyers through both nodes (B forwards its half to A).
  const user = uniq('u');
  const statuses: Record<string, number> = {};
  let sent = 0;
  await Promise.all(
    Array.from({ length: 100 }, async (_, w) => {
      while (sent < 1_000) {
        const i = (sent += 1);
        const x = await c.call(
          i % 2 === 0 ? a : b,
          'POST',
          '/purchases',
          { productId, quantity: 1 },
          { ...(await asUser(`${user}-${w}`)), 'idempotency-key': `k${i}` },
        );
        const key = `${x.status} ${x.body?.error?.code ?? ''}`.trim();
        statuses[key] = (statuses[key] ?? 0) + 1;
      }
    }),
  );
  t.same(statuses, { '201': 1_000 }, 'every purchase confirmed');
  const db = await totals(c.mysql.primary, productId);
  t.equal(db.stock, 500, 'MySQL: 500 left');
  const lastOnB = await onB.waitForStock(productId, 500);
  await onA.waitForStock(productId, 500);
  t.equal(lastOnB.stock, db.stock, 'node B ends on the exact final stock');
  t.ok(lastOnB.version <= db.version, 'with a version MySQL has');
  t.same(changes(onB, productId), changes(onA, productId), 'node B saw every change the owner published');
  const seen = changes(onB, productId);
  t.ok(
    seen.every((stock, i) => i === 0 || stock < seen[i - 1]!),
    `the stock only went down, in order (${seen.length - 1} changes, ${onB.discarded} duplicates dropped)`,
  );

  // Failover: node A dies; node B takes its shards; the subscription on B keeps delivering.
  await a.kill9();
  const lateBuyer = await asUser(`${user}-after`);
  const more = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      c.call(
        b,
        'POST',
        '/purchases',
        { productId, quantity: 2 },
        { ...lateBuyer, 'idempotency-key': `after${i}` },
      ),
    ),
  );
  t.equal(more.filter((x) => x.status === 201).length, 50, 'purchases succeed on node B after the takeover');
  const after = await totals(c.mysql.primary, productId);
  t.equal(after.stock, 400, 'MySQL: 400 left');
  const last = await onB.waitForStock(productId, 400);
  t.ok(last.version > lastOnB.version, 'newer versions from the new owner');
  t.equal(onB.ws.readyState, onB.ws.OPEN, 'the subscriber on node B never disconnected');
});
