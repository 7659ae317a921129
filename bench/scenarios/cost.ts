/**
 * Cost per 1,000 confirmed purchases, actor vs baseline, at the same offered rate (open loop, one hot
 * product each, one phase per path): MySQL commits and log fsyncs and row-lock waits (`SHOW GLOBAL STATUS`
 * deltas), Redis commands (`INFO commandstats` deltas), Kafka produce requests (the relay's sends that
 * carried the product's outbox rows), and the app node's CPU-ms. Server counters are global: other clients
 * of the same MariaDB/Redis add to them, so the phases run back to back and the background is reported.
 */
import { randomBytes } from 'node:crypto';
import type { RowDataPacket } from 'mysql2/promise';
import { Pool } from 'undici';
import { createProduct, type CreatedProduct, type Strategy } from '../api.js';
import { benchUser, BenchTokens } from '../auth.js';
import { startCluster } from '../cluster.js';
import { ConnectionSet } from '../connections.js';
import { backgroundBusy, stackPids } from '../cpu.js';
import { measurePhase, percentileMs, round } from '../measure.js';
import { runOpenLoop } from '../open-loop.js';
import { PurchaseLedger } from '../purchase-ledger.js';
import { num } from '../report.js';
import { connectStoreRedis } from '../stores.js';
import type { Redis } from '../../src/storage/redis.js';
import type { BenchIO, BenchOptions, ScenarioResult } from '../types.js';
import { connectPrimary, expectedFrom, verifyProducts, waitForSagas } from '../verify.js';

export const name = 'cost';
export const describe =
  'per 1,000 confirmed purchases, actor vs baseline at the same offered rate: MySQL commits/fsyncs/row-lock waits, Redis commands, Kafka produce requests, app CPU-ms';
export const defaults = { durationS: 10, connections: 200, rate: 100 };

const PATHS: readonly Strategy[] = ['actor', 'baseline'];
const STOCK = 1_000_000;
const MYSQL_COUNTERS = [
  'Com_commit',
  'Handler_commit',
  'Binlog_commits',
  'Binlog_group_commits',
  'Innodb_os_log_fsyncs',
  'Innodb_data_fsyncs',
  'Innodb_row_lock_waits',
  'Innodb_row_lock_time',
] as const;

async function mysqlCounters(): Promise<Record<string, number>> {
  const conn = await connectPrimary();
  try {
    const [rows] = await conn.query<RowDataPacket[]>('SHOW GLOBAL STATUS WHERE Variable_name IN (?)', [
      MYSQL_COUNTERS,
    ]);
    return Object.fromEntries(rows.map((r) => [String(r['Variable_name']), Number(r['Value'])]));
  } finally {
    await conn.end();
  }
}

async function redisCommands(redis: Redis): Promise<Record<string, number>> {
  const text = await redis.info('commandstats');
  const calls: Record<string, number> = {};
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[m[1]!] = Number(m[2]);
  return calls;
}

interface Phase {
  readonly path: Strategy;
  readonly measured: Awaited<ReturnType<typeof measurePhase<Awaited<ReturnType<typeof runOpenLoop>>>>>;
  readonly mysql: Record<string, number>;
  readonly redisCalls: Record<string, number>;
  readonly confirmed: number;
}

const diff = (a: Record<string, number>, b: Record<string, number>) =>
  Object.fromEntries(Object.keys(b).map((k) => [k, (b[k] ?? 0) - (a[k] ?? 0)]));

export async function run(options: BenchOptions, io: BenchIO): Promise<ScenarioResult> {
  const rate = options.rate ?? defaults.rate;
  const cluster = await startCluster(options, io, { nodes: 1, paymentLatencyMs: 5 });
  const admin = new Pool(cluster.url, { connections: 2 });
  io.onCleanup(() => admin.close());
  const redis = await connectStoreRedis();
  io.onCleanup(() => void redis.disconnect());
  const tag = `cost${options.runTag}${randomBytes(3).toString('hex')}`;
  const tokens = await BenchTokens.mint(options, io);
  const products = {} as Record<Strategy, CreatedProduct>;
  for (const path of PATHS)
    products[path] = await createProduct(admin, tokens, {
      name: `bench ${tag} ${path}`,
      priceCents: 1999,
      stock: STOCK,
      strategy: path,
    });
  const connections = new ConnectionSet(cluster.url, options.connections, { timeoutMs: 60_000 });
  io.onCleanup(() => connections.close());
  await connections.open('/health');
  const pids = stackPids();
  const background = await backgroundBusy(1_000);
  const ledger = new PurchaseLedger(
    tokens,
    PATHS.map((p) => products[p].id),
  );
  let seq = 0;
  const next = (productId: number) => () => {
    seq += 1;
    return ledger.purchase('purchase', productId, 1, `${tag}-${seq}`, benchUser(seq));
  };
  for (const path of PATHS)
    await runOpenLoop({
      connections,
      rate,
      durationS: 1,
      label: `warm-up ${path}`,
      io,
      next: next(products[path].id),
    });

  // The servers' background (other clients, the relay's polls, lease renewals) over an idle interval,
  // subtracted from each phase in proportion to its length.
  const idleStart = {
    at: performance.now(),
    mysql: await mysqlCounters(),
    redis: await redisCommands(redis),
  };
  io.progress(`bench: ${options.durationS} s idle, measuring the servers' background`);
  await new Promise((resolve) => setTimeout(resolve, options.durationS * 1000));
  const idle = {
    s: (performance.now() - idleStart.at) / 1000,
    mysql: diff(idleStart.mysql, await mysqlCounters()),
    redis: diff(idleStart.redis, await redisCommands(redis)),
  };
  const phases: Phase[] = [];
  for (const path of PATHS) {
    const before = {
      created: ledger.tally(products[path].id).created,
      mysql: await mysqlCounters(),
      redis: await redisCommands(redis),
    };
    const measured = await measurePhase(cluster.metricsUrls, pids, () =>
      runOpenLoop({
        connections,
        rate,
        durationS: options.durationS,
        label: `${path} @ ${num(rate)}/s`,
        io,
        next: next(products[path].id),
      }),
    );
    const mysql = diff(before.mysql, await mysqlCounters());
    const redisCalls = diff(before.redis, await redisCommands(redis));
    const confirmed = ledger.tally(products[path].id).created - before.created;
    phases.push({ path, measured, mysql, redisCalls, confirmed });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }

  await waitForSagas(
    PATHS.map((p) => products[p].id),
    45_000,
  );
  // Kafka produce requests: each relay send stamps its rows with one sent_at; wait until every row is sent.
  const produce: Record<string, { sends: number; rows: number }> = {};
  const conn = await connectPrimary();
  try {
    for (const path of PATHS) {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const [rows] = await conn.query<RowDataPacket[]>(
          'SELECT COUNT(*) AS n, COUNT(sent_at) AS sent, COUNT(DISTINCT sent_at) AS sends FROM outbox WHERE event_key = ?',
          [String(products[path].id)],
        );
        const r = rows[0]!;
        produce[path] = { sends: Number(r['sends']), rows: Number(r['n']) };
        if (Number(r['sent']) === Number(r['n']) || Date.now() > deadline) break;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  } finally {
    await conn.end();
  }
  const checks = await verifyProducts(
    expectedFrom(
      [ledger],
      PATHS.map((p) => ({ productId: products[p].id, label: p, initialStock: STOCK })),
    ),
  );
  const ok = checks.every((c) => c.ok) && ledger.replayed === 0;

  const per1000 = (n: number, confirmed: number) => (confirmed > 0 ? round((n / confirmed) * 1000, 1) : NaN);
  const metric = (label: string, get: (p: Phase) => number | undefined) => {
    const [a, b] = phases.map((p) => {
      const n = get(p);
      return n === undefined ? NaN : per1000(n, p.confirmed);
    });
    return { label, actor: a!, baseline: b!, ratio: a! > 0 ? round(b! / a!, 1) : NaN };
  };
  /** A server counter's delta over the phase minus the idle background scaled to the phase's length. */
  const scale = (p: Phase) => p.measured.cpu.wallS / idle.s;
  const sql = (name: string) => (p: Phase) =>
    p.mysql[name] === undefined ? undefined : Math.max(0, p.mysql[name] - (idle.mysql[name] ?? 0) * scale(p));
  const calls = (c: Record<string, number>) =>
    Object.entries(c)
      .filter(([cmd]) => cmd !== 'info')
      .reduce((s, [, n]) => s + n, 0);
  const redisTotal = (p: Phase) => Math.max(0, calls(p.redisCalls) - calls(idle.redis) * scale(p));
  const metrics = [
    metric('MySQL commits (Com_commit)', sql('Com_commit')),
    metric('MySQL binlog group commits', sql('Binlog_group_commits')),
    metric('InnoDB log fsyncs', sql('Innodb_os_log_fsyncs')),
    metric('InnoDB data fsyncs', sql('Innodb_data_fsyncs')),
    metric('row-lock waits', sql('Innodb_row_lock_waits')),
    metric('Redis commands', redisTotal),
    metric('Kafka produce requests', (p) => produce[p.path]?.sends ?? 0),
    metric('outbox events', (p) => produce[p.path]?.rows ?? 0),
    metric('app CPU-ms', (p) => p.measured.serviceCores * p.measured.cpu.wallS * 1000),
  ];
  const key = (label: string) =>
    label
      .toLowerCase()
      .replace(/\(.*\)/, '')
      .trim()
      .replace(/[^a-z0-9]+/g, '_');
  const summary: Record<string, unknown> = {
    mode: 'open-loop',
    unit: 'per 1,000 confirmed purchases',
    offered_per_s: rate,
  };
  for (const m of metrics) {
    summary[`actor_${key(m.label)}`] = m.actor;
    summary[`baseline_${key(m.label)}`] = m.baseline;
  }
  for (const p of phases) {
    summary[`${p.path}_confirmed`] = p.confirmed;
    summary[`${p.path}_p99_ms`] = percentileMs(p.measured.result.ops.get('purchase')!.latency, 99);
  }
  summary['oversold'] = checks.reduce((s, c) => s + c.oversold, 0);
  summary['background_busy'] = background === undefined ? null : round(background, 2);
  summary['other_cores_max'] = round(Math.max(...phases.map((p) => p.measured.otherCores ?? 0)), 2);

  return {
    ok,
    summary,
    table: {
      columns: ['per 1,000 confirmed', 'actor', 'baseline', 'baseline ÷ actor'],
      rows: metrics.map((m) => [
        m.label,
        m.actor,
        m.baseline,
        Number.isFinite(m.ratio) ? `${m.ratio}x` : '-',
      ]),
    },
    notes: [
      `mode: OPEN LOOP, ${num(rate)}/s offered to each path for ${options.durationS} s (actor, then baseline), one node, provider 5 ms; confirmed: actor ${num(phases[0]!.confirmed)}, baseline ${num(phases[1]!.confirmed)}.`,
      `MySQL and Redis figures: server-wide deltas over each phase MINUS the same counters over ${options.durationS} s idle before the load (scaled to the phase length): a steady background cancels, one that changes between the idle interval and a phase does not (tests, other nodes). NaN = counter absent on this server. Kafka produce requests = distinct sent_at of the product's outbox rows (one per relay sendBatch, which may also carry other products' rows).`,
      ...phases.flatMap((p) => p.measured.result.warnings.map((w) => `WARNING: ${w}`)),
      ...phases.map(
        (p) =>
          `${p.path}: other processes took ${(p.measured.otherCores ?? NaN).toFixed(2)} cores during the phase; top Redis commands ${JSON.stringify(
            Object.fromEntries(
              Object.entries(p.redisCalls)
                .sort((a, b) => b[1] - a[1])
                .slice(0, 6),
            ),
          )}`,
      ),
      ...checks.map(
        (c) =>
          `check ${c.label}: stock ${c.stockMatches ? 'OK' : 'MISMATCH'}, orders ${c.ordersMatch ? 'OK' : 'MISMATCH'}, oversold ${c.oversold}`,
      ),
      `correctness: ${ok ? 'OK' : 'FAILED'}`,
    ],
    details: {
      phases: phases.map((p) => ({
        path: p.path,
        confirmed: p.confirmed,
        mysql: p.mysql,
        redisCalls: p.redisCalls,
        serviceCores: p.measured.serviceCores,
        wallS: p.measured.cpu.wallS,
      })),
      produce,
      checks,
      metrics,
    },
  };
}
