// Ownership with real app processes: a paused (zombie) owner, a killed owner evicted before its leases
// expire, a graceful leave and a join. Each cluster runs under a key prefix of its own and touches no shared
// server, so this runs beside other files; the faults of the stack's Redis are in test/faults/ownership.test.ts,
// a node cut off Redis alone in test/cluster/redis-cut.test.ts.
import t from 'tap';
import { until } from '../../scripts/until.js';
import type { RowDataPacket } from '../../src/storage/mysql.js';
import { uniq } from '../helpers/isolation.js';
import {
  balancedPair,
  cluster,
  productOwnedBy,
  purchaseLoad as load,
  settled,
  SHARDS,
} from '../helpers/cluster.js';
import type { AppNode } from '../helpers/node-process.js';
import { asUser } from '../helpers/tokens.js';

t.test('a paused owner (SIGSTOP past its lease) commits nothing for the shards it lost', async (t) => {
  const { c, a, b } = await balancedPair(t);
  const hot = await productOwnedBy(c, a, 'node-b', ['node-a', 'node-b'], 100_000);
  // All traffic enters through node-a (as nginx would once node-b stops answering): node-a forwards to
  // the owner, then takes the shard over when node-b's lease runs out.
  const traffic = load(c, () => [a], [hot]);
  await new Promise((r) => setTimeout(r, 1_000));
  const [[before]] = await c.mysql.primary.query<RowDataPacket[]>(
    'SELECT owner_epoch FROM products WHERE id = ?',
    [hot],
  );
  const zombieEpoch = Number(before?.['owner_epoch']);
  const pausedAt = Date.now();
  b.child.kill('SIGSTOP');
  // Past the 3 s lease node-a takes the shard and sells: polled (up to 10 s after the pause) until the row
  // carries a newer epoch and a purchase sent after the pause succeeded. Both only ever become true.
  const firstAfterPause = () => traffic.answers.find((x) => x.sentAt > pausedAt && x.status === 201);
  const { value: during } = await until(
    async () => {
      const [[row]] = await c.mysql.primary.query<RowDataPacket[]>(
        'SELECT owner_epoch FROM products WHERE id = ?',
        [hot],
      );
      return Number(row?.['owner_epoch']);
    },
    (epoch) => epoch > zombieEpoch && firstAfterPause() !== undefined,
    Math.max(0, pausedAt + 10_000 - Date.now()),
    100,
  );
  t.ok(during > zombieEpoch, `node-a took over at a newer epoch (${zombieEpoch} → ${during})`);
  const firstAfter = firstAfterPause();
  t.comment(
    `takeover: a purchase sent after the pause succeeded ${firstAfter ? firstAfter.at - pausedAt : 'never'} ms after it`,
  );
  t.ok(
    firstAfter !== undefined && firstAfter.at - pausedAt < 10_000,
    "node-a sold the paused node's product while it was paused",
  );
  const resumedAt = new Date();
  b.child.kill('SIGCONT');
  await new Promise((r) => setTimeout(r, 3_000));
  await traffic.stop();
  const [[late]] = await c.mysql.primary.query<RowDataPacket[]>(
    'SELECT COUNT(*) AS n FROM orders WHERE product_id = ? AND owner_epoch = ? AND created_at >= ?',
    [hot, zombieEpoch, resumedAt],
  );
  t.equal(Number(late?.['n']), 0, 'no order was written under the lost epoch after the zombie woke up');
  const { db, exact } = await settled(c, hot, 100_000);
  t.ok(
    exact,
    `stock + sold = initial, nothing pending (stock ${db.stock}, sold ${db.sold}, pending ${db.pending})`,
  );
  t.ok(traffic.answers.filter((x) => x.status === 201).length > 0);
});

t.test('a killed node is evicted before its leases expire; a paused one keeps them', async (t) => {
  // Leases of 30 s: within this test only an eviction can move a shard.
  const c = await cluster(t, ['node-a', 'node-b'], { LEASE_TTL_MS: '30000', LEASE_RENEW_MS: '500' });
  await c.balanced(['node-a', 'node-b']);
  const a = c.nodes.get('node-a')!;
  const b = c.nodes.get('node-b')!;
  const heldBy = async (node: AppNode) => (await c.call(node, 'GET', '/health')).body.cluster.held as number;
  const evictions = () => a.output().match(/evicted a dead node/g)?.length ?? 0;

  // Paused: silent, but the kernel still accepts connections on its port, so it is not taken for dead.
  const heldByA = await heldBy(a);
  b.child.kill('SIGSTOP');
  await new Promise((r) => setTimeout(r, 4_000)); // eight renewals, four times the eviction's silence
  t.equal(await heldBy(a), heldByA, 'node-a took none of the paused node-b shards');
  t.equal(evictions(), 0, 'node-a evicted nobody');
  b.child.kill('SIGCONT');
  await c.balanced(['node-a', 'node-b']);

  // Killed: silent and its port refuses connections.
  const product = await productOwnedBy(c, a, 'node-b', ['node-a', 'node-b'], 100);
  const killedAt = Date.now();
  await b.kill9();
  let all = 0;
  while (all !== SHARDS && Date.now() - killedAt < 15_000) {
    all = await heldBy(a);
    if (all !== SHARDS) await new Promise((r) => setTimeout(r, 50));
  }
  t.comment(`takeover by eviction: node-a held every shard ${Date.now() - killedAt} ms after the kill`);
  t.equal(all, SHARDS, 'node-a holds every shard long before the 30 s leases would have expired');
  t.equal(evictions(), 1, 'node-a evicted node-b once');
  const metrics = await (await fetch(`${a.base}/metrics`)).text();
  t.match(metrics, /cluster_node_evictions_total\{what="nodes"\} 1\n/, 'counted in the metrics');
  const leases = Number(/cluster_node_evictions_total\{what="leases"\} (\d+)/.exec(metrics)?.[1]);
  t.equal(leases, SHARDS - heldByA, `the ${SHARDS - heldByA} leases node-b held were freed`);
  const bought = await c.call(
    a,
    'POST',
    '/purchases',
    { productId: product, quantity: 1 },
    {
      ...(await asUser(uniq('u'))),
      'idempotency-key': 'after-eviction',
    },
  );
  t.equal(bought.status, 201, "node-a sells the dead node's product");
});

t.test(
  'graceful leave under load fails nothing but retryably; a third node joins and takes shards',
  async (t) => {
    const { c, a, b } = await balancedPair(t);
    const products = [
      await productOwnedBy(c, a, 'node-b', ['node-a', 'node-b'], 100_000),
      await productOwnedBy(c, a, 'node-a', ['node-a', 'node-b'], 100_000),
    ];
    let targets = [a, b];
    const traffic = load(c, () => targets, products);
    await new Promise((r) => setTimeout(r, 1_000));
    targets = [a]; // the balancer stops sending to a node that is leaving; requests already there must finish
    const leftAt = Date.now();
    const stopping = b.stop(); // SIGTERM: hand off shards, drain, exit
    await c.balanced(['node-a']);
    t.comment(`handoff: node-a held every shard ${Date.now() - leftAt} ms after node-b's SIGTERM`);
    const exit = await stopping;
    const exitMs = Date.now() - leftAt;
    t.equal(exit, 0, `node-b drained and exited cleanly (${exitMs} ms after its SIGTERM)`);
    if (exit !== 0) t.comment(b.output().split('\n').slice(-10).join('\n'));
    // Its sagas settle through the new owners: none is left waiting out the shutdown grace.
    t.notMatch(b.output(), /sagas left off/, 'no saga of the leaving node was left off');
    const c3 = await c.add('node-c');
    const held = await c.balanced(['node-a', 'node-c']);
    t.ok(held[1]! > 0, `node-c took ${held[1]} shards`);
    targets = [a, c3];
    await new Promise((r) => setTimeout(r, 1_500));
    await traffic.stop();
    // 202: accepted, its saga still running (it left off on node-b and its new owner finishes it).
    const failed = traffic.answers.filter((x) => ![201, 202, 503, 504].includes(x.status));
    t.same(
      failed.map((x) => `${x.status} ${x.code ?? ''}`).slice(0, 5),
      [],
      'only successes or retryable statuses',
    );
    if (failed.length > 0) (await import('node:fs')).writeFileSync('/tmp/node-a.log', a.output());
    const afterJoin = traffic.answers.filter((x) => x.status === 201 && x.at > Date.now() - 1_500).length;
    t.ok(afterJoin > 0, `traffic flows after the join (${afterJoin} purchases in the last 1.5 s)`);
    for (const productId of products) {
      const { db, exact } = await settled(c, productId, 100_000);
      t.ok(exact, `product ${productId}: stock + sold = initial (${db.stock} + ${db.sold}), nothing pending`);
    }
  },
);
