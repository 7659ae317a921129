// Ownership through a fault of the stack's Redis, with real app processes: every lease lost at once (the
// stack's Redis emptied and restarted). Runs serially with the other fault tests (it restarts the stack's
// Redis); the other ownership cases are in test/cluster/ownership.test.ts, and one node cut off Redis alone
// (through relays of its own, touching no shared server) in test/cluster/redis-cut.test.ts.
import t from 'tap';
import { REDIS_DATA_NODES, startServers, stopServers } from '../../scripts/stack/stack.js';
import { loadConfig } from '../../src/config.js';
import { connectRedis, createRedis } from '../../src/storage/redis.js';
import type { RowDataPacket } from '../../src/storage/mysql.js';
import { balancedPair, productOwnedBy, purchaseLoad as load, settled, SHARDS } from '../helpers/cluster.js';

t.test(
  'every lease lost at once (Redis emptied and restarted): ownership comes back, totals exact',
  async (t) => {
    const { c, a, b } = await balancedPair(t);
    const products = [
      await productOwnedBy(c, a, 'node-a', ['node-a', 'node-b'], 100_000),
      await productOwnedBy(c, a, 'node-b', ['node-a', 'node-b'], 100_000),
    ];
    const traffic = load(c, () => [a, b], products);
    await new Promise((r) => setTimeout(r, 1_000));
    const epochOf = async () => {
      const [rows] = await c.mysql.primary.query<RowDataPacket[]>(
        'SELECT COALESCE(MAX(owner_epoch), 0) AS epoch FROM orders WHERE product_id IN (?)',
        [products],
      );
      return Number(rows[0]?.['epoch']);
    };
    const epochBefore = await epochOf();
    // Lose every key of this cluster (leases, epochs, membership), then restart the server itself.
    const redis = createRedis(loadConfig({ LOG_LEVEL: 'silent' }));
    await connectRedis(redis);
    const keys = await redis.keys(`${c.prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
    t.teardown(() => startServers(REDIS_DATA_NODES));
    const lostAt = Date.now();
    await stopServers(REDIS_DATA_NODES);
    await new Promise((r) => setTimeout(r, 500));
    await startServers(REDIS_DATA_NODES);
    // Ownership is back when every shard's lease is in Redis again: the nodes kept their shards through
    // the outage (LEASE_OUTAGE_GRACE_MS) and their renewals gave the leases nobody else took back.
    const after = createRedis(loadConfig({ LOG_LEVEL: 'silent' }));
    t.teardown(() => after.disconnect());
    await connectRedis(after);
    const shardKeys = Array.from({ length: SHARDS }, (_, shard) => `${c.prefix}shard:${shard}`);
    // What the last look saw, for the failure message: how many leases were back, or why Redis did not say.
    let backAt = 0;
    let seen = 'nothing yet';
    while (backAt === 0 && Date.now() < lostAt + 30_000) {
      const held = await after.mget(...shardKeys).then(
        (values) => values.filter((v) => v !== null).length,
        (err: Error) => err.message,
      );
      seen = typeof held === 'number' ? `${held} of ${SHARDS} leases back` : `mget failed: ${held}`;
      if (held === SHARDS) backAt = Date.now();
      else await new Promise((r) => setTimeout(r, 50));
    }
    if (backAt > 0) t.comment(`every lease back in Redis ${backAt - lostAt} ms after the keys were lost`);
    t.ok(backAt > 0, 'every shard lease is back in Redis after the loss', {
      lastSeen: seen,
      connectedTo: await after.role().then(
        (role) => String(role[0]),
        (err: Error) => err.message,
      ),
    });
    await c.balanced(['node-a', 'node-b'], 20_000);
    await new Promise((r) => setTimeout(r, 1_000));
    await traffic.stop();
    t.ok(
      traffic.answers.some((x) => x.status === 201 && x.sentAt > backAt),
      'purchases succeed after ownership is back',
    );
    for (const productId of products) {
      const { db, exact } = await settled(c, productId, 100_000);
      t.ok(exact, `product ${productId}: stock + sold = initial (${db.stock} + ${db.sold}), nothing pending`);
    }
    t.ok((await epochOf()) >= epochBefore, 'no write under an epoch older than before the loss');
  },
);
