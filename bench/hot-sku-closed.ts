/**
 * Hot SKU, closed-loop mode (`--mode closed`): every purchase goes to one product. The same closed-loop load runs against an actor product
 * (group commit) and a baseline product (Redis lock + SELECT FOR UPDATE per request), alternating
 * A B A B so drift of the machine hits both paths alike; then MySQL is checked for oversell and lost orders.
 */
import { randomBytes } from 'node:crypto';
import type { Dispatcher } from 'undici';
import { closedLoopPool, createProduct, type CreatedProduct, type Strategy } from './api.js';
import { BenchTokens } from './auth.js';
import { backgroundBusy, cores, otherCores, stackPids } from './cpu.js';
import { newLatencyHistogram, runPurchasePhase, type PhaseResult } from './load.js';
import {
  DISTURBED_OTHER_CORES,
  maxMs,
  measurePhase,
  percentileMs,
  round,
  type MeasuredPhase,
} from './measure.js';
import { delta, familyDelta, familyMean, histogramMean } from './prom.js';
import { num } from './report.js';
import { OWNERSHIP_WARNINGS, startService } from './service.js';
import type { BenchIO, BenchOptions, ScenarioResult } from './types.js';
import { expectedFrom, verifyProducts, waitForSagas, type ProductCheck } from './verify.js';

/** Far more than either path sells in a run, so no phase ends in OUT_OF_STOCK. */
const INITIAL_STOCK: Record<Strategy, number> = { actor: 10_000_000, baseline: 1_000_000 };
const WARMUP_S = 1;
const SETTLE_MS = 2_000;
/** Sagas still open after the load (202 answers) end within the service's saga deadline (30 s by default). */
const SAGA_WAIT_MS = 45_000;
const PATHS: readonly Strategy[] = ['actor', 'baseline'];

const ORDER: readonly Strategy[] = ['actor', 'baseline', 'actor', 'baseline'];

/** One of the things a closed-loop run compares: a product bought through a client, and where its metrics are. */
export interface ClosedLoopPath<P extends string = string> {
  readonly path: P;
  readonly http: Dispatcher;
  readonly productId: number;
  readonly initialStock: number;
  /** The node(s) whose `/metrics` a measured phase reads, each directly. */
  readonly metricsFrom: string | readonly string[];
}

export interface Measured<P extends string = string> extends MeasuredPhase<PhaseResult> {
  readonly path: P;
}

/**
 * The closed-loop run of hot-sku: a 1 s unmeasured warm-up of each path, then one measured phase per entry
 * of `order`, each `phaseS` long at `connections` purchases in flight (bench/load.ts), /metrics and CPU
 * around it (bench/measure.ts). Returns every phase (warm-ups too, for the checks) and the measured ones.
 */
export async function runAlternatingPhases<P extends string>(run: {
  readonly paths: readonly ClosedLoopPath<P>[];
  readonly order: readonly P[];
  readonly phaseS: number;
  readonly connections: number;
  readonly tag: string;
  readonly tokens: BenchTokens;
  readonly pids: Readonly<Record<string, number>>;
  readonly io: BenchIO;
  /** Phases run so far per path, for the labels (`on #2`), when one run is split over several calls. */
  readonly numbering?: Map<P, number>;
}): Promise<{ all: PhaseResult[]; measured: Measured<P>[] }> {
  const { io } = run;
  const byPath = new Map(run.paths.map((p) => [p.path, p]));
  const phaseOf = (p: ClosedLoopPath<P>, label: string, durationS: number, keyPrefix: string) =>
    runPurchasePhase({
      http: p.http,
      productIds: [p.productId],
      connections: run.connections,
      durationS,
      label,
      keyPrefix,
      tokens: run.tokens,
      io,
    });
  const all: PhaseResult[] = [];
  for (const p of run.paths)
    all.push(await phaseOf(p, `warm-up ${p.path}`, WARMUP_S, `${run.tag}-w-${p.path}`));
  const measured: Measured<P>[] = [];
  const seen = run.numbering ?? new Map<P, number>();
  for (const [i, path] of run.order.entries()) {
    if (io.signal.aborted) throw new Error('interrupted');
    const p = byPath.get(path)!;
    const n = (seen.get(path) ?? 0) + 1;
    seen.set(path, n);
    const phase = await measurePhase(
      p.metricsFrom,
      run.pids,
      () => phaseOf(p, `${path} #${n} closed-loop c=${run.connections}`, run.phaseS, `${run.tag}-${i}`),
      io.progress,
    );
    measured.push({ path, ...phase });
    all.push(phase.result);
  }
  return { all, measured };
}

/**
 * After the phases: waits for in-flight writes and open sagas, then checks each path's product in MySQL
 * against the answers of every phase (bench/verify.ts).
 */
export async function checkAfterLoad(
  all: readonly PhaseResult[],
  paths: readonly ClosedLoopPath[],
  io: BenchIO,
): Promise<ProductCheck[]> {
  // Requests past their deadline are dropped untouched; a batch already being written lands within ms.
  io.progress(
    `bench: waiting ${SETTLE_MS} ms for in-flight writes and up to ${SAGA_WAIT_MS} ms for open sagas, then checking MySQL`,
  );
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  await waitForSagas(
    paths.map((p) => p.productId),
    SAGA_WAIT_MS,
  );
  return verifyProducts(
    expectedFrom(
      all,
      paths.map((p) => ({ productId: p.productId, label: p.path, initialStock: p.initialStock })),
    ),
  );
}

/** One line of a closed-loop check for the notes. */
export function checkNote(c: ProductCheck): string {
  return (
    `check ${c.label} (product ${c.productId}): initial ${num(c.initialStock)} - stock ${num(c.stock)} = ${num(c.initialStock - c.stock)}, ` +
    `SUM(quantity) of pending+confirmed orders ${num(c.sold)} ${c.stockMatches ? 'OK' : 'MISMATCH'}; ` +
    `orders confirmed ${num(c.orders.CONFIRMED)} / cancelled ${num(c.orders.CANCELLED)} / pending ${num(c.orders.PENDING)} vs answers 201 ${num(c.confirmed)} / 402 ${num(c.declined)}` +
    `${c.answered202 + c.ambiguous > 0 ? ` + ${num(c.answered202)} 202 and ${num(c.ambiguous)} 5xx/transport (${num(c.unsure.CONFIRMED)} confirmed, ${num(c.unsure.CANCELLED)} cancelled, ${num(c.unsure.PENDING)} pending among them)` : ''} ` +
    `${c.ordersMatch ? 'OK' : 'MISMATCH'}; oversold ${c.oversold}${c.stillPending > 0 ? `; ${num(c.stillPending)} sagas still open after ${SAGA_WAIT_MS / 1000} s` : ''}`
  );
}

const ms = percentileMs;
const pct = (n: number | undefined): string => (n === undefined ? '-' : `${Math.round(n * 100)}%`);
const coresText = (n: number | undefined): string => (n === undefined ? '-' : n.toFixed(2));

/** Measured phases of one path together: rate, latency of 201s, errors, batch, CPU (wall-weighted). */
export function merge(phases: readonly Measured[]) {
  const latency = newLatencyHistogram();
  const failures: Record<string, number> = {};
  let created = 0;
  let windowS = 0;
  for (const { result } of phases) {
    latency.add(result.latency);
    created += result.createdInWindow;
    windowS += result.windowS;
    for (const [answer, n] of Object.entries(result.failures)) failures[answer] = (failures[answer] ?? 0) + n;
  }
  const batches = phases.reduce(
    (sum, p) => sum + delta(p.metrics.before, p.metrics.after, 'product_batch_size_count'),
    0,
  );
  const batched = phases.reduce(
    (sum, p) => sum + delta(p.metrics.before, p.metrics.after, 'product_batch_size_sum'),
    0,
  );
  const wall = phases.reduce((sum, p) => sum + p.cpu.wallS, 0);
  const weighted = (get: (p: Measured) => number | undefined): number | undefined =>
    phases.every((p) => get(p) !== undefined)
      ? phases.reduce((sum, p) => sum + get(p)! * p.cpu.wallS, 0) / wall
      : undefined;
  return {
    perS: created / windowS,
    latency,
    failures,
    errors: Object.values(failures).reduce((a, b) => a + b, 0),
    meanBatch: batches > 0 ? batched / batches : undefined,
    benchCores: weighted((p) => p.cpu.benchCores)!,
    serviceCores: weighted((p) => p.serviceCores),
    dbCores: weighted((p) => p.cpu.processCores['mariadb_primary']),
    machineBusy: weighted((p) => p.cpu.machineBusy),
    otherCores: weighted((p) => otherCores(p.cpu, [p.serviceCores, ...Object.values(p.cpu.processCores)])),
  };
}

/** The table columns `row` fills. */
export const PHASE_COLUMNS = [
  'phase (closed loop)',
  's',
  'purchases/s',
  'p50 ms',
  'p99 ms',
  'max ms',
  'errors',
  'mean batch',
  'svc cores',
  'db cores',
  'bench cores',
  'other cores',
  'machine busy',
] as const;

export function row(label: string, seconds: number, m: ReturnType<typeof merge>): (string | number)[] {
  return [
    label,
    round(seconds, 1),
    Math.round(m.perS),
    ms(m.latency, 50),
    ms(m.latency, 99),
    maxMs(m.latency),
    m.errors,
    m.meanBatch === undefined ? '-' : m.meanBatch.toFixed(1),
    coresText(m.serviceCores),
    coresText(m.dbCores),
    coresText(m.benchCores),
    coresText(m.otherCores),
    pct(m.machineBusy),
  ];
}

/** `hot-sku --mode closed`: the scenario's first version, kept as a labelled closed-loop mode. */
export async function runClosedLoop(options: BenchOptions, io: BenchIO): Promise<ScenarioResult> {
  const service = await startService(options, io);
  const pool = closedLoopPool(service.url, options.connections, io);
  const tag = `hs${options.runTag}${randomBytes(3).toString('hex')}`;
  const tokens = await BenchTokens.mint(options, io);
  const products: Record<Strategy, CreatedProduct> = {
    actor: await createProduct(pool, tokens, {
      name: `bench ${tag} actor`,
      priceCents: 1999,
      stock: INITIAL_STOCK.actor,
      strategy: 'actor',
    }),
    baseline: await createProduct(pool, tokens, {
      name: `bench ${tag} baseline`,
      priceCents: 1999,
      stock: INITIAL_STOCK.baseline,
      strategy: 'baseline',
    }),
  };
  const pids = stackPids();
  const background = await backgroundBusy(2_000);
  io.progress(`bench: machine busy before the load (service idle): ${pct(background)}`);
  const paths: ClosedLoopPath<Strategy>[] = PATHS.map((path) => ({
    path,
    http: pool,
    productId: products[path].id,
    initialStock: INITIAL_STOCK[path],
    metricsFrom: service.url,
  }));
  const { all, measured } = await runAlternatingPhases({
    paths,
    order: ORDER,
    phaseS: options.durationS / 2,
    connections: options.connections,
    tag,
    tokens,
    pids,
    io,
  });
  const ambiguous = all.flatMap((r) => r.ambiguous);
  const checks = await checkAfterLoad(all, paths, io);
  const ownership = await service.countLogMessages(OWNERSHIP_WARNINGS);
  const shardLosses = Object.values(ownership).reduce((a, b) => a + b, 0);
  const restarted = Object.entries(pids)
    .filter(([name, pid]) => stackPids()[name] !== pid)
    .map(([name]) => name);
  const replayed = all.reduce((sum, r) => sum + r.replayed, 0);
  const ok = checks.every((c) => c.ok) && replayed === 0;

  const actor = merge(measured.filter((m) => m.path === 'actor'));
  const baseline = merge(measured.filter((m) => m.path === 'baseline'));
  const ratio = baseline.perS > 0 ? actor.perS / baseline.perS : Infinity;
  // Other users of the machine come and go: a ratio from the undisturbed phases only, when both paths have one.
  const undisturbed = measured.filter(
    (m) => restarted.length === 0 && (merge([m]).otherCores ?? 0) <= DISTURBED_OTHER_CORES,
  );
  const cleanActor = undisturbed.filter((m) => m.path === 'actor');
  const cleanBaseline = undisturbed.filter((m) => m.path === 'baseline');
  const ratioUndisturbed =
    cleanActor.length > 0 && cleanBaseline.length > 0
      ? merge(cleanActor).perS / merge(cleanBaseline).perS
      : undefined;
  const disturbed = measured.filter((m) => !undisturbed.includes(m)).map((m) => m.result.label);
  const loadCores = merge(measured).benchCores;
  const halfS = options.durationS / 2;

  const notes = [
    `mode: CLOSED LOOP: ${options.connections} connections, each sends its next purchase only after the previous answer; latencies are not corrected for coordinated omission (an open-loop mode is issue 7).`,
    `ratio actor/baseline: ${ratio.toFixed(1)}x (${num(actor.perS)}/s vs ${num(baseline.perS)}/s)${ratio < 30 ? '  BELOW the 30x target' : ''}; mean actor batch ${actor.meanBatch?.toFixed(1) ?? '-'}`,
    `WARNING: the load generator used ${loadCores.toFixed(2)} cores over the run, ${actor.benchCores.toFixed(2)} during the actor phases (${Math.round((actor.benchCores / cores()) * 100)}% of this machine's ${cores()} cores), ` +
      'sharing them with the service, MariaDB, Redis and Kafka: the figures are for this whole box, not the service alone.',
    ...(disturbed.length > 0
      ? [
          `WARNING: ${disturbed.length} of ${measured.length} phases were disturbed (other processes took > ${DISTURBED_OTHER_CORES} cores): ${disturbed.join(', ')}; ` +
            `ratio from undisturbed phases only: ${ratioUndisturbed === undefined ? 'n/a (a path has none)' : `${ratioUndisturbed.toFixed(1)}x`}`,
        ]
      : []),
    ...(background !== undefined && background > 0.1
      ? [
          `WARNING: the machine was ${pct(background)} busy before the load started (other processes); 'other cores' shows what they took during each phase.`,
        ]
      : []),
    `errors actor: ${JSON.stringify(actor.failures)}  baseline: ${JSON.stringify(baseline.failures)}`,
    ...checks.map(checkNote),
    ...(restarted.length > 0
      ? [
          `WARNING: stack process(es) ${restarted.join(', ')} restarted during the run (not by the bench): the figures are disturbed.`,
        ]
      : []),
    ...(replayed > 0 ? [`FAIL: ${replayed} fresh keys were answered as replays`] : []),
    ...(shardLosses > 0
      ? [
          `WARNING: the service logged shard-lease trouble during the run (${JSON.stringify(ownership)}): requests may have been refused or forwarded meanwhile.`,
        ]
      : []),
    `correctness: ${ok ? 'OK' : 'FAILED'}`,
  ];

  return {
    ok,
    summary: {
      mode: 'closed-loop',
      actor_per_s: Math.round(actor.perS),
      baseline_per_s: Math.round(baseline.perS),
      ratio: round(ratio, 2),
      ratio_undisturbed: ratioUndisturbed === undefined ? null : round(ratioUndisturbed, 2),
      disturbed_phases: disturbed.length,
      actor_p50_ms: ms(actor.latency, 50),
      actor_p99_ms: ms(actor.latency, 99),
      baseline_p50_ms: ms(baseline.latency, 50),
      baseline_p99_ms: ms(baseline.latency, 99),
      actor_errors: actor.errors,
      baseline_errors: baseline.errors,
      oversold: checks.reduce((sum, c) => sum + c.oversold, 0),
      mean_batch_size: actor.meanBatch === undefined ? null : round(actor.meanBatch, 1),
      load_generator_cores: round(loadCores, 2),
      load_generator_machine_share: round(loadCores / cores(), 2),
      load_generator_cores_actor: round(actor.benchCores, 2),
      background_busy: background === undefined ? null : round(background, 2),
      stack_restarted: restarted.length > 0,
      shard_losses: shardLosses,
      connections: options.connections,
      duration_s: options.durationS,
    },
    table: {
      columns: PHASE_COLUMNS,
      rows: [
        ...measured.map((m) => row(m.result.label, m.result.windowS, merge([m]))),
        row('actor (both phases)', halfS * 2, actor),
        row('baseline (both phases)', halfS * 2, baseline),
      ],
    },
    notes,
    details: {
      products,
      checks,
      stackRestarted: restarted,
      ownershipWarnings: ownership,
      ambiguousSample: ambiguous.slice(0, 100),
      phases: all.map((r) => ({
        label: r.label,
        productId: r.productIds[0],
        windowS: r.windowS,
        sent: r.sent,
        created: r.created,
        createdInWindow: r.createdInWindow,
        replayed: r.replayed,
        failures: r.failures,
        perS: round(r.perS, 1),
        monotonicUs: r.monotonicUs,
        latencyMs: {
          p50: ms(r.latency, 50),
          p90: ms(r.latency, 90),
          p99: ms(r.latency, 99),
          p999: ms(r.latency, 99.9),
          max: maxMs(r.latency),
          mean: round(r.latency.mean / 1000, 2),
        },
      })),
      measured: measured.map((m) => ({
        label: m.result.label,
        cpu: m.cpu,
        serviceCores: m.serviceCores,
        batches: delta(m.metrics.before, m.metrics.after, 'product_batch_size_count'),
        meanBatchSize: histogramMean(m.metrics.before, m.metrics.after, 'product_batch_size'),
        meanBatchWriteMs:
          (histogramMean(
            m.metrics.before,
            m.metrics.after,
            'product_batch_duration_seconds',
            '{outcome="committed"}',
          ) ?? NaN) * 1000,
        meanSagaMs: (familyMean(m.metrics.before, m.metrics.after, 'saga_duration_seconds') ?? NaN) * 1000,
        sagasEnded: familyDelta(m.metrics.before, m.metrics.after, 'saga_duration_seconds_count'),
        eventLoopLagP99S: m.metrics.after.get('nodejs_eventloop_lag_p99_seconds'),
        dbPerS: m.dbPerS,
      })),
    },
  };
}
