/**
 * The specification's mix: 80% reads / 20% purchases at 6,000 connections through nginx to two nodes, Zipf
 * popularity, a catalog sized for an 83% hit rate; open-loop step-up until a step misses the p95 targets.
 */
import { benchUser } from '../auth.js';
import { catalogSizeFor, insertCatalog, Zipf } from '../catalog.js';
import { latencyChart, throughputChart } from '../chart.js';
import { otherCores } from '../cpu.js';
import { PurchaseLedger } from '../load.js';
import { latencySummary, round, type MeasuredPhase } from '../measure.js';
import type { OpenLoopRequest, OpenLoopResult } from '../open-loop.js';
import { num, tableOf } from '../report.js';
import {
  capacity,
  checkNote,
  defineScenario,
  healthOf,
  oversold,
  stepDetails,
  timelinePoints,
} from '../scenario.js';

const TARGET_P95_MS = { 'read-hit': 10, 'read-miss': 50, purchase: 100 } as const;
const OPS = ['read-hit', 'read-miss', 'purchase'] as const;
type Op = (typeof OPS)[number];
const ERROR_SHARE = 0.01;
const READ_SHARE = 0.8;
const HOT_PURCHASE_SHARE = 0.3;
const PRODUCT_STOCK = 1_000_000;
/** The service's CACHE_STOCK_TTL_MS default: a cached product is a hit only while its stock entry lives. */
const STOCK_TTL_S = 5;

type Step = ReturnType<typeof stepOf>;

/** A measured step's figures: per operation, hit rate, hot share, errors, the targets it missed. */
function stepOf(measured: MeasuredPhase<OpenLoopResult>, offered: number, catalog: number, hotShare: number) {
  const { result, cpu } = measured;
  const ops: Partial<Record<Op, ReturnType<typeof latencySummary> & { errors: number; statuses: object }>> =
    {};
  for (const [op, stats] of result.ops)
    ops[op as Op] = { ...latencySummary(stats.latency), errors: stats.errors, statuses: stats.statuses };
  const hits = ops['read-hit']?.count ?? 0;
  const errorShare = result.scheduled > 0 ? result.errors / result.scheduled : 0;
  const misses = OPS.filter((op) => ops[op] !== undefined && !(ops[op].p95 < TARGET_P95_MS[op])).map(
    (op) => `${op} p95 ${ops[op]!.p95} ms ≥ ${TARGET_P95_MS[op]} ms`,
  );
  if (errorShare > ERROR_SHARE)
    misses.push(`errors ${(errorShare * 100).toFixed(2)}% > ${ERROR_SHARE * 100}%`);
  return {
    offered,
    catalog,
    result,
    ops,
    hitShare: hits / (hits + (ops['read-miss']?.count ?? 0)),
    hotShare,
    errorShare,
    misses,
    // The bench's own processes (nodes, nginx and its workers, provider) are known: "other" is what is left.
    otherCores: otherCores(cpu, Object.values(cpu.processCores)),
    stages: measured.stages,
    startS: 0,
  };
}

export default defineScenario({
  name: 'mix',
  describe:
    "the specification's mix (80% reads / 20% purchases, Zipf, ~83% cache hits) at 6,000 connections through nginx to 2 nodes, open-loop step-up; verdict against the p95 targets",
  defaults: { durationS: 20, connections: 6000, rate: 500 },
  async run(run) {
    const { options, io } = run;
    const hitTarget = run.param('hit-rate', 0.83, 0.01, 0.999);
    const catalogMax = run.param('catalog-max', 30_000, 10, 1_000_000);
    const fixedCatalog =
      options.params['catalog'] === undefined ? undefined : run.param('catalog', 1, 1, catalogMax);
    const firstRate = options.rate ?? 500;
    const rates = run.steppedRates(
      firstRate,
      run.param('step', 1.5, 1.05, 10),
      run.param('max-steps', 6, 1, 30),
    );
    const sizeFor = (rate: number) =>
      fixedCatalog ?? catalogSizeFor(1 - hitTarget, rate * READ_SHARE, STOCK_TTL_S, catalogMax);
    const tag = run.tag('mix');
    const catalogSize = Math.max(...rates.map(sizeFor));
    await run.setUp({
      cluster: { nodes: 2, nginx: true, paymentLatencyMs: 5 },
      connectionsTimeoutMs: 30_000,
      backgroundMs: 1_000,
    });
    const { cluster, opened } = run;
    io.progress(`bench: inserting a catalog of ${num(catalogSize)} products`);
    const ids = await insertCatalog(`bench ${tag}`, catalogSize, PRODUCT_STOCK);
    if (ids.length !== catalogSize)
      throw new Error(`catalog: ${ids.length} products found, ${catalogSize} inserted`);
    const zipf = new Zipf(catalogSize);
    const ledger = new PurchaseLedger(run.tokens);
    const count = { seq: 0, hot: 0, purchases: 0 };
    const request = (n: number) => (): OpenLoopRequest => {
      count.seq += 1;
      if (Math.random() < READ_SHARE)
        return {
          op: 'read',
          method: 'GET',
          path: `/products/${ids[zipf.sample(n)]!}`,
          answer: (status, headers) => ({
            op: status === 200 && headers['x-cache'] === 'HIT' ? 'read-hit' : 'read-miss',
            error: status !== 200,
          }),
        };
      const rank = Math.random() < HOT_PURCHASE_SHARE ? 0 : zipf.sample(n);
      count.purchases += 1;
      if (rank === 0) count.hot += 1;
      return ledger.purchase('purchase', ids[rank]!, 1, `${tag}-${count.seq}`, benchUser(count.seq));
    };

    // Unmeasured: fills the cache of the first step's catalog and warms both nodes.
    await run.openLoop('warm-up', firstRate, 3, request(sizeFor(firstRate)));
    const steps = await run.stepUp<'mix', Step>({
      paths: ['mix'],
      rates,
      pause: 0,
      step: async (_, rate, startS) => {
        const catalog = sizeFor(rate);
        Object.assign(count, { hot: 0, purchases: 0 });
        const label = `mix @ ${num(rate)}/s, ${num(catalog)} products`;
        const measured = await run.measure(label, rate, request(catalog), { ...run.pids, ...cluster.pids() });
        const step = { ...stepOf(measured, rate, catalog, count.hot / count.purchases), startS };
        const verdict = step.misses.length === 0 ? 'meets the targets' : `MISSES: ${step.misses.join('; ')}`;
        io.progress(`bench: mix @ ${num(rate)}/s: ${verdict}`);
        return step;
      },
      keep: (s) => s.misses.length === 0,
    });

    const bought = [...ledger.perProduct.keys()];
    const specs = bought.map((id) => ({
      productId: id,
      label: `product ${id}`,
      initialStock: PRODUCT_STOCK,
    }));
    const { checks, restarted, shardLosses } = await run.check(specs, [ledger]);
    const health = healthOf(
      { steps, background: run.background, restarted, shardLosses },
      'shared with 2 nodes, nginx, MariaDB ×2, Redis, Kafka and the provider',
    );
    const failed = checks.filter((c) => !c.ok);
    // Through nginx a replay is a retried POST (proxy_next_upstream non_idempotent), not a wrong answer.
    const ok = failed.length === 0 && steps.length > 0;
    const { best, broke } = capacity(steps, (s) => s.misses.length === 0);
    const at = best ?? steps[0];
    const p95 = (op: Op, s = at) => s?.ops[op]?.p95 ?? null;
    const figures = (s: Step) =>
      `p95 hit ${p95('read-hit', s)} ms, miss ${p95('read-miss', s)} ms, purchase ${p95('purchase', s)} ms; hit rate ${Math.round(s.hitShare * 100)}%`;
    const opsOf = (s: Step) =>
      OPS.flatMap((op) => (s.ops[op] === undefined ? [] : [{ s, op, o: s.ops[op] }]));
    const rows = steps.flatMap(opsOf);
    return {
      ok,
      summary: {
        mode: 'open-loop',
        verdict_met: best !== undefined,
        rate_meeting_targets_per_s: best?.offered ?? 0,
        achieved_per_s: at === undefined ? 0 : Math.round(at.result.achievedPerS),
        first_missed_at_per_s: broke?.offered ?? null,
        hit_p95_ms: p95('read-hit'),
        miss_p95_ms: p95('read-miss'),
        purchase_p95_ms: p95('purchase'),
        purchase_p99_ms: at?.ops.purchase?.p99 ?? null,
        hit_rate: at === undefined ? null : round(at.hitShare, 3),
        hot_purchase_share: at === undefined ? null : round(at.hotShare, 3),
        catalog_products: at?.catalog ?? null,
        errors_pct: at === undefined ? null : round(at.errorShare * 100, 2),
        oversold: oversold(checks),
        nginx_retried_replays: ledger.replayed,
        connections_open: opened,
        connections: options.connections,
        nodes: cluster.nodes.length,
        via_nginx: cluster.nginx !== undefined,
        steps: steps.length,
        ...health.summary,
        step_s: options.durationS,
      },
      table: tableOf<(typeof rows)[number]>(
        [
          ['offered', ({ s }) => `${num(s.offered)}/s`],
          ['operation', ({ op }) => op],
          ['answers', ({ o }) => o.count],
          ['p50 ms', ({ o }) => o.p50],
          ['p95 ms', ({ o }) => o.p95],
          ['p99 ms', ({ o }) => o.p99],
          ['p99.9 ms', ({ o }) => o.p999],
          ['max ms', ({ o }) => o.max],
          ['errors', ({ o }) => o.errors],
          ['p95 target', ({ op, o }) => (o.p95 < TARGET_P95_MS[op] ? 'met' : 'MISSED')],
          ['achieved/s', ({ s }) => Math.round(s.result.achievedPerS)],
          ['hit rate', ({ s }) => `${Math.round(s.hitShare * 100)}%`],
          ['gen cores', ({ s }) => s.result.generatorCores.toFixed(2)],
        ],
        rows,
      ),
      notes: [
        `mode: OPEN LOOP, ${num(opened)} connections held open to ${cluster.nginx === undefined ? cluster.url : `the bench's nginx → ${cluster.nodes.length} nodes`}; ${READ_SHARE * 100}% reads, Zipf(1), ${HOT_PURCHASE_SHARE * 100}% of purchases to the top product; each step's catalog sized for a ${Math.round(hitTarget * 100)}% hit rate.`,
        `targets (p95): cache hit < ${TARGET_P95_MS['read-hit']} ms, cache miss < ${TARGET_P95_MS['read-miss']} ms, purchase < ${TARGET_P95_MS.purchase} ms; errors ≤ ${ERROR_SHARE * 100}%.`,
        best === undefined
          ? `VERDICT: NOT MET at any offered rate tried (from ${num(firstRate)}/s): ${broke?.misses.join('; ') ?? 'no step ran'}`
          : `VERDICT: met at ${num(best.offered)}/s offered (achieved ${num(best.result.achievedPerS)}/s; ${figures(best)})` +
            (broke === undefined
              ? `; never missed up to the last step (${num(rates[rates.length - 1]!)}/s): capacity is higher`
              : `; missed at ${num(broke.offered)}/s: ${broke.misses.join('; ')}`),
        ...health.notes,
        ...failed.slice(0, 5).map((c) => checkNote(c)),
        `checks: ${checks.length} purchased products, ${failed.length} mismatched; oversold ${oversold(checks)}; ${ledger.replayed} purchases answered 201 Idempotent-Replayed (nginx retries, allowed); correctness: ${ok ? 'OK' : 'FAILED'}`,
      ],
      details: {
        catalogSize,
        hotProduct: ids[0],
        steps: steps.map(stepDetails),
        failedChecks: failed.slice(0, 20),
      },
      charts: [
        latencyChart(
          'mix: latency per operation at the highest rate meeting the targets and the first missing them',
          [best, broke].flatMap((s) =>
            s === undefined ? [] : opsOf(s).map(({ op, o }) => ({ ...o, op: `${op} @ ${num(s.offered)}/s` })),
          ),
        ),
        throughputChart('mix: offered vs answered per second, steps in order', timelinePoints(steps)),
      ],
    };
  },
});
