// One node cut off Redis alone while the other still reaches it, with real app processes: node-a reaches the
// stack's Redis only through TCP relays of this file's own (scripts/chaos/redis-path.ts), which the test cuts
// and heals; the stack's servers are never touched and the cluster runs under a key prefix, a database and
// topics of its own, so this runs beside other files (it used to be in test/faults/ownership.test.ts).
import t from 'tap';
import { RedisPath } from '../../scripts/chaos/redis-path.js';
import { cluster, productOwnedBy, purchaseLoad as load, settled } from '../helpers/cluster.js';

t.test(
  'a node cut off Redis alone: once the other takes its shards, its purchases are served there',
  async (t) => {
    const path = await RedisPath.toStack();
    t.teardown(() => path.close());
    const c = await cluster(t, []);
    // node-a reaches Redis only through the relays. A short deadline, so that a purchase it kept retrying
    // on its own (fenced actors, or a view of the owners it cannot refresh) would fail instead of succeeding
    // late; a 5 s outage grace, so that the 8 s cut outlasts it.
    const a = await c.add('node-a', {
      ...path.env(),
      PURCHASE_DEADLINE_MS: '2000',
      LEASE_OUTAGE_GRACE_MS: '5000',
    });
    const b = await c.add('node-b');
    await c.balanced(['node-a', 'node-b']);
    const product = await productOwnedBy(c, a, 'node-a', ['node-a', 'node-b'], 100_000);
    // Both nodes take purchases of node-a's product, as behind nginx; node-b's writes after its takeover
    // are what node-a's next commit loses to.
    const traffic = load(c, () => [a, b], [product], 20);
    const reads: number[] = [];
    let reading = true;
    const reader = (async () => {
      while (reading)
        reads.push((await c.call(a, 'GET', `/products/${product}`).catch(() => ({ status: 0 }))).status);
    })();
    await new Promise((r) => setTimeout(r, 1_000));
    const cutAt = Date.now();
    path.cutOff();
    // Past the lease TTL (3 s) node-b takes the shard while node-a still holds it by the outage grace (5 s),
    // until node-a's commit loses to node-b's or the grace ends; the cut lasts 3 s more.
    await new Promise((r) => setTimeout(r, 8_000));
    path.heal();
    await new Promise((r) => setTimeout(r, 2_000));
    await traffic.stop();
    reading = false;
    await reader;
    // Dropped on a commit lost to node-b's (test/cluster/cut-off.test.ts) or at the end of the grace.
    t.match(a.output(), /lost shards/, 'node-a let its shards go during the cut');
    const sinceCut = traffic.answers.filter((x) => x.sentAt >= cutAt);
    const failed = sinceCut.filter((x) => ![201, 202].includes(x.status));
    t.same(
      failed.map((x) => `${x.status} ${x.code ?? ''} at ${x.sentAt - cutAt} ms`).slice(0, 5),
      [],
      `every purchase, on either node, from the cut on succeeded (${sinceCut.length})`,
    );
    t.ok(
      sinceCut.some((x) => x.status === 201 && x.sentAt > cutAt + 5_000 && x.at < cutAt + 8_000),
      'purchases succeeded during the cut, after the grace',
    );
    t.same(
      reads.filter((s) => s !== 200),
      [],
      `every read on node-a answered (${reads.length}, from the replica while Redis is cut)`,
    );
    const { db, exact } = await settled(c, product, 100_000);
    t.ok(exact, `stock + sold = initial (${db.stock} + ${db.sold}), nothing pending`);
  },
);
