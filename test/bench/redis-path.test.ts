// The chaos run's Redis cut (scripts/chaos/redis-path.ts) against the stack's real Sentinels and Redis: a
// client configured with the path's REDIS_SENTINELS and REDIS_NAT_MAP reaches Redis only through the
// relays (a cut stops it while a direct client goes on), and comes back on its own once the cut heals.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { RedisPath } from '../../scripts/chaos/redis-path.js';
import { STACK_PORTS, STACK_REDIS_NODES } from '../../scripts/stack/layout.js';
import { loadConfig } from '../../src/config.js';
import { connectRedis, createRedis, type Redis } from '../../src/storage/redis.js';

const attempt = async (redis: Redis, key: string): Promise<string> =>
  redis.set(key, 'v', 'PX', 60_000).then(
    () => 'ok',
    (err: Error) => err.message,
  );

t.test(
  'a node cut off Redis alone: its commands fail while another client goes on, then it reconnects',
  async (t) => {
    const path = await RedisPath.toStack();
    t.teardown(() => path.close());
    const env = path.env();
    t.match(env['REDIS_SENTINELS'], /^127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+$/);
    for (const port of [...STACK_PORTS.sentinels, ...STACK_REDIS_NODES.map((n) => n.port)])
      t.match(env['REDIS_NAT_MAP'], `127.0.0.1:${port}=127.0.0.1:`, `${port} is reached through a relay`);

    const through = createRedis(loadConfig({ ...process.env, LOG_LEVEL: 'silent', ...env }));
    const direct = createRedis(loadConfig({ ...process.env, LOG_LEVEL: 'silent' }));
    through.on('error', () => undefined);
    direct.on('error', () => undefined);
    t.teardown(() => {
      through.disconnect();
      direct.disconnect();
    });
    await connectRedis(through);
    await connectRedis(direct);
    const key = `test:redis-path:${randomUUID()}`;
    t.teardown(() => direct.del(key).then(() => undefined));
    t.equal(await attempt(through, key), 'ok', 'through the relays before the cut');

    path.cutOff();
    t.ok(path.cut);
    const cutAt = Date.now();
    const during = await attempt(through, key);
    t.not(during, 'ok', `a command during the cut fails (${during})`);
    t.ok(Date.now() - cutAt < 5_000, 'within the client command timeout, not hanging');
    t.equal(await attempt(direct, key), 'ok', 'a client that does not go through the relays is not cut');
    await sleep(1_000);
    t.not(await attempt(through, key), 'ok', 'still cut a second later (no way around the relays)');

    path.heal();
    const healedAt = Date.now();
    let after = '';
    while (Date.now() - healedAt < 15_000) {
      after = await attempt(through, key);
      if (after === 'ok') break;
      await sleep(200);
    }
    t.equal(after, 'ok', `reconnected after the heal (${Date.now() - healedAt} ms)`);
  },
);
