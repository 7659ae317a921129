/**
 * Hot SKU, closed-loop mode (`--mode closed`): every purchase goes to one product. The same closed-loop load runs against an actor product
 * (group commit) and a baseline product (Redis lock + SELECT FOR UPDATE per request), alternating
 * A B A B so drift of the machine hits both paths alike; then MySQL is checked for oversell and lost orders.
 */
import type { Dispatcher } from 'undici';
import { closedLoopPool, type Strategy } from './api.js';
import { cores, otherCores } from './cpu.js';
import { newLatencyHistogram, runPurchasePhase, type PhaseResult } from './load.js';
import {
  DISTURBED_OTHER_CORES,
  latencySummary,
  maxMs,
  measurePhase,
  percentileMs,
  round,
  roundOrNull,
  sumDelta,
  writerFigures,
  type MeasuredPhase,
} from './measure.js';
import { columns, fixed, num, pct } from './report.js';
import { oversold, phaseHealthOf, type Run } from './scenario.js';
import type { ScenarioResult } from './types.js';

/** hot-sku's products (both modes): far more than either path sells in a run, so no phase ends in OUT_OF_STOCK. */
export const INITIAL_STOCK: Record<Strategy, number> = { actor: 10_000_000, baseline: 1_000_000 };
const WARMUP_S = 1;
export const PATHS: readonly Strategy[] = ['actor', 'baseline'];

const ORDER: readonly Strategy[] = ['actor', 'baseline', 'actor', 'baseline'];

/** One of the things a closed-loop run compares: products bought through a client, and where its metrics are. */
export interface ClosedLoopPath<P extends string = string> {
  readonly path: P;
  readonly http: Dispatcher;
  readonly productId: number;
  /** Several products, each request to one of them at random (default `[productId]`). */
  readonly productIds?: readonly number[];
  readonly initialStock: number;
  /** The node(s) whose `/metrics` a measured phase reads, each directly. */
  readonly metricsFrom: string | readonly string[];
}

export interface Measured<P extends string = string> extends MeasuredPhase<PhaseResult> {
  readonly path: P;
}

/** A 1 s warm-up of each path, then one measured phase per entry of `order`; every phase and the measured ones. */
export async function runAlternatingPhases<P extends string>(
  run: Run,
  o: {
    readonly paths: readonly ClosedLoopPath<P>[];
    readonly order: readonly P[];
    readonly tag: string;
    readonly phaseS?: number;
    /** Phases run so far per path, for the labels (`on #2`), when one run is split over several calls. */
    readonly numbering?: Map<P, number>;
    readonly label?: (path: P, n: number) => string;
    /** Called before each measured phase; what it returns, after it. */
    readonly onPhase?: (path: P) => () => void | Promise<void>;
    /** Purchases in flight (default --connections); 0 s: no warm-up. */
    readonly connections?: number;
    readonly warmUpS?: number;
  },
): Promise<{ all: PhaseResult[]; measured: Measured<P>[] }> {
  const { io, options } = run;
  const connections = o.connections ?? options.connections;
  const warmUpS = o.warmUpS ?? WARMUP_S;
  const byPath = new Map(o.paths.map((p) => [p.path, p]));
  const phaseOf = (p: ClosedLoopPath<P>, label: string, durationS: number, keyPrefix: string) =>
    runPurchasePhase({
      http: p.http,
      productIds: p.productIds ?? [p.productId],
      connections,
      durationS,
      label,
      keyPrefix,
      tokens: run.tokens,
      io,
    });
  const all: PhaseResult[] = [];
  if (warmUpS > 0)
    for (const p of o.paths) all.push(await phaseOf(p, `warm-up ${p.path}`, warmUpS, `${o.tag}-w-${p.path}`));
  const measured: Measured<P>[] = [];
  const seen = o.numbering ?? new Map<P, number>();
  const label = o.label ?? ((path, n) => `${path} #${n} closed-loop c=${connections}`);
  for (const [i, path] of o.order.entries()) {
    if (io.signal.aborted) throw new Error('interrupted');
    const p = byPath.get(path)!;
    const n = (seen.get(path) ?? 0) + 1;
    seen.set(path, n);
    const done = o.onPhase?.(path);
    const phaseS = o.phaseS ?? options.durationS / 2;
    const phase = await measurePhase(
      p.metricsFrom,
      run.pids,
      () => phaseOf(p, label(path, n), phaseS, `${o.tag}-${i}`),
      io.progress,
    );
    await done?.();
    measured.push({ path, ...phase });
    all.push(phase.result);
  }
  return { all, measured };
}

const ms = percentileMs;
const coresText = (n: number | undefined): string => fixed(n, 2);

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
  const batches = sumDelta(phases, 'product_batch_size_count');
  const batched = sumDelta(phases, 'product_batch_size_sum');
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

type Row = readonly [label: string, seconds: number, merged: ReturnType<typeof merge>];

/** The columns of closed-loop phases; `<path>_per_s`, `_p50_ms`, `_p99_ms`, `_errors` keys of a path's merged phases. */
const PHASE_COLUMNS = columns<Row>([
  ['phase (closed loop)', ([label]) => label],
  ['s', ([, seconds]) => round(seconds, 1)],
  ['purchases/s', ([, , m]) => Math.round(m.perS), 'per_s'],
  ['p50 ms', ([, , m]) => ms(m.latency, 50), 'p50_ms'],
  ['p99 ms', ([, , m]) => ms(m.latency, 99), 'p99_ms'],
  ['max ms', ([, , m]) => maxMs(m.latency)],
  ['errors', ([, , m]) => m.errors, 'errors'],
  ['mean batch', ([, , m]) => fixed(m.meanBatch, 1)],
  ['svc cores', ([, , m]) => coresText(m.serviceCores)],
  ['db cores', ([, , m]) => coresText(m.dbCores)],
  ['bench cores', ([, , m]) => coresText(m.benchCores)],
  ['other cores', ([, , m]) => coresText(m.otherCores)],
  ['machine busy', ([, , m]) => pct(m.machineBusy)],
]);

/** The table of closed-loop phases: each measured phase, then the `totals` (label, seconds, merged phases). */
const phaseTable = (measured: readonly Measured[], totals: readonly Row[]) =>
  PHASE_COLUMNS.table([
    ...measured.map((m): Row => [m.result.label, m.result.windowS, merge([m])]),
    ...totals,
  ]);

/**
 * The end of a closed-loop run comparing paths `a` and `b`: the checks (`run.check`), both paths merged, their
 * ratio and the ratio from the undisturbed phases only (when both have one), the run's health (`shardLosses`
 * over the check's), the table with each path's totals, the paths' summary keys and products.
 */
export async function compare<P extends string>(
  run: Run,
  paths: readonly ClosedLoopPath<P>[],
  { all, measured }: { readonly all: readonly PhaseResult[]; readonly measured: readonly Measured<P>[] },
  [a, b]: readonly [P, P],
  more: { shardLosses?: number; disturbedMore?: (ratioUndisturbed: number | undefined) => string } = {},
) {
  const checked = await run.check(
    paths.map((p) => ({ productId: p.productId, label: p.path, initialStock: p.initialStock })),
    all,
  );
  const { restarted } = checked;
  const A = merge(measured.filter((m) => m.path === a));
  const B = merge(measured.filter((m) => m.path === b));
  const undisturbed = measured.filter(
    (m) => restarted.length === 0 && (merge([m]).otherCores ?? 0) <= DISTURBED_OTHER_CORES,
  );
  const cleanA = undisturbed.filter((m) => m.path === a);
  const cleanB = undisturbed.filter((m) => m.path === b);
  const ratioUndisturbed =
    cleanA.length > 0 && cleanB.length > 0 ? merge(cleanA).perS / merge(cleanB).perS : undefined;
  const disturbed = measured.filter((m) => !undisturbed.includes(m)).map((m) => m.result.label);
  const shardLosses = more.shardLosses ?? checked.shardLosses;
  const benchCores = merge(measured).benchCores;
  return {
    ...checked,
    A,
    B,
    ratio: B.perS > 0 ? A.perS / B.perS : undefined,
    ratioUndisturbed,
    disturbed,
    benchCores,
    health: phaseHealthOf(
      { disturbed, phases: measured.length, background: run.background, restarted, shardLosses },
      benchCores,
      more.disturbedMore?.(ratioUndisturbed),
    ),
    table: phaseTable(measured, [
      [`${a} (both phases)`, run.options.durationS, A],
      [`${b} (both phases)`, run.options.durationS, B],
    ]),
    keys: Object.assign({}, PHASE_COLUMNS.keys(a, ['', 0, A]), PHASE_COLUMNS.keys(b, ['', 0, B])),
    products: Object.fromEntries(paths.map((p) => [p.path, p.productId])),
  };
}

/** Per-phase details of closed-loop phases. */
export const phaseDetails = ({
  productIds,
  perProduct: _,
  ambiguous: __,
  latency,
  answeredLatency,
  ...r
}: PhaseResult) => ({
  ...r,
  products: productIds.length,
  perS: round(r.perS, 1),
  answeredLatencyMs: latencySummary(answeredLatency),
  confirmedLatencyMs: latencySummary(latency),
});

/** `hot-sku --mode closed`: the scenario's first version, kept as a labelled closed-loop mode. */
export async function runClosedLoop(run: Run): Promise<ScenarioResult> {
  const { options, io } = run;
  await run.setUp({ cluster: { nodes: 1, nginx: false } });
  const pool = closedLoopPool(run.cluster.url, options.connections, io);
  const tag = run.tag('hs');
  io.progress(`bench: machine busy before the load (service idle): ${pct(run.background)}`);
  const products = await run.pathProducts(tag, INITIAL_STOCK);
  const paths = PATHS.map((path): ClosedLoopPath<Strategy> => {
    const initialStock = INITIAL_STOCK[path];
    return { path, http: pool, productId: products[path].id, initialStock, metricsFrom: run.cluster.url };
  });
  const phases = await runAlternatingPhases(run, { paths, order: ORDER, tag });
  const {
    A: actor,
    B: baseline,
    ratio = Infinity,
    benchCores: loadCores,
    ...c
  } = await compare(run, paths, phases, ['actor', 'baseline'], {
    disturbedMore: (ratioUndisturbed) =>
      `ratio from undisturbed phases only: ${ratioUndisturbed === undefined ? 'n/a (a path has none)' : `${ratioUndisturbed.toFixed(1)}x`}`,
  });
  const { all, measured } = phases;
  const notes = [
    `mode: CLOSED LOOP: ${options.connections} connections, each sends its next purchase only after the previous answer; latencies are not corrected for coordinated omission (an open-loop mode is issue 7).`,
    `ratio actor/baseline: ${ratio.toFixed(1)}x (${num(actor.perS)}/s vs ${num(baseline.perS)}/s)${ratio < 30 ? '  BELOW the 30x target' : ''}; mean actor batch ${actor.meanBatch?.toFixed(1) ?? '-'}`,
    `WARNING: the load generator used ${loadCores.toFixed(2)} cores over the run, ${actor.benchCores.toFixed(2)} during the actor phases (${Math.round((actor.benchCores / cores()) * 100)}% of this machine's ${cores()} cores), ` +
      'sharing them with the service, MariaDB, Redis and Kafka: the figures are for this whole box, not the service alone.',
    ...c.health.notes,
    `errors actor: ${JSON.stringify(actor.failures)}  baseline: ${JSON.stringify(baseline.failures)}`,
    ...c.notes,
    `correctness: ${c.ok ? 'OK' : 'FAILED'}`,
  ];

  return {
    ok: c.ok,
    summary: {
      mode: 'closed-loop',
      ...c.keys,
      ratio: round(ratio, 2),
      ratio_undisturbed: roundOrNull(c.ratioUndisturbed, 2),
      oversold: oversold(c.checks),
      mean_batch_size: roundOrNull(actor.meanBatch, 1),
      load_generator_machine_share: round(loadCores / cores(), 2),
      load_generator_cores_actor: round(actor.benchCores, 2),
      ...c.health.summary,
      connections: options.connections,
      duration_s: options.durationS,
    },
    table: c.table,
    notes,
    details: {
      products: c.products,
      checks: c.checks,
      stackRestarted: c.restarted,
      ambiguousSample: all.flatMap((r) => r.ambiguous).slice(0, 100),
      phases: all.map(phaseDetails),
      measured: measured.map((m) => ({
        label: m.result.label,
        cpu: m.cpu,
        serviceCores: m.serviceCores,
        dbPerS: m.dbPerS,
        ...writerFigures(m.metrics, m.cpu.wallS),
      })),
    },
  };
}
