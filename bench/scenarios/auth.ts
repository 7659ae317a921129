/**
 * Auth: what security costs. CPU-µs per full and cached token verify, per-IP and per-user (Redis) limit
 * check, in this process; then hot-sku's closed loop with security ON vs limits OFF, phases ON OFF OFF ON
 * (ABBA: a drift of the machine linear in time hits both alike; `--param first=off`: OFF ON ON OFF), each on
 * a node of its own: purchases/s of both and their ratio.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { JWKS_FILE } from '../../scripts/stack/auth-key.js';
import { RateLimits } from '../../src/auth/rate-limits.js';
import { TokenVerifier } from '../../src/auth/tokens.js';
import { loadConfig } from '../../src/config.js';
import type { Redis } from '../../src/storage/redis.js';
import { benchUser, benchUsers } from '../load.js';
import { BENCH_RATE_LIMITS, deleteRedisKeys } from '../cluster.js';
import { cpuShares, cpuSnapshot, stackPids } from '../cpu.js';
import { round, roundOrNull, sumDelta } from '../measure.js';
import { inParallel } from '../open-loop.js';
import { fixed, num } from '../report.js';
import { compare, defineScenario, keyed, stepTable, type Run } from '../scenario.js';
import { commandTotal, connectStoreRedis, redisCommandCalls, waitForSagas } from '../stores.js';

type Mode = 'on' | 'off';
const STOCK = 10_000_000;
/** ON within 10% of OFF. */
const TARGET_RATIO = 0.9;
const LIMITS_OFF = { RATE_LIMIT_IP_PER_S: '0', RATE_LIMIT_USER_PURCHASES_PER_S: '0' } as const;
/** (d)'s calls in flight; each loop's iterations are those at `--param micro-scale=1`. */
const IN_FLIGHT = 100;

/**
 * `n` calls of `fn` after `n / 10` unmeasured, `inFlight` at a time (0: one synchronous loop), µs per call:
 * this process's CPU, the loop's wall time ÷ calls, the mean call latency; with `redis`, the Redis server's
 * CPU (/proc), its EVALSHAs and all its commands (INFO commandstats, server-wide).
 */
async function time(n: number, fn: (i: number) => unknown, inFlight: number, redis?: Redis) {
  let latencySum = 0;
  const call = async (i: number) => {
    const t = performance.now();
    await fn(i);
    latencySum += (performance.now() - t) * 1000;
  };
  const loop = async (count: number) => {
    if (inFlight === 0) for (let i = 0; i < count; i += 1) fn(i);
    else await inParallel(count, inFlight, call);
  };
  await loop(Math.ceil(n / 10));
  latencySum = 0;
  const pids = { redis: redis && stackPids()['redis'] };
  const calls0 = redis && (await redisCommandCalls(redis));
  const [before, cpu0, t0] = [cpuSnapshot(pids), process.cpuUsage(), performance.now()];
  await loop(n);
  const wallUs = (performance.now() - t0) * 1000;
  const cpu = process.cpuUsage(cpu0);
  const shares = cpuShares(before, cpuSnapshot(pids));
  const calls = redis && (await redisCommandCalls(redis));
  const redisCores = shares.processCores['redis'];
  return {
    n,
    cpuUs: (cpu.user + cpu.system) / n,
    wallUs: wallUs / n,
    latencyUs: latencySum / n,
    redisCpuUs: redisCores === undefined ? undefined : (redisCores * shares.wallS * 1e6) / n,
    evalsha: ((calls?.['evalsha'] ?? 0) - (calls0?.['evalsha'] ?? 0)) / n,
    redisCommands: (commandTotal(calls ?? {}) - commandTotal(calls0 ?? {})) / n,
  };
}

/** The four in-process measurements, before any node starts (a quiet box). */
async function microCosts(run: Run, scale: number) {
  const { options, io, tokens } = run;
  const count = (n: number) => Math.max(10, Math.round(n * scale));
  const bearers = benchUsers().map((u) => tokens.bearer(u));
  const bearer = (i: number) => bearers[i % bearers.length];
  // The bench signs with the local stack key: verify against its JWKS file, whatever AUTH_JWKS_URL says.
  const config = loadConfig({ ...process.env, ...options.serviceEnv });
  const auth = { ...config.auth, jwksUrl: undefined, jwksFile: JWKS_FILE };
  /** `time(...args)`, its figures said as `what` (CPU-µs to `digits` decimals). */
  const timed = async (what: string, digits: number, ...args: Parameters<typeof time>) => {
    const c = await time(...args);
    io.progress(
      `bench: ${what}: ${c.cpuUs.toFixed(digits)} µs CPU, ${c.wallUs.toFixed(1)} µs wall per call (${num(c.n)} calls)`,
    );
    return c;
  };

  // (a) Full verify: no cache, so every call checks the signature and the claims (as a fresh token would).
  const uncached = new TokenVerifier({ auth: { ...auth, tokenCacheSize: 0 } });
  const verify = (i: number) => uncached.authenticate(bearer(i));
  const fullVerify = await timed('(a) full token verify', 1, count(5_000), verify, 1);

  // (b) Cached verify: every token verified once first; then authenticate answers from the map, synchronously.
  const cached = new TokenVerifier({ auth });
  for (const b of bearers) await cached.authenticate(b);
  const fromCache = (i: number) => {
    if (cached.authenticate(bearer(i)) instanceof Promise)
      throw new Error('bench: a cached token was verified again');
  };
  const cachedVerify = await timed('(b) cached token verify', 3, count(1_000_000), fromCache, 0);

  const redis = await connectStoreRedis();
  io.onCleanup(() => void redis.disconnect());
  const keyPrefix = `bench-auth-${options.runTag}-${process.pid}:`;
  io.onCleanup(() => deleteRedisKeys(keyPrefix));
  const limits = (ip: number, user: number) =>
    new RateLimits({
      limits: { ipRequestsPerSecond: ip, userPurchasesPerSecond: user, nodes: 1, trustedProxies: [] },
      redis,
      keyPrefix,
    });

  // (c) Per-IP limit: every request behind nginx counts against 127.0.0.1 on its node.
  const ipLimits = limits(Number(BENCH_RATE_LIMITS.RATE_LIMIT_IP_PER_S), 0);
  const admitIp = () => ipLimits.admitIp('127.0.0.1');
  const ipLimit = await timed('(c) per-IP limit check', 3, count(1_000_000), admitIp, 0);

  // (d) Per-user limit: one EVALSHA per purchase at the stack's Redis, the bench users in turn.
  const userLimits = limits(0, Number(BENCH_RATE_LIMITS.RATE_LIMIT_USER_PURCHASES_PER_S));
  const admit = (i: number) => userLimits.admitPurchase(benchUser(i));
  const userLimit = await timed('(d) per-user limit, sequential', 1, count(10_000), admit, 1, redis);
  const concurrent = `(d) per-user limit, ${IN_FLIGHT} in flight`;
  const userLimitConcurrent = await timed(concurrent, 1, count(40_000), admit, IN_FLIGHT, redis);
  return { fullVerify, cachedVerify, ipLimit, userLimit, userLimitConcurrent };
}

async function run(run: Run) {
  const { options, io } = run;
  const scale = run.param('micro-scale', 1, 0.001, 100);
  const first = run.choice('first', ['on', 'off']);
  const { tokens, background } = await run.setUp({});
  const { busy = 0, stealCores = 0 } = background;
  io.progress(
    `bench: other processes busy before the measurements: ${Math.round(busy * 100)}%, the host took ${stealCores.toFixed(2)} cores`,
  );
  const micro = await microCosts(run, scale);

  const order: readonly Mode[] = first === 'on' ? ['on', 'off', 'off', 'on'] : ['off', 'on', 'on', 'off'];
  // What each node really runs with: --service-env applies to both, over the bench's and the off node's.
  const limitsOf = (mode: Mode) => {
    const env = { ...BENCH_RATE_LIMITS, ...(mode === 'off' ? LIMITS_OFF : {}), ...options.serviceEnv };
    return `RATE_LIMIT_IP_PER_S=${env.RATE_LIMIT_IP_PER_S}, RATE_LIMIT_USER_PURCHASES_PER_S=${env.RATE_LIMIT_USER_PURCHASES_PER_S}`;
  };
  const products = {} as Record<Mode, number>;
  const seen = new Map<Mode, number>();
  const steps = [];
  // One node at a time, started afresh for each phase: it alone holds the database's outbox relay and the
  // projection's partitions, so no mode carries the other's event work (with both nodes up, the node
  // started first does: an A/A run gave 0.84-0.93 from the start order alone).
  for (const [i, mode] of order.entries())
    steps.push(
      await run.scoped(`-${i}`, `the ${mode} node`, async (node) => {
        const env = mode === 'off' ? LIMITS_OFF : {};
        await node.setUp({
          cluster: { nodes: 1, nginx: false, env },
          connectionsTimeoutMs: 60_000,
          backgroundMs: 0,
        });
        products[mode] ??= await run.product(mode, STOCK, 'actor', node);
        // Its leases and the projection's consumer group settle before the warm-up.
        await sleep(2_000);
        const [step] = await node.alternate([mode], () => run.purchases(products[mode]), seen);
        // Its sagas end on this node (unmeasured), then it stops and the next phase's node starts.
        await waitForSagas([products[mode]], 45_000);
        return step!;
      }),
    );
  await run.check();
  const { A: on, B: off, ratio, ratioUndisturbed, keys } = compare(steps, ['on', 'off'], run.restarted());
  const throttled = [on, off]
    .flatMap((m) => Object.entries(m.answers))
    .reduce((sum, [label, n]) => sum + (label.startsWith('429') ? n : 0), 0);
  const perPurchaseUs = (m: typeof on) => (m.perS > 0 ? round((m.serviceCores * 1e6) / m.perS, 0) : null);
  const onPhases = steps.filter((s) => s.path === 'on');
  const verified = sumDelta(onPhases, 'auth_tokens_total{result="verified"}');
  const cachedHits = sumDelta(onPhases, 'auth_tokens_total{result="cached"}');
  const limited =
    sumDelta(steps, 'rate_limited_requests_total{limit="ip"}') +
    sumDelta(steps, 'rate_limited_requests_total{limit="user"}');
  const insurance = sumDelta(steps, 'rate_limit_insurance_total');
  const { fullVerify, cachedVerify, ipLimit, userLimit, userLimitConcurrent } = micro;
  // What the service pays per purchase for security, from (b)-(d): a cached verify, an IP check, an EVALSHA.
  const estimateUs =
    cachedVerify.cpuUs + ipLimit.cpuUs + userLimitConcurrent.cpuUs + (userLimitConcurrent.redisCpuUs ?? 0);
  const [onSvc, offSvc] = [perPurchaseUs(on), perPurchaseUs(off)];
  const notes = [
    `(a) full token verify (EdDSA signature and claims, TokenVerifier with cache size 0): ${fixed(fullVerify.cpuUs)} µs CPU per call (${num(fullVerify.n)} calls, in this process)`,
    `(b) cached token verify (TokenVerifier.authenticate of a token already verified): ${fixed(cachedVerify.cpuUs, 3)} µs CPU per call (${num(cachedVerify.n)} calls)`,
    `(c) per-IP limit check (RateLimits.admitIp, one IP as behind nginx): ${fixed(ipLimit.cpuUs, 3)} µs CPU per call (${num(ipLimit.n)} calls)`,
    `(d) per-user limit check (RateLimits.admitPurchase, EVALSHA at the stack's Redis): sequential ${fixed(userLimit.cpuUs)} µs CPU, ${fixed(userLimit.wallUs)} µs wall per call, Redis ${fixed(userLimit.redisCpuUs)} µs CPU (${num(userLimit.n)} calls); ` +
      `${IN_FLIGHT} in flight ${fixed(userLimitConcurrent.cpuUs)} µs CPU, ${fixed(userLimitConcurrent.wallUs)} µs wall per call (each call ${fixed(userLimitConcurrent.latencyUs, 0)} µs), Redis ${fixed(userLimitConcurrent.redisCpuUs)} µs CPU (${num(userLimitConcurrent.n)} calls); ${userLimitConcurrent.evalsha.toFixed(2)} EVALSHA per call, running ${userLimitConcurrent.redisCommands.toFixed(2)} Redis commands with the script's own (server-wide counts)`,
    `estimated security cost per purchase, (b) + (c) + (d at ${IN_FLIGHT} in flight, bench + Redis CPU): ${fixed(estimateUs)} µs CPU; one full verify more per user and node on its first request (${fixed(fullVerify.cpuUs)} µs)`,
    `mode: CLOSED LOOP, hot-sku's: one actor product per mode, ${options.connections} purchases in flight, phases ${order.join(' ')} of ${options.durationS / 2} s after 1 s warm-up each, each on a node of its own started for the phase (alone on the box); ` +
      `ON = node with ${limitsOf('on')}; OFF = node with ${limitsOf('off')}. Both verify the bearer token of each request (cached after a user's first; ${num(tokens.users)} users).`,
    `purchases/s: ON ${num(on.perS)}, OFF ${num(off.perS)}; ratio ON/OFF ${ratio === null ? 'n/a' : ratio.toFixed(3)} (target ≥ ${TARGET_RATIO}: ${ratio !== null && ratio >= TARGET_RATIO ? 'MET' : 'NOT MET'}); from undisturbed phases only ${ratioUndisturbed?.toFixed(3) ?? 'n/a'}`,
    `service CPU per confirmed purchase: ON ${onSvc ?? '-'} µs vs OFF ${offSvc ?? '-'} µs`,
    `ON phases: ${num(verified)} full token verifications, ${num(cachedHits)} answered from the cache; throttled: ${num(limited)} (429 answers ${num(throttled)}), insurance limiter used ${num(insurance)} times`,
    `answers ON: ${JSON.stringify(on.answers)}  OFF: ${JSON.stringify(off.answers)}`,
    throttled > 0 &&
      `FAIL: ${throttled} purchases answered 429: the bench's limits throttled its own load, the figures are void`,
  ];

  const redisKeys = (prefix: string, c: typeof userLimit) =>
    keyed(prefix, {
      cpu_us: round(c.cpuUs, 2),
      wall_us: round(c.wallUs, 2),
      latency_us: round(c.latencyUs, 1),
      redis_cpu_us: roundOrNull(c.redisCpuUs, 2),
    });
  return run.report({
    // The bench must never throttle itself (and the checks).
    ok: throttled === 0,
    steps,
    shared: 'sharing them with the node, MariaDB, Redis, Kafka and the provider',
    summary: {
      mode: 'closed-loop',
      full_verify_cpu_us: round(fullVerify.cpuUs, 3),
      cached_verify_cpu_us: round(cachedVerify.cpuUs, 3),
      ip_limit_cpu_us: round(ipLimit.cpuUs, 3),
      ...redisKeys('user_limit', userLimit),
      ...redisKeys(`user_limit_c${IN_FLIGHT}`, userLimitConcurrent),
      user_limit_evalsha_per_call: round(userLimitConcurrent.evalsha, 2),
      user_limit_redis_commands_per_call: round(userLimitConcurrent.redisCommands, 2),
      security_cpu_us_per_purchase_estimate: round(estimateUs, 1),
      ...keys,
      ratio: roundOrNull(ratio, 3),
      ratio_undisturbed: roundOrNull(ratioUndisturbed, 3),
      target_ratio: TARGET_RATIO,
      target_met: ratio !== null && ratio >= TARGET_RATIO,
      first,
      on_limits: limitsOf('on'),
      off_limits: limitsOf('off'),
      on_service_cpu_us_per_purchase: onSvc,
      off_service_cpu_us_per_purchase: offSvc,
      tokens_verified: verified,
      tokens_cached: cachedHits,
      rate_limited: limited,
      users: tokens.users,
      micro_scale: scale,
      connections: options.connections,
      duration_s: options.durationS,
    },
    table: stepTable('phase', steps, [['sent/s', (s) => s.offered]], []),
    notes,
    details: { micro, products },
  });
}

export default defineScenario({
  name: 'auth',
  describe:
    'cost of security: CPU-µs per full/cached token verify, per-IP and per-user (Redis) limit check, in-process; then hot-sku closed-loop purchases/s with security on vs limits off, same run',
  params: ['micro-scale', 'first'],
  ownNodes: 'compares two nodes it starts (limits on and off)',
  defaults: { durationS: 20, connections: 200 },
  modes: ['closed'],
  run,
});
