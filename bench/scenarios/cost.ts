/**
 * Cost per 1,000 confirmed purchases, actor vs baseline at the same offered rate: MySQL commits, fsyncs and
 * row-lock waits, Redis commands, Kafka produce requests, app CPU-ms (idle background subtracted); app CPU
 * per purchase at saturation (closed loop) and the idle node's own CPU.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from '../../src/storage/redis.js';
import { cpuShares, cpuSnapshot } from '../cpu.js';
import { monotonicUs, type Strategy } from '../load.js';
import { round } from '../measure.js';
import { num, tableOf } from '../report.js';
import { defineScenario, keyed, type OpenStep, type Run } from '../scenario.js';
import {
  commandTotal,
  connectStoreRedis,
  redisCommandCalls,
  serverStatus,
  waitNone,
  query,
} from '../stores.js';

const PATHS: readonly Strategy[] = ['actor', 'baseline'];
const STOCK = 1_000_000;
/** Saturation phases' products: more than a closed loop of either path sells in a phase. */
const SATURATION_STOCK = 10_000_000;
/** Cost's `--param`s: default, min, max. */
const PARAMS = {
  // Purchases in flight in the saturation phases (0: none).
  saturation: [200, 0, 20_000],
  // Warm-up per path at the offered rate before anything is measured, s.
  'warm-up': [10, 0, 600],
  // Before the idle interval: the warm-ups' trailing work ends (2 s read ~2.7%, a node idle longer 0.6-1.0%).
  settle: [15, 0, 600],
  // The idle interval: one period of the slowest periodic job (the consistency monitor, every 30 s).
  idle: [30, 1, 3_600],
} as const;
/** Issue 12's targets: app CPU per confirmed purchase at 100/s and at saturation (µs), idle node (% of a core). */
const TARGETS = { cpuUsPerPurchase: 1_000, cpuUsPerPurchaseSaturated: 200, idleNodeCpuPct: 1 } as const;
/** The MySQL figures: summary key, the table's label, the `SHOW GLOBAL STATUS` counter. */
const MYSQL = [
  ['mysql_commits', 'MySQL commits (Com_commit)', 'Com_commit'],
  ['mysql_binlog_group_commits', 'MySQL binlog group commits', 'Binlog_group_commits'],
  ['innodb_log_fsyncs', 'InnoDB log fsyncs', 'Innodb_os_log_fsyncs'],
  ['innodb_data_fsyncs', 'InnoDB data fsyncs', 'Innodb_data_fsyncs'],
  ['row_lock_waits', 'row-lock waits', 'Innodb_row_lock_waits'],
] as const;

type Counters = Readonly<Record<'mysql' | 'redis', Record<string, number>>>;

/** The MySQL primary's and the Redis server's counters now; with `before`, their change since. */
async function counters(redis: Redis, before?: Counters): Promise<Counters> {
  const now = { mysql: await serverStatus(MYSQL.map((m) => m[2])), redis: await redisCommandCalls(redis) };
  const diff = (a: Record<string, number> = {}, b: Record<string, number>) =>
    Object.fromEntries(Object.keys(b).map((k) => [k, (b[k] ?? 0) - (a[k] ?? 0)]));
  return { mysql: diff(before?.mysql, now.mysql), redis: diff(before?.redis, now.redis) };
}

type Load = Parameters<Run['step']>[2];
/** A measured phase with the servers' counter deltas and its confirmed purchases. */
type Phase = OpenStep & {
  readonly path: Strategy;
  readonly mysql: Record<string, number>;
  readonly redis: Record<string, number>;
  readonly confirmed: number;
};

/** App CPU-µs per fresh 201 of a phase: the node's `process_cpu_seconds_total` delta ÷ confirmed purchases. */
const cpuUsPerPurchase = (p: Phase | undefined): number =>
  p !== undefined && p.confirmed > 0 ? round((p.serviceCores * p.cpu.wallS * 1e6) / p.confirmed, 1) : NaN;

const verdict = (value: number | null, target: number) =>
  value === null || !Number.isFinite(value) ? 'unknown' : value <= target ? 'target met' : 'ABOVE target';

export default defineScenario({
  name: 'cost',
  describe:
    'per 1,000 confirmed purchases, actor vs baseline at the same offered rate: MySQL commits/fsyncs/row-lock waits, Redis commands, Kafka produce requests, app CPU-ms; app CPU per purchase at saturation; idle node CPU',
  params: Object.keys(PARAMS),
  defaults: { durationS: 10, connections: 200, rate: 100 },
  run,
});

async function run(run: Run) {
  const { options, io } = run;
  const rate = options.rate ?? 100;
  const [inFlight, warmS, settleS, idleS] = Object.entries(PARAMS).map(([key, [fallback, min, max]]) =>
    run.param(key, fallback, min, max),
  ) as [number, number, number, number];
  const cluster = { nodes: 1, paymentLatencyMs: 5 };
  await run.setUp({ cluster, connectionsTimeoutMs: 60_000, backgroundMs: 1_000 });
  const redis = await connectStoreRedis();
  io.onCleanup(() => void redis.disconnect());
  const products = await run.pathProducts(STOCK);
  const saturated = inFlight > 0 ? await run.pathProducts(SATURATION_STOCK, ' saturated') : undefined;
  // The JIT needs a few thousand purchases: at 100/s the first 10 s cost ~25% more CPU per purchase than
  // the next 50 (5 December); the figure is the steady state's.
  for (const path of PATHS) await run.openLoop(`warm-up ${path}`, rate, warmS, run.purchases(products[path]));

  // The servers' background over an idle interval (subtracted per phase, by length) and the idle node's CPU.
  const node = { node: run.cluster.nodes[0]?.pid };
  await sleep(settleS * 1000);
  const [at, start, cpuBefore] = [performance.now(), monotonicUs(), cpuSnapshot(node)];
  const countersBefore = await counters(redis);
  io.progress(`bench: ${idleS} s idle, measuring the servers' background and the idle node`);
  await sleep(idleS * 1000);
  const idle = {
    s: (performance.now() - at) / 1000,
    ...(await counters(redis, countersBefore)),
    nodeCores: cpuShares(cpuBefore, cpuSnapshot(node)).processCores['node'],
    monotonicUs: { start, end: monotonicUs() },
  };
  // What one network interaction costs a process on this machine (what the low-rate figure is made of).
  const ioCost = run.ioCost!;
  /** A measured phase of `path` on `productId` with the servers' counters around it. */
  const phase = async (path: Strategy, label: string, load: Load, productId: number) => {
    const created = run.ledger.tally(productId).created;
    const before = await counters(redis);
    const step = await run.step(path, label, load, run.purchases(productId));
    const deltas = await counters(redis, before);
    await sleep(1_000);
    return { ...step, ...deltas, confirmed: run.ledger.tally(productId).created - created };
  };
  const phases: Phase[] = [];
  const saturatedPhases: Phase[] = [];
  for (const p of PATHS) phases.push(await phase(p, `${p} @ ${num(rate)}/s`, rate, products[p]));
  // Saturation: a closed loop of `inFlight` purchases per path, on fresh products (the outbox figures stay apart).
  for (const p of saturated === undefined ? [] : PATHS)
    saturatedPhases.push(
      await phase(p, `${p} saturated c=${inFlight}`, { concurrency: inFlight }, saturated![p]),
    );
  await run.check({ settleMs: 0 });
  // Kafka produce requests: each relay send stamps its rows with one sent_at; wait until every row is sent.
  const produce: Record<string, { sends: number; rows: number }> = {};
  for (const path of PATHS) {
    const key = [String(products[path])];
    await waitNone('SELECT COUNT(*) AS n FROM outbox WHERE event_key = ? AND sent_at IS NULL', key, 30_000);
    const sql = 'SELECT COUNT(*) AS n, COUNT(DISTINCT sent_at) AS sends FROM outbox WHERE event_key = ?';
    const [r] = await query(sql, key);
    produce[path] = { sends: Number(r!['sends']), rows: Number(r!['n']) };
  }

  /** A server counter's delta over the phase minus the idle background scaled to the phase's length. */
  const net = (p: Phase, n: number | undefined, idleN: number) =>
    n === undefined ? undefined : Math.max(0, n - (idleN * p.cpu.wallS) / idle.s);
  /** A table row and summary key: `get` of each path's phase among `list`, per 1,000 confirmed purchases
   * unless `per` says otherwise. */
  const metric = (
    key: string,
    label: string,
    get: (p: Phase) => number | undefined,
    list = phases,
    per = (n: number, p: Phase) => (p.confirmed > 0 ? round((n / p.confirmed) * 1000, 1) : NaN),
  ) => {
    const [actor, baseline] = PATHS.map((path) => {
      const p = list.find((s) => s.path === path);
      const n = p && get(p);
      return n === undefined ? NaN : per(n, p!);
    }) as [number, number];
    return { key, label, actor, baseline, ratio: actor > 0 ? round(baseline / actor, 1) : NaN };
  };
  const metrics = [
    ...MYSQL.map(([key, label, c]) => metric(key, label, (p) => net(p, p.mysql[c], idle.mysql[c] ?? 0))),
    metric('redis_commands', 'Redis commands', (p) =>
      net(p, commandTotal(p.redis), commandTotal(idle.redis)),
    ),
    metric('kafka_produce_requests', 'Kafka produce requests', (p) => produce[p.path]?.sends ?? 0),
    metric('outbox_events', 'outbox events', (p) => produce[p.path]?.rows ?? 0),
    metric('app_cpu_ms', 'app CPU-ms', (p) => p.serviceCores * p.cpu.wallS * 1000),
  ];
  const atSaturation = (label: string, get: (p: Phase) => number) =>
    metric('', label, get, saturatedPhases, (n) => n);
  const saturatedRows = [
    atSaturation(`app CPU-ms at saturation (c=${inFlight})`, cpuUsPerPurchase),
    atSaturation('confirmed/s at saturation (not per 1,000)', (p) => round(p.result.okPerS, 0)),
  ].filter(() => saturatedPhases.length > 0);
  const entries = (list: readonly Phase[], keys: (p: Phase) => Record<string, unknown>) =>
    Object.assign({}, ...list.map((p) => keyed(p.path, keys(p)))) as Record<string, unknown>;
  const idlePct = idle.nodeCores === undefined ? null : round(idle.nodeCores * 100, 2);
  const actorUs = cpuUsPerPurchase(phases[0]);
  const actorSatUs = saturatedPhases[0] === undefined ? null : cpuUsPerPurchase(saturatedPhases[0]);
  const idleShareUs = idle.nodeCores === undefined ? undefined : (idle.nodeCores * 1e6) / rate;
  const top = (calls: Record<string, number>) => {
    const sorted = Object.entries(calls).sort((a, b) => b[1] - a[1]);
    return JSON.stringify(Object.fromEntries(sorted.slice(0, 6)));
  };

  return run.report({
    steps: [...phases, ...saturatedPhases],
    summary: {
      mode: 'open-loop',
      unit: 'per 1,000 confirmed purchases',
      offered_per_s: rate,
      ...Object.fromEntries(metrics.flatMap((m) => PATHS.map((path) => [`${path}_${m.key}`, m[path]]))),
      // App CPU per confirmed purchase at the offered rate and at saturation, idle node CPU: issue 12's targets.
      ...entries(phases, (p) => ({
        confirmed: p.confirmed,
        p99_ms: p.p99,
        cpu_us_per_purchase: cpuUsPerPurchase(p),
      })),
      ...entries(saturatedPhases, (p) => ({
        cpu_us_per_purchase_saturated: cpuUsPerPurchase(p),
        saturated_per_s: round(p.result.okPerS, 0),
        saturated_p99_ms: p.p99,
        saturated_errors: p.result.errors,
      })),
      saturation_in_flight: inFlight,
      idle_node_cpu_pct: idlePct,
      idle_s: round(idle.s, 1),
      ...keyed('target', {
        cpu_us_per_purchase: TARGETS.cpuUsPerPurchase,
        cpu_us_per_purchase_saturated: TARGETS.cpuUsPerPurchaseSaturated,
        idle_node_cpu_pct: TARGETS.idleNodeCpuPct,
      }),
      other_cores_max: round(Math.max(...phases.map((p) => p.otherCores ?? 0)), 2),
    },
    table: tableOf(
      [
        ['per 1,000 confirmed', (m) => m.label],
        ['actor', (m) => m.actor],
        ['baseline', (m) => m.baseline],
        ['baseline ÷ actor', (m) => (Number.isFinite(m.ratio) ? `${m.ratio}x` : '-')],
      ],
      [...metrics, ...saturatedRows],
    ),
    notes: [
      `mode: OPEN LOOP, ${num(rate)}/s offered to each path for ${options.durationS} s (actor, then baseline), one node, provider 5 ms; confirmed: actor ${num(phases[0]!.confirmed)}, baseline ${num(phases[1]!.confirmed)}.`,
      `MySQL and Redis figures: server-wide deltas over each phase MINUS the same counters over ${round(idle.s, 1)} s idle before the load (scaled to the phase length): a steady background cancels, one that changes between the idle interval and a phase does not (tests, other nodes). NaN = counter absent on this server. Kafka produce requests = distinct sent_at of the product's outbox rows (one per relay sendBatch, which may also carry other products' rows).`,
      ...phases.map(
        (p) =>
          `${p.path}: other processes took ${(p.otherCores ?? NaN).toFixed(2)} cores during the phase; top Redis commands ${top(p.redis)}`,
      ),
      `app CPU per confirmed purchase (actor): ${num(actorUs)} µs at ${num(rate)}/s (target ≤ ${num(TARGETS.cpuUsPerPurchase)} µs: ${verdict(actorUs, TARGETS.cpuUsPerPurchase)})${idleShareUs === undefined ? '' : `, of which the idle node's own background is ~${num(idleShareUs)} µs at this rate`}; ` +
        (saturatedPhases.length === 0
          ? 'saturation not measured (--param saturation=0).'
          : `${num(actorSatUs ?? NaN)} µs at saturation (closed loop, ${num(inFlight)} in flight, ${options.durationS} s per path, fresh products; target ≤ ${TARGETS.cpuUsPerPurchaseSaturated} µs: ${verdict(actorSatUs, TARGETS.cpuUsPerPurchaseSaturated)}).`),
      `the actor's ${num(actorUs)} µs per purchase at ${num(rate)}/s would pay for ~${num(Math.round(actorUs / ioCost.afterSleepUs))} loopback round trips after a sleep (this machine's price below, ${ioCost.roundTrips} probed); a purchase makes about 5 (its reply, the rate-limit count, two commits, the payment), and the rest is JavaScript run cold between preemptions (bench/RESULTS.md, 5 December).`,
      ...saturatedPhases.map(
        (p) =>
          `${p.path} saturated: ${num(p.result.okPerS)} confirmed/s, p50 ${p.p50} ms, p99 ${p.p99} ms, node ${p.serviceCores.toFixed(2)} cores, other processes ${(p.otherCores ?? NaN).toFixed(2)} cores; answers ${JSON.stringify(p.result.ops.get('purchase')?.statuses ?? {})}`,
      ),
      `idle node: ${idlePct === null ? 'unknown (no pid: --url)' : `${idlePct}% of one core`} over ${round(idle.s, 1)} s with no load (the app node process alone, /proc; target ≤ ${TARGETS.idleNodeCpuPct}%: ${verdict(idlePct, TARGETS.idleNodeCpuPct)}).`,
    ],
    // details.steps: each phase's label and monotonicUs (open-loop phases first, then the saturated ones) for
    // `bench/profile-summary.ts --phase "actor @"` (or "actor saturated"), its counters and confirmed purchases.
    details: { idle, produce, metrics },
  });
}
