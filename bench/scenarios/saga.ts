/**
 * Saga: confirmed purchases/s and the purchase latency through the whole saga (provider at 5 ms), one hot
 * product then 100 products, closed loop; the specification's target: p95 < 100 ms.
 */
import { createPaymentProvider } from '../../src/payment-provider/server.js';
import { closedLoopPool, createProduct, type CreatedProduct } from '../api.js';
import { cores } from '../cpu.js';
import { merge, phaseDetails, runAlternatingPhases } from '../hot-sku-closed.js';
import { newLatencyHistogram, type PhaseResult } from '../load.js';
import {
  DISTURBED_OTHER_CORES,
  latencySummary,
  round,
  roundOrNull,
  writerFigures,
  type MeasuredPhase,
} from '../measure.js';
import { columns, fixed, num, pct } from '../report.js';
import { defineScenario, oversold, phaseHealthOf, type Run } from '../scenario.js';
import type { ScenarioResult } from '../types.js';
import type { ProductCheck } from '../verify.js';

const PAYMENT_LATENCY_MS = 5;
const P95_TARGET_MS = 100;
const SPREAD_PRODUCTS = 100;
/** Far more than a phase sells, so no purchase meets OUT_OF_STOCK. */
const HOT_STOCK = 10_000_000;
const SPREAD_STOCK = 1_000_000;

type PhaseName = 'hot' | 'spread';

type ProviderCounts = { readonly charges: number; readonly requests: number };

/** 201 / 202 / 402 / other answers (other = every other status and transport errors; replays are 201s). */
function answers(r: PhaseResult) {
  const fresh201 = r.created;
  const n202 = r.statuses['202'] ?? 0;
  const n402 = r.statuses['402'] ?? 0;
  return { n201: fresh201, n202, n402, other: r.failed - n202 - n402 };
}

function phaseFigures(m: MeasuredPhase<PhaseResult>, provider: ProviderCounts) {
  const r = m.result;
  const { p50, p95, p99, max } = latencySummary(r.answeredLatency);
  const writer = writerFigures(m.metrics, m.cpu.wallS);
  return {
    label: r.label,
    products: r.productIds.length,
    windowS: r.windowS,
    confirmedPerS: r.perS,
    p50,
    p95,
    p99,
    max,
    ...answers(r),
    writer,
    providerChargesPerS: provider.charges / m.cpu.wallS,
    db: m.dbPerS,
    disturbed: (m.otherCores ?? 0) > DISTURBED_OTHER_CORES,
    m,
    provider,
  };
}

type Figures = ReturnType<typeof phaseFigures>;

/** The table's columns; `hot_…` and `spread_…` summary keys from those with a key. */
const COLUMNS = columns<Figures>([
  ['phase (closed loop)', (f) => f.label],
  ['s', (f) => round(f.windowS, 1)],
  ['confirmed/s', (f) => Math.round(f.confirmedPerS), 'confirmed_per_s'],
  ['p50 ms', (f) => f.p50, 'p50_ms'],
  ['p95 ms', (f) => f.p95, 'p95_ms'],
  ['p99 ms', (f) => f.p99, 'p99_ms'],
  ['max ms', (f) => f.max, 'max_ms'],
  ['201', (f) => f.n201, '201'],
  ['202', (f) => f.n202, '202'],
  ['402', (f) => f.n402, '402'],
  ['other', (f) => f.other, 'other'],
  [
    'mean batch',
    (f) => fixed(f.writer.meanBatchSize, 1),
    'mean_batch_size',
    (f) => roundOrNull(f.writer.meanBatchSize, 1),
  ],
  [
    'batch ms',
    (f) => fixed(f.writer.meanBatchWriteMs, 1),
    'mean_batch_ms',
    (f) => f.writer.meanBatchWriteMs ?? null,
  ],
  ['saga ms', (f) => fixed(f.writer.meanSagaMs, 1)],
  ['svc cores', (f) => fixed(f.m.serviceCores, 2)],
  ['db cores', (f) => fixed(f.m.cpu.processCores['mariadb_primary'], 2)],
  ['bench cores', (f) => fixed(f.m.cpu.benchCores, 2)],
  ['other cores', (f) => fixed(f.m.otherCores, 2)],
  ['machine busy', (f) => pct(f.m.cpu.machineBusy)],
]);

async function run(run: Run): Promise<ScenarioResult> {
  const { options, io } = run;
  // The bench's own provider (not the stack's shared one), registered first so it closes after the service.
  const provider =
    options.url === undefined ? createPaymentProvider({ latencyMs: PAYMENT_LATENCY_MS }) : undefined;
  const paymentUrl = provider && `http://127.0.0.1:${await provider.listen(0, '127.0.0.1')}`;
  if (provider !== undefined) {
    io.onCleanup(() => provider.close());
    io.progress(`bench: payment provider (in-process, ${PAYMENT_LATENCY_MS} ms latency) on ${paymentUrl}`);
  }
  const env: Record<string, string> = paymentUrl === undefined ? {} : { PAYMENT_URL: paymentUrl };
  const { cluster, tokens, background } = await run.setUp({ cluster: { nodes: 1, nginx: false, env } });
  const pool = closedLoopPool(cluster.url, options.connections, io);
  const tag = run.tag('sg');
  const product = (label: string, stock: number): Promise<CreatedProduct> =>
    createProduct(pool, tokens, `bench ${tag} ${label}`, stock);
  const hot = await product('hot', HOT_STOCK);
  const spread: CreatedProduct[] = [];
  for (let i = 0; i < SPREAD_PRODUCTS; i += 1) spread.push(await product(`spread ${i}`, SPREAD_STOCK));

  io.progress(`bench: machine busy before the load (service idle): ${pct(background)}`);
  const providerStats = () => provider?.stats() ?? { charges: 0, requests: 0 };
  const provided = {} as Record<PhaseName, ProviderCounts>;
  const path = (phase: PhaseName, ids: number[], initialStock: number) => ({
    path: phase,
    http: pool,
    productId: ids[0]!,
    productIds: ids,
    initialStock,
    metricsFrom: cluster.metricsUrls,
  });
  const { all, measured } = await runAlternatingPhases(run, {
    paths: [
      path('hot', [hot.id], HOT_STOCK),
      path(
        'spread',
        spread.map((p) => p.id),
        SPREAD_STOCK,
      ),
    ],
    order: ['hot', 'spread'],
    tag,
    label: (phase) =>
      `${phase} (${phase === 'hot' ? '1 product' : `${SPREAD_PRODUCTS} products`}) closed-loop c=${options.connections}`,
    onPhase: (phase) => {
      const before = providerStats();
      return () => {
        const after = providerStats();
        provided[phase] = {
          charges: after.charges - before.charges,
          requests: after.requests - before.requests,
        };
      };
    },
  });
  const { checks, stillPending, restarted, shardLosses, replayed, ok } = await run.check(
    [
      { productId: hot.id, label: 'hot', initialStock: HOT_STOCK },
      ...spread.map((p, i) => ({ productId: p.id, label: `spread ${i}`, initialStock: SPREAD_STOCK })),
    ],
    all,
  );

  const figures = measured.map((m) => phaseFigures(m, provided[m.path]));
  const [hotF, spreadF] = figures as [Figures, Figures];
  const disturbed = figures.filter((f) => f.disturbed || restarted.length > 0).map((f) => f.label);
  const p95Met = hotF.p95 < P95_TARGET_MS && spreadF.p95 < P95_TARGET_MS;
  const confirmedOrders = checks.reduce((sum, c) => sum + c.orders.CONFIRMED, 0);
  const chargesTotal = providerStats().charges;
  const health = phaseHealthOf(
    { disturbed, phases: measured.length, background, restarted, shardLosses },
    merge(measured).benchCores,
  );

  const hotCheck = checks[0]!;
  const spreadChecks = checks.slice(1);
  const sumOf = (list: readonly ProductCheck[], get: (c: ProductCheck) => number): number =>
    list.reduce((sum, c) => sum + get(c), 0);
  const checkLine = (label: string, list: readonly ProductCheck[]): string => {
    const bad = list.filter((c) => !c.ok);
    return (
      `check ${label}: initial − stock = ${num(sumOf(list, (c) => c.initialStock - c.stock))}, SUM(quantity) of pending+confirmed orders ${num(sumOf(list, (c) => c.sold))} ` +
      `(${list.every((c) => c.stockMatches) ? 'OK per product' : 'MISMATCH'}); orders confirmed ${num(sumOf(list, (c) => c.orders.CONFIRMED))} / cancelled ${num(sumOf(list, (c) => c.orders.CANCELLED))} / pending ${num(sumOf(list, (c) => c.orders.PENDING))} ` +
      `vs answers 201 ${num(sumOf(list, (c) => c.confirmed))} / 402 ${num(sumOf(list, (c) => c.declined))} + ${num(sumOf(list, (c) => c.answered202))} 202 and ${num(sumOf(list, (c) => c.ambiguous))} 5xx/transport ` +
      `(${list.every((c) => c.ordersMatch) ? 'OK per product' : 'MISMATCH'}); oversold ${sumOf(list, (c) => c.oversold)}` +
      (bad.length > 0 ? `; FAILED: ${bad.map((c) => `product ${c.productId} (${c.label})`).join(', ')}` : '')
    );
  };

  const notes = [
    `mode: CLOSED LOOP: ${options.connections} connections, each sends its next purchase only after the previous answer; latencies are not corrected for coordinated omission, so p95 is that of ${options.connections} purchases always in flight, not of a fixed arrival rate.`,
    provider === undefined
      ? "payment provider: the running service's own (PAYMENT_URL of the --url service); its latency is not set by the bench."
      : `payment provider: in the bench process, ${PAYMENT_LATENCY_MS} ms per answer, no declines or faults; its CPU counts in 'bench cores'.`,
    `p95 of every answered purchase: hot ${fixed(hotF.p95, 1)} ms, spread ${fixed(spreadF.p95, 1)} ms; target < ${P95_TARGET_MS} ms: ${p95Met ? 'MET' : 'NOT MET'}`,
    ...figures.map(
      (f) =>
        `${f.label}: ${num(f.writer.batches)} batches (${fixed(f.writer.batchesPerS, 1)}/s), mean ${fixed(f.writer.meanBatchSize, 1)} new orders and ${fixed(f.writer.meanBatchWriteMs, 1)} ms per batch, ` +
        `writers busy ${fixed(f.writer.writerBusy, 2)} (Σ batch time ÷ wall), mean saga ${fixed(f.writer.meanSagaMs, 1)} ms, provider charges ${num(f.providerChargesPerS)}/s, event-loop lag p99 ${fixed(f.writer.eventLoopLagP99Ms, 1)} ms` +
        (f.db === undefined
          ? ''
          : `; MySQL server (all clients): ${num(f.db['Binlog_commits'] ?? NaN)} commits/s in ${num(f.db['Binlog_group_commits'] ?? NaN)} group commits/s, ${num(f.db['Innodb_row_lock_waits'] ?? NaN, 1)} row-lock waits/s`),
    ),
    ...health.notes,
    `errors hot: ${JSON.stringify(hotF.m.result.failures)}  spread: ${JSON.stringify(spreadF.m.result.failures)}`,
    checkLine(`hot (product ${hotCheck.productId})`, [hotCheck]),
    checkLine(`spread (${spreadChecks.length} products)`, spreadChecks),
    ...(stillPending > 0 ? [`${num(stillPending)} orders still PENDING after 45 s`] : []),
    ...(provider === undefined
      ? []
      : [
          `provider: ${num(chargesTotal)} successful charges over the run for ${num(confirmedOrders)} confirmed orders of these products${chargesTotal < confirmedOrders ? '  (FEWER: confirmed orders without a charge here)' : ''}`,
        ]),
    ...(replayed > 0 ? [`FAIL: ${replayed} fresh keys were answered as replays`] : []),
    `correctness: ${ok ? 'OK' : 'FAILED'}`,
  ];

  return {
    ok,
    summary: {
      mode: 'closed-loop',
      strategy: 'actor',
      payment_latency_ms: provider === undefined ? null : PAYMENT_LATENCY_MS,
      ...COLUMNS.keys('hot', hotF),
      ...COLUMNS.keys('spread', spreadF),
      p95_target_ms: P95_TARGET_MS,
      p95_target_met: p95Met,
      still_pending: stillPending,
      oversold: oversold(checks),
      ...health.summary,
      connections: options.connections,
      duration_s: options.durationS,
      spread_products: SPREAD_PRODUCTS,
    },
    table: COLUMNS.table(figures),
    notes,
    details: {
      hot,
      spread: spread.map((p) => p.id),
      paymentUrl: paymentUrl ?? null,
      checks,
      stackRestarted: restarted,
      provider: provider?.stats() ?? null,
      ambiguousSample: all.flatMap((r) => r.ambiguous).slice(0, 100),
      phases: all.map(phaseDetails),
      measured: figures.map(({ m, provider, writer }) => ({
        label: m.result.label,
        cpu: m.cpu,
        serviceCores: m.serviceCores,
        otherCores: m.otherCores,
        provider,
        dbPerS: m.dbPerS,
        ...writer,
      })),
      machineCores: cores(),
      // All answered requests of both measured phases together, for reference.
      answeredLatencyMsBoth: latencySummary(
        measured.reduce((h, m) => {
          h.add(m.result.answeredLatency);
          return h;
        }, newLatencyHistogram()),
      ),
    },
  };
}

export default defineScenario({
  name: 'saga',
  describe:
    'confirmed purchases/s and purchase p50/p95/p99 through the full saga (provider at 5 ms), 1 hot product then 100 products, actor, closed loop',
  defaults: { durationS: 10, connections: 200 },
  modes: ['closed'],
  run,
});
