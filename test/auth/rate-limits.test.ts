import t from 'tap';
import { addressSet, clientIp } from '../../src/auth/client-ip.js';
import { RateLimits, WindowCounter } from '../../src/auth/rate-limits.js';
import { loadConfig } from '../../src/config.js';
import { AppError } from '../../src/errors.js';
import { RedisWindowCounters } from '../../src/storage/rate-counters.js';
import { connectRedis, createRedis } from '../../src/storage/redis.js';
import { uniq } from '../helpers/isolation.js';

const trusted = addressSet(['127.0.0.1', '::1']);

t.test('client IP: X-Forwarded-For only from a trusted proxy, and only its last entry', async (t) => {
  t.equal(
    clientIp('203.0.113.9', '1.2.3.4', trusted),
    '203.0.113.9',
    'an untrusted sender cannot claim an IP',
  );
  t.equal(clientIp('127.0.0.1', '198.51.100.7', trusted), '198.51.100.7', 'the proxy says who it served');
  t.equal(
    clientIp('127.0.0.1', '6.6.6.6, 198.51.100.7', trusted),
    '198.51.100.7',
    'entries before the proxy are the client’s own claims',
  );
  t.equal(
    clientIp('127.0.0.1', 'garbage', trusted),
    '127.0.0.1',
    'a malformed header falls back to the socket',
  );
  t.equal(clientIp('127.0.0.1', undefined, trusted), '127.0.0.1');
  t.equal(clientIp('::ffff:10.0.0.1', undefined, trusted), '10.0.0.1', 'IPv4-mapped addresses are IPv4');
});

t.test('address sets: addresses and CIDR ranges, IPv4 and IPv6', async (t) => {
  const set = addressSet(['10.0.0.0/8', '192.0.2.7', 'fd00::/8', '::1']);
  t.ok(set.has('10.200.3.4') && set.has('192.0.2.7') && set.has('fd12::1') && set.has('::1'));
  t.notOk(set.has('11.0.0.1') || set.has('192.0.2.8') || set.has('fe80::1') || set.has('not-an-ip'));
  t.throws(() => addressSet(['10.0.0.0/33']));
  t.equal(clientIp('10.1.1.1', '198.51.100.7', set), '198.51.100.7', 'a proxy inside a trusted range');
  t.throws(() => loadConfig({ RATE_LIMIT_TRUSTED_PROXIES: '10.0.0.0/8,nginx' }), {
    message: /TRUSTED_PROXIES: "nginx"/,
  });
  t.same(
    loadConfig({ RATE_LIMIT_TRUSTED_PROXIES: '' }).rateLimit.trustedProxies,
    [],
    'set but empty: trust no proxy',
  );
});

t.test('window counter: N per window, then refused until the next window', async (t) => {
  const counter = new WindowCounter(3);
  const start = 10_000_000; // the start of a window
  t.same(
    [1, 2, 3, 4].map((i) => counter.hit('a', start + i).remainingPoints),
    [2, 1, 0, -1],
  );
  t.equal(counter.hit('b', start + 5).remainingPoints, 2, 'keys are counted apart');
  t.equal(counter.hit('a', start + 400).msBeforeNext, 600);
  t.equal(counter.hit('a', start + 1000).remainingPoints, 2, 'a new window starts from zero');
});

const limitsOf = (env: Record<string, string>) => loadConfig({ ...env }).rateLimit;

t.test('per-user purchases are counted in Redis: two limiters (two nodes) share one budget', async (t) => {
  const config = loadConfig({});
  const redis = createRedis(config);
  await connectRedis(redis);
  t.teardown(() => redis.quit());
  const keyPrefix = `${uniq('rl')}:`;
  const limits = limitsOf({ RATE_LIMIT_USER_PURCHASES_PER_S: '10' });
  const nodes = [new RateLimits({ limits, redis, keyPrefix }), new RateLimits({ limits, redis, keyPrefix })];
  const user = uniq('u');
  const started = Date.now();
  const outcomes = await Promise.all(
    Array.from({ length: 30 }, (_, i) =>
      nodes[i % 2]!.admitPurchase(user).then(
        (headers) => ({ ok: true, headers }),
        (err: unknown) => ({ ok: false, err }),
      ),
    ),
  );
  const elapsed = Date.now() - started;
  const admitted = outcomes.filter((o) => o.ok).length;
  // Windows are one second from the key's first hit: 30 calls within it admit exactly 10 between them.
  if (elapsed < 900) t.equal(admitted, 10, 'exactly the limit, across both limiters');
  else t.ok(admitted <= 20, `at most two windows' worth (${admitted}, the calls took ${elapsed} ms)`);
  const refused = outcomes.find((o) => !o.ok) as { err: AppError };
  t.match(refused.err, { code: 'RATE_LIMITED', status: 429, retryable: true });
  t.ok(refused.err.retryAfterSeconds! >= 1, 'Retry-After at least 1 s');
  t.match(refused.err.headers, { 'RateLimit-Policy': '"user";q=10;w=1', RateLimit: /^"user";r=0;t=1$/ });
  const ok = outcomes.find((o) => o.ok) as { headers: Record<string, string> };
  t.match(ok.headers, { 'RateLimit-Policy': '"user";q=10;w=1', RateLimit: /^"user";r=\d;t=1$/ });
  t.equal(Number(await redis.get(`${keyPrefix}rl:user:${user}`)), 30, 'one counter in Redis saw all 30');
});

t.test('the purchases of one event-loop turn are counted in one Redis call', async (t) => {
  const redis = createRedis(loadConfig({}));
  await connectRedis(redis);
  t.teardown(() => redis.quit());
  const keyPrefix = `${uniq('rl')}:`;
  const node = new RateLimits({
    limits: limitsOf({ RATE_LIMIT_USER_PURCHASES_PER_S: '4' }),
    redis,
    keyPrefix,
  });
  const script = redis as unknown as { countHits: (...args: unknown[]) => Promise<number[]> };
  const original = script.countHits.bind(redis);
  let calls = 0;
  script.countHits = (...args) => {
    calls += 1;
    return original(...args);
  };
  const users = [uniq('a'), uniq('b'), uniq('c')];
  const outcomes = await Promise.allSettled(
    Array.from({ length: 30 }, (_, i) => node.admitPurchase(users[i % 3]!)),
  );
  t.equal(calls, 1, 'one script call for 30 purchases of 3 users');
  for (const [u, user] of users.entries()) {
    const mine = outcomes.filter((_, i) => i % 3 === u);
    t.equal(mine.filter((o) => o.status === 'fulfilled').length, 4, `${user}: the first 4 admitted`);
    t.ok(
      mine.slice(0, 4).every((o) => o.status === 'fulfilled'),
      'in arrival order: the first ones are admitted',
    );
    t.equal(Number(await redis.get(`${keyPrefix}rl:user:${user}`)), 10, `${user}: 10 hits counted`);
  }
});

t.test('Redis down: the in-memory insurance limiter allows each node its share', async (t) => {
  // A real client that cannot connect (nothing listens on port 1): every command fails at once.
  const dead = createRedis(loadConfig({ REDIS_URL: 'redis://127.0.0.1:1' }), { lazyConnect: false });
  dead.on('error', () => undefined);
  t.teardown(() => dead.disconnect());
  let insured = 0;
  const limits = limitsOf({ RATE_LIMIT_USER_PURCHASES_PER_S: '10', RATE_LIMIT_NODES: '2' });
  const node = new RateLimits({ limits, redis: dead, keyPrefix: 'x:', onInsurance: () => (insured += 1) });
  const outcomes = await Promise.allSettled(Array.from({ length: 12 }, () => node.admitPurchase('alice')));
  const admitted = outcomes.filter((o) => o.status === 'fulfilled').length;
  t.ok(admitted === 5 || admitted === 10, `10 / 2 nodes = 5 per window on this node (${admitted})`);
  t.equal(insured, 12, 'every check went to the insurance limiter');
  const refused = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
  t.match(refused.reason, { code: 'RATE_LIMITED' });
});

t.test('Redis silent (a cut): after one late answer, purchases skip Redis for a second', async (t) => {
  // A connected client whose counting script is never answered, as on a connection cut silently.
  const redis = createRedis(loadConfig({}));
  await connectRedis(redis);
  t.teardown(() => redis.quit());
  new RedisWindowCounters(redis); // defines the script on the client, to be replaced below
  const script = redis as unknown as { countHits: (...args: unknown[]) => Promise<number[]> };
  let calls = 0;
  script.countHits = () => {
    calls += 1;
    return new Promise(() => undefined); // never answered
  };
  let insured = 0;
  const limits = limitsOf({ RATE_LIMIT_USER_PURCHASES_PER_S: '100', RATE_LIMIT_NODES: '1' });
  const node = new RateLimits({ limits, redis, keyPrefix: 'x:', onInsurance: () => (insured += 1) });
  await node.admitPurchase('alice');
  t.equal(calls, 1, 'the first batch asked Redis');
  for (let i = 0; i < 5; i += 1) await node.admitPurchase('alice');
  t.equal(calls, 1, 'the next five batches, within the second, did not');
  t.equal(insured, 6, 'the insurance limiter decided all six');
  await new Promise((r) => setTimeout(r, 1_050));
  await node.admitPurchase('alice');
  t.equal(calls, 2, 'a second later one batch asks Redis again');
});

t.test('per-IP limit is synchronous and per node; 0 turns a limit off', async (t) => {
  const redis = createRedis(loadConfig({}));
  t.teardown(() => redis.disconnect());
  const node = new RateLimits({ limits: limitsOf({ RATE_LIMIT_IP_PER_S: '2' }), redis, keyPrefix: 'x:' });
  const now = Date.now();
  if (now % 1000 > 900) await new Promise((r) => setTimeout(r, 1000 - (now % 1000)));
  node.admitIp('192.0.2.1');
  node.admitIp('192.0.2.1');
  t.throws(() => node.admitIp('192.0.2.1'), {
    code: 'RATE_LIMITED',
    headers: { 'RateLimit-Policy': '"ip";q=2;w=1' },
  });
  t.doesNotThrow(() => node.admitIp('192.0.2.2'), 'another IP has its own budget');
  const off = new RateLimits({
    limits: limitsOf({ RATE_LIMIT_IP_PER_S: '0', RATE_LIMIT_USER_PURCHASES_PER_S: '0' }),
    redis,
    keyPrefix: 'x:',
  });
  for (let i = 0; i < 100; i += 1) off.admitIp('192.0.2.1');
  t.same(await off.admitPurchase('alice'), {}, 'no limit, no headers, no Redis call');
});
