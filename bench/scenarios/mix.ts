/**
 * The specification's mix: 80% reads / 20% purchases at 6,000 connections through nginx to two nodes, Zipf
 * popularity, a catalog sized for an 83% hit rate; open-loop step-up until a step misses the p95 targets.
 */
import { benchUser } from '../auth.js';
import { catalogSizeFor, insertCatalog, Zipf } from '../catalog.js';
import { latencyChart, throughputChart } from '../chart.js';
import { otherCores } from '../cpu.js';
import { latencySummary, round, type MeasuredPhase } from '../measure.js';
import type { OpenLoopRequest, OpenLoopResult } from '../open-loop.js';
import { PurchaseLedger } from '../load.js';
import { num, tableOf } from '../report.js';
import { defineScenario, healthOf, oversold, stepDetails, timelinePoints } from '../scenario.js';

const TARGET_P95_MS = { 'read-hit': 10, 'read-miss': 50, purchase: 100 } as const;
const OPS = ['read-hit', 'read-miss', 'purchase'] as const;
const ERROR_SHARE = 0.01;
const READ_SHARE = 0.8;
const HOT_PURCHASE_SHARE = 0.3;
const PRODUCT_STOCK = 1_000_000;
/** The service's CACHE_STOCK_TTL_MS default: a cached product is a hit only while its stock entry lives. */
const STOCK_TTL_S = 5;

type OpFigures = ReturnType<typeof latencySummary> & { errors: number; statuses: Record<string, number> };
type Step = Awaited<ReturnType<typeof stepOf>>;

/** A measured step's figures: per operation, hit rate, hot share, errors, the targets it missed, CPU. */
function stepOf(
  measured: MeasuredPhase<OpenLoopResult>,
  nodes: number,
  s: { offered: number; catalog: number; hot: number; purchases: number; startS: number },
) {
  const r = measured.result;
  const ops: Record<string, OpFigures> = {};
  for (const op of OPS) {
    const stats = r.ops.get(op);
    if (stats !== undefined)
      ops[op] = { ...latencySummary(stats.latency), errors: stats.errors, statuses: stats.statuses };
  }
  const hits = ops['read-hit']?.count ?? 0;
  const reads = hits + (ops['read-miss']?.count ?? 0);
  const errorShare = r.scheduled > 0 ? r.errors / r.scheduled : 0;
  const misses: string[] = [];
  for (const op of OPS) {
    const p95 = ops[op]?.p95;
    if (p95 !== undefined && !(p95 < TARGET_P95_MS[op]))
      misses.push(`${op} p95 ${p95} ms ≥ ${TARGET_P95_MS[op]} ms`);
  }
  if (errorShare > ERROR_SHARE)
    misses.push(`errors ${(errorShare * 100).toFixed(2)}% > ${ERROR_SHARE * 100}%`);
  // Service cores = Σ of the nodes' CPU (/proc); other = what no known process took (with --url: the scrape's).
  const { cpu } = measured;
  const processCores = Object.fromEntries(
    Object.entries(cpu.processCores).map(([name, c]) => [name, round(c ?? 0, 3)]),
  );
  const nodeCores = Array.from({ length: nodes }, (_, i) => processCores[`node-${i + 1}`] ?? 0);
  return {
    offered: s.offered,
    catalog: s.catalog,
    result: r,
    ops,
    hitShare: reads > 0 ? hits / reads : NaN,
    hotShare: s.purchases > 0 ? s.hot / s.purchases : NaN,
    errorShare,
    met: misses.length === 0,
    misses,
    serviceCores: nodes === 0 ? measured.serviceCores : nodeCores.reduce((a, b) => a + b, 0),
    otherCores: nodes === 0 ? measured.otherCores : otherCores(cpu, Object.values(cpu.processCores)),
    processCores,
    stages: measured.stages,
    startS: s.startS,
  };
}

export default defineScenario({
  name: 'mix',
  describe:
    "the specification's mix (80% reads / 20% purchases, Zipf, ~83% cache hits) at 6,000 connections through nginx to 2 nodes, open-loop step-up; verdict against the p95 targets",
  defaults: { durationS: 20, connections: 6000, rate: 500 },
  async run(run) {
    const { options, io } = run;
    const factor = run.param('step', 1.5, 1.05, 10);
    const maxSteps = run.param('max-steps', 6, 1, 30);
    const hitTarget = run.param('hit-rate', 0.83, 0.01, 0.999);
    const catalogMax = run.param('catalog-max', 30_000, 10, 1_000_000);
    const fixedCatalog =
      options.params['catalog'] === undefined ? undefined : run.param('catalog', 1, 1, catalogMax);
    const firstRate = options.rate ?? 500;
    const rates = Array.from({ length: maxSteps }, (_, i) => Math.round(firstRate * factor ** i));
    const sizeFor = (rate: number) =>
      fixedCatalog ?? catalogSizeFor(1 - hitTarget, rate * READ_SHARE, STOCK_TTL_S, catalogMax);
    const tag = run.tag('mix');
    const catalogSize = Math.max(...rates.map(sizeFor));
    await run.setUp({
      cluster: { nodes: 2, nginx: true, paymentLatencyMs: 5 },
      connectionsTimeoutMs: 30_000,
      backgroundMs: 1_000,
    });
    const { cluster, connections, opened } = run;
    io.progress(`bench: inserting a catalog of ${num(catalogSize)} products`);
    const ids = await insertCatalog(`bench ${tag}`, catalogSize, PRODUCT_STOCK);
    if (ids.length !== catalogSize)
      throw new Error(`catalog: ${ids.length} products found, ${catalogSize} inserted`);
    const zipf = new Zipf(catalogSize);
    const ledger = new PurchaseLedger(run.tokens);
    let seq = 0;
    let hot = 0;
    let purchases = 0;
    const request = (n: number) => (): OpenLoopRequest => {
      seq += 1;
      if (Math.random() < READ_SHARE) {
        const id = ids[zipf.sample(n)]!;
        return {
          op: 'read',
          method: 'GET',
          path: `/products/${id}`,
          answer: (status, headers) => ({
            op: status === 200 ? (headers['x-cache'] === 'HIT' ? 'read-hit' : 'read-miss') : 'read-miss',
            error: status !== 200,
          }),
        };
      }
      const rank = Math.random() < HOT_PURCHASE_SHARE ? 0 : zipf.sample(n);
      purchases += 1;
      if (rank === 0) hot += 1;
      return ledger.purchase('purchase', ids[rank]!, 1, `${tag}-${seq}`, benchUser(seq));
    };

    // Unmeasured: fills the cache of the first step's catalog and warms both nodes.
    await run.openLoop('warm-up', firstRate, 3, request(sizeFor(firstRate)));

    const steps = await run.stepUp<'mix', Step>({
      paths: ['mix'],
      rates,
      pause: 0,
      step: async (_, rate, startS) => {
        const catalog = sizeFor(rate);
        hot = 0;
        purchases = 0;
        // The bench's own processes (nodes, nginx and its workers, provider) are known too, not "other".
        const label = `mix @ ${num(rate)}/s, ${num(catalog)} products`;
        const measured = await run.measure(label, rate, request(catalog), { ...run.pids, ...cluster.pids() });
        const step = stepOf(measured, cluster.nodes.length, {
          offered: rate,
          catalog,
          hot,
          purchases,
          startS,
        });
        const { misses } = step;
        io.progress(`bench:   cores: ${formatCores(step.processCores)}`);
        io.progress(
          `bench: mix @ ${num(rate)}/s: ${misses.length === 0 ? 'meets the targets' : `MISSES: ${misses.join('; ')}`}`,
        );
        return step;
      },
      keep: (s) => s.met,
    });

    const bought = [...ledger.perProduct.keys()];
    const { checks, restarted, shardLosses } = await run.check(
      bought.map((id) => ({ productId: id, label: `product ${id}`, initialStock: PRODUCT_STOCK })),
      [ledger],
    );
    const runHealth = healthOf(
      { steps, background: run.background, restarted, shardLosses },
      'shared with 2 nodes, nginx, MariaDB ×2, Redis, Kafka and the provider',
    );
    const failedChecks = checks.filter((c) => !c.ok);
    // Through nginx a replay is a retried POST (proxy_next_upstream non_idempotent), not a wrong answer.
    const ok = failedChecks.length === 0 && steps.length > 0;
    const best = [...steps].reverse().find((s) => s.met);
    const firstMiss = steps.find((s) => !s.met);
    const headline = best ?? steps[0];
    const p95 = (s: Step | undefined, op: string) => s?.ops[op]?.p95 ?? null;

    const notes = [
      `mode: OPEN LOOP, ${num(opened)} connections held open to ${cluster.nginx === undefined ? cluster.url : `the bench's nginx (docker/nginx/nginx.conf) → ${cluster.nodes.length} nodes`}, rotated so each carries traffic; latency from each request's intended send time.`,
      `mix: ${READ_SHARE * 100}% GET /products/:id, ${100 - READ_SHARE * 100}% POST /purchases (quantity 1, unique keys); Zipf(1) popularity; purchases: ${HOT_PURCHASE_SHARE * 100}% to the top product, the rest Zipf; each step reads over the catalog size whose expected hit rate is ${Math.round(hitTarget * 100)}% (stock entries live ${STOCK_TTL_S} s).`,
      `targets (p95): cache hit < ${TARGET_P95_MS['read-hit']} ms, cache miss < ${TARGET_P95_MS['read-miss']} ms, purchase < ${TARGET_P95_MS.purchase} ms; errors ≤ ${ERROR_SHARE * 100}%.`,
      best === undefined
        ? `VERDICT: NOT MET at any offered rate tried (from ${num(firstRate)}/s): ${firstMiss?.misses.join('; ') ?? 'no step ran'}`
        : `VERDICT: met at ${num(best.offered)}/s offered (achieved ${num(best.result.achievedPerS)}/s; p95 hit ${p95(best, 'read-hit')} ms, miss ${p95(best, 'read-miss')} ms, purchase ${p95(best, 'purchase')} ms; hit rate ${Math.round(best.hitShare * 100)}%)` +
          (firstMiss === undefined
            ? `; never missed up to the last step (${num(rates[rates.length - 1]!)}/s): capacity is higher`
            : `; missed at ${num(firstMiss.offered)}/s: ${firstMiss.misses.join('; ')}`),
      ...runHealth.notes,
      `checks: ${checks.length} purchased products, initial − stock = SUM(quantity) and orders = answers: ${
        failedChecks.length === 0
          ? 'OK'
          : `${failedChecks.length} MISMATCH (${failedChecks
              .slice(0, 5)
              .map((c) => c.productId)
              .join(', ')}…)`
      }; oversold ${oversold(checks)}`,
      ...(ledger.replayed > 0
        ? [
            `note: ${ledger.replayed} purchases answered 201 Idempotent-Replayed: nginx retried them on the other node after a first attempt that committed (each is still that key's one order)`,
          ]
        : []),
      `correctness: ${ok ? 'OK' : 'FAILED'}`,
    ];

    const chartSteps = [best, firstMiss].filter((s): s is Step => s !== undefined);
    return {
      ok,
      summary: {
        mode: 'open-loop',
        verdict_met: best !== undefined,
        rate_meeting_targets_per_s: best?.offered ?? 0,
        achieved_per_s: headline === undefined ? 0 : Math.round(headline.result.achievedPerS),
        first_missed_at_per_s: firstMiss?.offered ?? null,
        hit_p95_ms: p95(headline, 'read-hit'),
        miss_p95_ms: p95(headline, 'read-miss'),
        purchase_p95_ms: p95(headline, 'purchase'),
        purchase_p99_ms: headline?.ops['purchase']?.p99 ?? null,
        hit_rate: headline === undefined ? null : round(headline.hitShare, 3),
        hot_purchase_share: headline === undefined ? null : round(headline.hotShare, 3),
        catalog_products: headline?.catalog ?? null,
        errors_pct: headline === undefined ? null : round(headline.errorShare * 100, 2),
        oversold: oversold(checks),
        nginx_retried_replays: ledger.replayed,
        connections_open: opened,
        connections: options.connections,
        nodes: cluster.nodes.length,
        via_nginx: cluster.nginx !== undefined,
        steps: steps.length,
        ...runHealth.summary,
        step_s: options.durationS,
      },
      table: tableOf<{ s: Step; op: (typeof OPS)[number]; o: OpFigures }>(
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
        steps.flatMap((s) =>
          OPS.filter((op) => s.ops[op] !== undefined).map((op) => ({ s, op, o: s.ops[op]! })),
        ),
      ),
      notes,
      details: {
        catalogSize,
        hotProduct: ids[0],
        steps: steps.map(stepDetails),
        failedChecks: failedChecks.slice(0, 20),
        connections: {
          open: connections.connected,
          connects: connections.connects,
          disconnects: connections.disconnects,
        },
      },
      charts: [
        latencyChart(
          'mix: latency per operation at the highest rate meeting the targets and the first missing them',
          chartSteps.flatMap((s) =>
            OPS.filter((op) => s.ops[op] !== undefined).map((op) => ({
              op: `${op} @ ${num(s.offered)}/s`,
              ...s.ops[op]!,
            })),
          ),
        ),
        throughputChart('mix: offered vs answered per second, steps in order', timelinePoints(steps)),
      ],
    };
  },
});

/** `cores: node-1 0.35, mariadb-primary 0.12, …`, busiest first: which process fills the box. */
const formatCores = (cores: Readonly<Record<string, number>>): string =>
  Object.entries(cores)
    .sort((a, b) => b[1] - a[1])
    .map(([name, c]) => `${name} ${c.toFixed(2)}`)
    .join(', ');
