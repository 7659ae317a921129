// The Redis adapter against the stack's Redis, and its fail-fast behaviour when no server answers.
import { decode, encode } from '@msgpack/msgpack';
import t, { type Test } from 'tap';
import { loadConfig } from '../../src/config.js';
import { RedisProductCache } from '../../src/storage/product-cache.js';
import { connectRedis, createRedis, pingRedis, type Redis } from '../../src/storage/redis.js';
import { uniq } from '../helpers/isolation.js';

// Nothing listens on port 1; the connect timeout is 2 s, so fast means well under it.
const UNREACHABLE_URL = 'redis://127.0.0.1:1';
const FAIL_FAST_MS = 3_000;

/** A client of nothing, disconnected at teardown; reconnect errors are collected instead of thrown. */
function unreachableClient(t: Test, lazyConnect = true): { redis: Redis; errors: NodeJS.ErrnoException[] } {
  const redis = createRedis(loadConfig({ REDIS_URL: UNREACHABLE_URL }), { lazyConnect });
  const errors: NodeJS.ErrnoException[] = [];
  redis.on('error', (err: NodeJS.ErrnoException) => errors.push(err));
  t.teardown(() => redis.disconnect());
  return { redis, errors };
}

async function elapsed(work: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await work();
  return Math.round(performance.now() - started);
}

void t.test('a msgpack value round-trips through SET and GET', async (t) => {
  const redis = createRedis(loadConfig({}));
  t.teardown(() => redis.disconnect());
  t.equal(redis.status, 'wait', 'the client connects lazily');
  await connectRedis(redis);
  t.equal(redis.status, 'ready');
  await connectRedis(redis);
  t.equal(redis.status, 'ready', 'connecting a connected client is a no-op');
  await pingRedis(redis);

  const key = `${uniq('test-redis')}:value`;
  t.teardown(async () => {
    await redis.del(key);
  });
  const value = {
    id: 42,
    name: 'Flash sale ✓',
    priceCents: 1999,
    tags: ['a', 'b'],
    nested: { at: 1.5, none: null },
  };
  t.equal(await redis.set(key, Buffer.from(encode(value)), 'EX', 60), 'OK');
  const stored = await redis.getBuffer(key);
  t.ok(Buffer.isBuffer(stored), 'GET returns the bytes');
  t.same(decode(stored!), value, 'decoded back equal');
  t.equal(await redis.getBuffer(`${key}:absent`), null, 'a missing key reads as null');
});

void t.test('with no server, connecting and then commands fail fast instead of queueing', async (t) => {
  const { redis, errors } = unreachableClient(t);
  // ioredis rejects connect() with "Connection is closed."; the cause arrives as an 'error' event.
  const connectMs = await elapsed(() => t.rejects(connectRedis(redis), 'the first connection fails'));
  t.ok(connectMs < FAIL_FAST_MS, `connect failed in ${connectMs} ms`);
  t.equal(errors[0]?.code, 'ECONNREFUSED', 'the error event names the cause');

  const pingMs = await elapsed(() => t.rejects(pingRedis(redis), 'PING fails while the client reconnects'));
  t.ok(pingMs < FAIL_FAST_MS, `PING failed in ${pingMs} ms`);
  const getMs = await elapsed(() =>
    t.rejects(
      redis.get('any'),
      { message: /enableOfflineQueue/ },
      'GET is refused, not queued for a reconnect',
    ),
  );
  t.ok(getMs < FAIL_FAST_MS, `GET failed in ${getMs} ms`);
});

void t.test('a command before the lazy connection is up is refused at once', async (t) => {
  const { redis } = unreachableClient(t);
  const getMs = await elapsed(() => t.rejects(redis.get('any'), { message: /enableOfflineQueue/ }));
  t.ok(getMs < FAIL_FAST_MS, `refused in ${getMs} ms`);
});

void t.test(
  'an eagerly connecting client refuses a burst of commands while the server is unreachable',
  async (t) => {
    const { redis } = unreachableClient(t, false);
    let results: PromiseSettledResult<unknown>[] = [];
    const burstMs = await elapsed(async () => {
      results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => redis.set(`k${i}`, 'v')));
    });
    t.ok(
      results.every((r) => r.status === 'rejected'),
      'every command is rejected',
    );
    t.ok(burstMs < FAIL_FAST_MS, `20 commands rejected in ${burstMs} ms`);
  },
);

void t.test('connectRedis waits for a connection that a command already started', async (t) => {
  const redis = createRedis(loadConfig({}));
  t.teardown(() => redis.disconnect());
  await redis.get('any').catch(() => undefined); // starts connecting, refused (no offline queue)
  await connectRedis(redis);
  t.equal(redis.status, 'ready', 'connected when connectRedis resolves');
  const served = await pingRedis(redis).then(
    () => true,
    () => false,
  );
  t.ok(served, 'the next command is served');
});

void t.test('a write-through announces its change in the same script, only when it writes', async (t) => {
  const redis = createRedis(loadConfig({}));
  await connectRedis(redis);
  const listener = redis.duplicate();
  await connectRedis(listener);
  t.teardown(() => {
    redis.disconnect();
    listener.disconnect();
  });
  const channel = uniq('changes');
  const heard: string[] = [];
  listener.on('message', (_channel: string, message: string) => heard.push(message));
  await listener.subscribe(channel);
  const cache = new RedisProductCache(redis, { prefix: `${uniq('pub')}:` });
  await cache.setStock(1, 50, 5, { channel, message: '1:50:5' });
  await cache.setStock(1, 60, 4, { channel, message: '1:60:4' }); // older than the cache: not written
  await Promise.all([
    cache.setStock(2, 7, 1, { channel, message: '2:7:1' }),
    cache.setStock(3, 9, 2), // no announcement asked for
  ]);
  await redis.ping();
  await listener.ping(); // every message published before this PING has been delivered
  t.same(heard, ['1:50:5', '2:7:1'], 'written changes announced once; the older one and the silent one not');
  t.equal(await redis.get(cache.stockKey(1)), '5:50');
});

void t.test('write-throughs of one turn go out as one pipeline; an older version never wins', async (t) => {
  const redis = createRedis(loadConfig({}));
  await connectRedis(redis);
  t.teardown(() => redis.disconnect());
  const cache = new RedisProductCache(redis, { prefix: `${uniq('wt')}:` });
  await cache.setStock(1, 50, 5);
  let pipelines = 0;
  const original = redis.pipeline.bind(redis);
  redis.pipeline = (...args: Parameters<Redis['pipeline']>) => {
    pipelines += 1;
    return original(...args);
  };
  // One cycle's products in one turn, one of them at an older version than the cache holds.
  await Promise.all([cache.setStock(1, 60, 4), cache.setStock(2, 7, 1), cache.setStock(3, 9, 2)]);
  t.equal(pipelines, 1, 'three write-throughs, one pipeline');
  t.same(
    await Promise.all([1, 2, 3].map((id) => redis.get(cache.stockKey(id)))),
    ['5:50', '1:7', '2:9'],
    'the newer version stays; the others are written',
  );
});
