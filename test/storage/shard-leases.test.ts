// Shard leases against the stack's Redis (through its Sentinels): epochs never go backwards when Redis
// forgets the last grant (a restart, or a failover to a replica the grant had not reached), and a lease
// that expired while its holder could not reach Redis is given back to it only if nobody took the shard.
import t, { type Test } from 'tap';
import { loadConfig } from '../../src/config.js';
import { connectRedis, createRedis } from '../../src/storage/redis.js';
import { RedisShardLeases } from '../../src/storage/shard-leases.js';
import { uniq } from '../helpers/isolation.js';

const TTL_MS = 5_000;

async function leasesUnderOwnPrefix(t: Test) {
  const redis = createRedis(loadConfig({ LOG_LEVEL: 'silent' }));
  await connectRedis(redis);
  const prefix = `${uniq('leases')}:`;
  t.teardown(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });
  return { redis, prefix, leases: new RedisShardLeases(redis, prefix) };
}

t.test('an epoch is at least the grant time, and higher than any epoch Redis forgot', async (t) => {
  const { redis, prefix, leases } = await leasesUnderOwnPrefix(t);
  const before = Date.now();
  const first = (await leases.acquire('node-a', TTL_MS, [7])).get(7);
  t.ok(
    first !== undefined && first >= before,
    `the first grant's epoch (${first}) is at least the time of the grant`,
  );
  await leases.release('node-a', new Map([[7, first!]]));
  const second = (await leases.acquire('node-b', TTL_MS, [7])).get(7)!;
  t.ok(second > first!, 'the next grant has a higher epoch');

  // Redis forgets the last grant and its counter (what a failover to a lagging replica loses).
  await redis.del(`${prefix}shard:7`, `${prefix}shard-epoch:7`);
  await new Promise((r) => setTimeout(r, 5));
  const third = (await leases.acquire('node-a', TTL_MS, [7])).get(7)!;
  t.ok(third > second, `a grant after the loss (${third}) is still above the forgotten epoch (${second})`);
});

t.test(
  'a renewal gives back an expired lease nobody took, under the same epoch; not one taken since',
  async (t) => {
    const { redis, prefix, leases } = await leasesUnderOwnPrefix(t);
    const granted = await leases.acquire('node-a', TTL_MS, [1, 2]);
    const [e1, e2] = [granted.get(1)!, granted.get(2)!];

    // Both leases expire while node-a cannot reach Redis; node-b takes shard 2 meanwhile, then releases it.
    await redis.del(`${prefix}shard:1`, `${prefix}shard:2`);
    const taken = (await leases.acquire('node-b', TTL_MS, [2])).get(2)!;
    t.ok(taken > e2, 'node-b was granted shard 2 under a later epoch');
    await leases.release('node-b', new Map([[2, taken]]));

    const tick = await leases.tick(
      'node-a',
      '127.0.0.1:1',
      TTL_MS,
      new Map([
        [1, e1],
        [2, e2],
      ]),
      false,
    );
    t.same(tick.lost, [2], 'shard 2 is lost: another node held it since (a later epoch)');
    t.equal(await redis.get(`${prefix}shard:1`), `node-a|${e1}`, 'shard 1 is node-a’s again, same epoch');
    t.ok(Number(await redis.pttl(`${prefix}shard:1`)) > 0, 'with a TTL');
    t.equal(await redis.get(`${prefix}shard:2`), null, 'shard 2 stays free for whoever should own it');

    // Held by another node now: a renewal never takes it over, whatever the epochs.
    await leases.acquire('node-b', TTL_MS, [2]);
    const again = await leases.tick('node-a', '127.0.0.1:1', TTL_MS, new Map([[2, e2]]), false);
    t.same(again.lost, [2], 'a lease held by another node stays lost');
  },
);
