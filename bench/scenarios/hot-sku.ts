/**
 * Hot SKU: every purchase goes to one product. Open loop (default): the offered rate steps up (×`step`)
 * alternating actor and baseline at each rate, until a path's step breaks the SLO (p99 > 100 ms or
 * errors > 1%); each path's capacity is its highest step that met it. `--mode closed` runs the scenario's
 * first, closed-loop version (bench/hot-sku-closed.ts). MySQL is checked for oversell and lost orders after.
 */
import { randomBytes } from 'node:crypto';
import { Pool } from 'undici';
import { createProduct, type CreatedProduct, type Strategy } from '../api.js';
import { benchUser, BenchTokens } from '../auth.js';
import { curveChart, latencyChart, throughputChart, type CurvePoint, type RatePoint } from '../chart.js';
import { startCluster } from '../cluster.js';
import { ConnectionSet } from '../connections.js';
import { backgroundBusy, cores, stackPids } from '../cpu.js';
import { runClosedLoop } from '../hot-sku-closed.js';
import {
  DISTURBED_OTHER_CORES,
  measureOpenLoop,
  percentileMs,
  round,
  runHealth,
  type StageFigures,
} from '../measure.js';
import { runOpenLoop, type OpenLoopResult } from '../open-loop.js';
import { numberParam } from '../params.js';
import { PurchaseLedger } from '../purchase-ledger.js';
import { histogramMean } from '../prom.js';
import { num } from '../report.js';
import { OWNERSHIP_WARNINGS } from '../service.js';
import type { BenchIO, BenchOptions, ScenarioResult } from '../types.js';
import { expectedFrom, verifyProducts, waitForSagas } from '../verify.js';

export const name = 'hot-sku';
export const describe =
  'one hot product, actor vs baseline: open-loop step-up of the offered rate until p99 > 100 ms or errors > 1% (--mode closed: the closed-loop A B A B version)';
export const defaults = { durationS: 5, connections: 500, rate: 200 };
export const modes = ['open', 'closed'] as const;

const INITIAL_STOCK: Record<Strategy, number> = { actor: 10_000_000, baseline: 1_000_000 };
const SLO_P99_MS = 100;
const SLO_ERROR_SHARE = 0.01;
const SAGA_WAIT_MS = 45_000;
const PATHS: readonly Strategy[] = ['actor', 'baseline'];

interface Step {
  readonly path: Strategy;
  readonly offered: number;
  readonly result: OpenLoopResult;
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly errorShare: number;
  readonly pass: boolean;
  readonly serviceCores: number;
  /** The step's purchase stages from the nodes' histograms (ms). */
  readonly stages: StageFigures;
  readonly otherCores: number | undefined;
  readonly meanBatch: number | undefined;
  readonly startS: number;
}

export async function run(options: BenchOptions, io: BenchIO): Promise<ScenarioResult> {
  if (options.mode === 'closed') return runClosedLoop(options, io);
  const factor = numberParam(options, 'step', 1.5, 1.05, 10);
  const maxSteps = numberParam(options, 'max-steps', 14, 1, 50);
  const pause = numberParam(options, 'pause', 1, 0, 60);
  const firstRate = options.rate ?? defaults.rate;
  const cluster = await startCluster(options, io, { nodes: 1, paymentLatencyMs: 5 });
  const node = cluster.nodes[0];
  const connections = new ConnectionSet(cluster.url, options.connections, { timeoutMs: 60_000 });
  io.onCleanup(() => connections.close());
  const admin = new Pool(cluster.url, { connections: 4 });
  io.onCleanup(() => admin.close());
  const tag = `hs${options.runTag}${randomBytes(3).toString('hex')}`;
  const tokens = await BenchTokens.mint(options, io);
  const products = {} as Record<Strategy, CreatedProduct>;
  for (const path of PATHS)
    products[path] = await createProduct(admin, tokens, {
      name: `bench ${tag} ${path}`,
      priceCents: 1999,
      stock: INITIAL_STOCK[path],
      strategy: path,
    });
  const opened = await connections.open('/health');
  io.progress(`bench: ${num(opened)} of ${num(options.connections)} connections open`);
  const pids = stackPids();
  const background = await backgroundBusy(2_000);
  const ledger = new PurchaseLedger(
    tokens,
    PATHS.map((p) => products[p].id),
  );

  let seq = 0;
  const purchase = (productId: number) => () => {
    seq += 1;
    return ledger.purchase('purchase', productId, 1, `${tag}-${seq}`, benchUser(seq));
  };
  // Unmeasured: actor activation, JIT, connection and pool warm-up of both paths.
  for (const path of PATHS)
    await runOpenLoop({
      connections,
      rate: firstRate,
      durationS: 1,
      label: `warm-up ${path}`,
      io,
      next: purchase(products[path].id),
    });

  const steps: Step[] = [];
  const active = new Set<Strategy>(PATHS);
  let rate = firstRate;
  let clock = 0;
  for (let i = 0; i < maxSteps && active.size > 0 && !io.signal.aborted; i += 1) {
    for (const path of PATHS) {
      if (!active.has(path)) continue;
      const productId = products[path].id;
      const measured = await measureOpenLoop(cluster.metricsUrls, pids, {
        connections,
        rate,
        durationS: options.durationS,
        label: `${path} @ ${num(rate)}/s`,
        io,
        next: purchase(productId),
      });
      const r = measured.result;
      const h = r.ops.get('purchase')?.latency;
      const p99 = h === undefined ? NaN : percentileMs(h, 99);
      const errorShare = r.scheduled > 0 ? r.errors / r.scheduled : 0;
      const pass = Number.isFinite(p99) && p99 <= SLO_P99_MS && errorShare <= SLO_ERROR_SHARE;
      steps.push({
        path,
        offered: rate,
        result: r,
        p50: h === undefined ? NaN : percentileMs(h, 50),
        p99,
        p999: h === undefined ? NaN : percentileMs(h, 99.9),
        max: h === undefined ? NaN : round(h.max / 1000, 1),
        errorShare,
        pass,
        serviceCores: measured.serviceCores,
        otherCores: measured.otherCores,
        meanBatch: histogramMean(measured.metrics.before, measured.metrics.after, 'product_batch_size'),
        stages: measured.stages,
        startS: clock,
      });
      clock += r.wallS + pause;
      io.progress(
        `bench: ${path} @ ${num(rate)}/s: p99 ${p99} ms, errors ${(errorShare * 100).toFixed(2)}% → ${pass ? 'meets' : 'BREAKS'} the SLO`,
      );
      if (!pass) active.delete(path);
      await new Promise((resolve) => setTimeout(resolve, pause * 1000));
    }
    rate = Math.round(rate * factor);
  }

  io.progress(`bench: waiting up to ${SAGA_WAIT_MS / 1000} s for open sagas, then checking MySQL`);
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  await waitForSagas(
    PATHS.map((p) => products[p].id),
    SAGA_WAIT_MS,
  );
  const checks = await verifyProducts(
    expectedFrom(
      [ledger],
      PATHS.map((p) => ({ productId: products[p].id, label: p, initialStock: INITIAL_STOCK[p] })),
    ),
  );
  const ownership = (await node?.countLogMessages(OWNERSHIP_WARNINGS)) ?? {};
  const shardLosses = Object.values(ownership).reduce((a, b) => a + b, 0);
  const restarted = Object.entries(pids)
    .filter(([n, pid]) => stackPids()[n] !== pid)
    .map(([n]) => n);
  const ok = checks.every((c) => c.ok) && ledger.replayed === 0;

  const capacity = (path: Strategy) => {
    const mine = steps.filter((s) => s.path === path);
    const firstFail = mine.findIndex((s) => !s.pass);
    const passing = firstFail === -1 ? mine : mine.slice(0, firstFail);
    const best = passing[passing.length - 1];
    return {
      best,
      capped: firstFail === -1 && mine.length > 0,
      broke: firstFail === -1 ? undefined : mine[firstFail],
    };
  };
  const actor = capacity('actor');
  const baseline = capacity('baseline');
  const actorPerS = actor.best?.result.okPerS ?? 0;
  const baselinePerS = baseline.best?.result.okPerS ?? 0;
  const ratio = baselinePerS > 0 ? actorPerS / baselinePerS : null;
  const disturbed = steps.filter((s) => restarted.length > 0 || (s.otherCores ?? 0) > DISTURBED_OTHER_CORES);
  const genCores = Math.max(...steps.map((s) => s.result.generatorCores));
  const warnings = steps.flatMap((s) => s.result.warnings);
  const capText = (c: ReturnType<typeof capacity>) =>
    c.best === undefined
      ? 'none (the first step already broke the SLO: lower --rate)'
      : `${num(c.best.result.okPerS)}/s (offered ${num(c.best.offered)}/s, p99 ${c.best.p99} ms)${c.capped ? ' or more: never broke the SLO within --param max-steps' : `; broke at ${num(c.broke!.offered)}/s (p99 ${c.broke!.p99} ms, errors ${(c.broke!.errorShare * 100).toFixed(2)}%)`}`;

  const notes = [
    `mode: OPEN LOOP, offered rate stepped ×${factor} from ${num(firstRate)}/s, ${options.durationS} s per step and path, actor then baseline at each rate; latency from each request's intended send time (coordinated omission corrected); ${num(options.connections)} connections.`,
    `SLO: p99 ≤ ${SLO_P99_MS} ms and errors ≤ ${SLO_ERROR_SHARE * 100}% (an error = any answer but a fresh 201, or no answer). Capacity = confirmed purchases/s at the highest step meeting it (resolution: one step, ×${factor}).`,
    `actor capacity: ${capText(actor)}`,
    `baseline capacity: ${capText(baseline)}`,
    `ratio actor/baseline: ${ratio === null ? 'n/a' : `${ratio.toFixed(1)}x`}`,
    `load generator: up to ${genCores.toFixed(2)} cores in a step (${Math.round((genCores / cores()) * 100)}% of this machine's ${cores()} cores), sharing them with the service, MariaDB, Redis, Kafka and the payment provider.`,
    ...warnings.map((w) => `WARNING: ${w}`),
    ...(disturbed.length > 0
      ? [
          `WARNING: ${disturbed.length} of ${steps.length} steps disturbed (other processes > ${DISTURBED_OTHER_CORES} cores${restarted.length > 0 ? `, or stack restarted: ${restarted.join(', ')}` : ''}): ${disturbed.map((s) => s.result.label).join(', ')}`,
        ]
      : []),
    ...(background !== undefined && background > 0.1
      ? [`WARNING: the machine was ${Math.round(background * 100)}% busy before the load`]
      : []),
    ...(shardLosses > 0
      ? [`WARNING: shard-lease trouble in the service log: ${JSON.stringify(ownership)}`]
      : []),
    ...checks.map(
      (c) =>
        `check ${c.label} (product ${c.productId}): initial ${num(c.initialStock)} - stock ${num(c.stock)} = ${num(c.initialStock - c.stock)} vs SUM(quantity) ${num(c.sold)} ${c.stockMatches ? 'OK' : 'MISMATCH'}; ` +
        `orders confirmed ${num(c.orders.CONFIRMED)} / cancelled ${num(c.orders.CANCELLED)} / pending ${num(c.orders.PENDING)} vs 201 ${num(c.confirmed)} / 402 ${num(c.declined)} + ${num(c.answered202)} 202 + ${num(c.ambiguous)} 5xx/transport ${c.ordersMatch ? 'OK' : 'MISMATCH'}; oversold ${c.oversold}`,
    ),
    ...(ledger.replayed > 0 ? [`FAIL: ${ledger.replayed} fresh keys answered as replays`] : []),
    `correctness: ${ok ? 'OK' : 'FAILED'}`,
  ];

  const timeline: RatePoint[] = steps.flatMap((s) =>
    s.result.timeline.flatMap((b) => [
      { t: round(s.startS + b.t, 1), series: `${s.path} offered`, perS: b.offered },
      { t: round(s.startS + b.t, 1), series: `${s.path} answered`, perS: b.completed },
      { t: round(s.startS + b.t, 1), series: `${s.path} errors`, perS: b.errors },
    ]),
  );
  const curve: CurvePoint[] = steps.flatMap((s) => [
    { series: s.path, offered: s.offered, ms: s.p50, percentile: 'p50' },
    { series: s.path, offered: s.offered, ms: s.p99, percentile: 'p99' },
  ]);
  const latencyRows = steps
    .filter((s) => s === actor.best || s === baseline.best || s === actor.broke || s === baseline.broke)
    .map((s) => {
      const h = s.result.ops.get('purchase')!.latency;
      return {
        op: `${s.path} @ ${num(s.offered)}/s`,
        p50: s.p50,
        p95: percentileMs(h, 95),
        p99: s.p99,
        p999: s.p999,
        max: s.max,
      };
    });

  return {
    ok,
    summary: {
      mode: 'open-loop',
      actor_per_s: Math.round(actorPerS),
      baseline_per_s: Math.round(baselinePerS),
      ratio: ratio === null ? null : round(ratio, 2),
      oversold: checks.reduce((sum, c) => sum + c.oversold, 0),
      actor_offered_per_s: actor.best?.offered ?? 0,
      baseline_offered_per_s: baseline.best?.offered ?? 0,
      actor_capped: actor.capped,
      baseline_capped: baseline.capped,
      actor_p99_ms: actor.best?.p99 ?? null,
      baseline_p99_ms: baseline.best?.p99 ?? null,
      actor_broke_at_per_s: actor.broke?.offered ?? null,
      baseline_broke_at_per_s: baseline.broke?.offered ?? null,
      slo_p99_ms: SLO_P99_MS,
      slo_error_pct: SLO_ERROR_SHARE * 100,
      step_factor: factor,
      steps: steps.length,
      ...runHealth({
        disturbedSteps: disturbed.length,
        generatorCores: genCores,
        generatorWarnings: warnings.length,
        background,
        stackRestarted: restarted.length > 0,
        shardLosses,
      }),
      connections: options.connections,
      step_s: options.durationS,
    },
    table: {
      columns: [
        'path @ offered/s',
        'achieved/s',
        'ok/s',
        'p50 ms',
        'p99 ms',
        'p99.9 ms',
        'max ms',
        'errors %',
        'SLO',
        'batch',
        'svc cores',
        'gen cores',
        'other cores',
      ],
      rows: steps.map((s) => [
        s.result.label,
        Math.round(s.result.achievedPerS),
        Math.round(s.result.okPerS),
        s.p50,
        s.p99,
        s.p999,
        s.max,
        round(s.errorShare * 100, 2),
        s.pass ? 'met' : 'BROKEN',
        s.meanBatch === undefined ? '-' : s.meanBatch.toFixed(1),
        s.serviceCores.toFixed(2),
        s.result.generatorCores.toFixed(2),
        s.otherCores === undefined ? '-' : s.otherCores.toFixed(2),
      ]),
    },
    notes,
    details: {
      products,
      checks,
      ownershipWarnings: ownership,
      stackRestarted: restarted,
      ambiguousSample: ledger.ambiguous.slice(0, 100),
      steps: steps.map((s) => ({
        path: s.path,
        offered: s.offered,
        achievedPerS: round(s.result.achievedPerS, 1),
        okPerS: round(s.result.okPerS, 1),
        p50: s.p50,
        p99: s.p99,
        p999: s.p999,
        max: s.max,
        errorShare: s.errorShare,
        statuses: s.result.ops.get('purchase')?.statuses,
        pass: s.pass,
        schedulerLagP99Ms: round(s.result.schedulerLag.percentile(99) / 1000, 2),
        generatorCores: s.result.generatorCores,
        serviceCores: s.serviceCores,
        stages: s.stages,
        otherCores: s.otherCores,
        meanBatch: s.meanBatch,
        timeline: s.result.timeline,
      })),
    },
    charts: [
      curveChart(
        `hot-sku: purchase latency vs offered rate (open loop, SLO p99 ${SLO_P99_MS} ms)`,
        curve,
        SLO_P99_MS,
      ),
      latencyChart('hot-sku: purchase latency at capacity and at the first broken step', latencyRows),
      throughputChart('hot-sku: offered vs answered per second, steps in order', timeline),
    ],
  };
}
