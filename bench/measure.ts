/**
 * One measured phase: the nodes' `GET /metrics` (Prometheus text, read into maps for before/after deltas) and
 * CPU (/proc) before and after, around whatever load the phase runs. Shared by the scenarios so every phase is
 * judged the same way (disturbed or not).
 */
import type { RecordableHistogram } from 'node:perf_hooks';
import { request } from 'undici';
import { cpuShares, cpuSnapshot, otherCores, type CpuShares } from './cpu.js';

/** Sample name with its label set as printed (`name{a="b"}`) → value. */
export type Samples = ReadonlyMap<string, number>;

/** `GET <url>/metrics` of one node, directly: the service answers it only to a direct loopback client. */
export async function scrape(url: string): Promise<Samples> {
  const res = await request(`${url}/metrics`, { headersTimeout: 10_000, bodyTimeout: 10_000 });
  const text = await res.body.text();
  if (res.statusCode === 404)
    throw new Error(
      `GET ${url}/metrics answered 404: /metrics is served only to a direct loopback client, never through nginx; ` +
        'give a node, not the balancer (e.g. --url http://127.0.0.1:8081)',
    );
  if (res.statusCode !== 200)
    throw new Error(`GET ${url}/metrics answered ${res.statusCode}: ${text.slice(0, 200)}`);
  return parseSamples(text);
}

/** Every node's `/metrics`, each read directly, summed sample by sample (counters and sums add up). */
export async function scrapeNodes(urls: readonly string[]): Promise<Samples> {
  const sum = new Map<string, number>();
  for (const samples of await Promise.all(urls.map(scrape)))
    for (const [k, v] of samples) sum.set(k, (sum.get(k) ?? 0) + v);
  return sum;
}

export function parseSamples(text: string): Samples {
  const samples = new Map<string, number>();
  for (const match of text.matchAll(/^([A-Za-z_:][\w:]*(?:\{[^}]*\})?)[ \t]+(\S+)/gm))
    samples.set(match[1]!, Number(match[2]));
  return samples;
}

/** after − before for one sample (a missing sample counts as 0). */
export const delta = (before: Samples, after: Samples, sample: string): number =>
  (after.get(sample) ?? 0) - (before.get(sample) ?? 0);

/** after − before summed over every label set of one sample name (`name` and `name{...}`) holding all `labels`. */
export function familyDelta(before: Samples, after: Samples, name: string, ...labels: string[]): number {
  let sum = 0;
  for (const sample of after.keys())
    if ((sample === name || sample.startsWith(`${name}{`)) && labels.every((l) => sample.includes(l)))
      sum += delta(before, after, sample);
  return sum;
}

/** Mean of a histogram over an interval, over its label sets holding all `labels`; undefined when none observed. */
export function histogramMean(before: Samples, after: Samples, name: string, ...labels: string[]) {
  const count = familyDelta(before, after, `${name}_count`, ...labels);
  return count > 0 ? familyDelta(before, after, `${name}_sum`, ...labels) / count : undefined;
}

/** A phase in which processes outside the benchmark took more CPU than this (cores) is reported as disturbed. */
export const DISTURBED_OTHER_CORES = 0.25;
/** So is one in which the host took more than this (cores) from a virtual machine's vCPUs (steal, which
 * /proc/stat counts apart from this guest's own work): this project's 2-vCPU guest read 0.14-0.4 cores of it
 * idle and 0.00-0.02 under load minutes later (7 December). */
export const DISTURBED_STEAL_CORES = 0.1;

/** A phase's result with its CPU shares, the service's cores (`process_cpu_seconds_total` Σ over the nodes ÷
 * wall), the other cores (outside the service, the stack and the bench), `/metrics` before and after and
 * where its purchases spent their time. */
export type MeasuredPhase<T> = Awaited<ReturnType<typeof measurePhase<T>>>;

/** Per purchase stage over a phase: purchases observed, mean and percentiles from the histogram's buckets, ms. */
export type StageFigures = Readonly<
  Record<string, { count: number; mean: number; p50: number | undefined; p95: number | undefined }>
>;

const STAGES = 'purchase_stage_duration_seconds';

/** Per stage over a phase (nodes summed): count, mean, p50/p95 interpolated within buckets (histogram_quantile). */
export function stageFigures(before: Samples, after: Samples): StageFigures {
  const buckets = new Map<string, { le: number; count: number }[]>();
  for (const sample of after.keys()) {
    if (!sample.startsWith(`${STAGES}_bucket{`)) continue;
    const labels = new Map([...sample.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    const [stage, le] = [labels.get('stage'), labels.get('le')];
    if (stage === undefined || le === undefined) continue;
    const list = buckets.get(stage) ?? buckets.set(stage, []).get(stage)!;
    list.push({ le: le === '+Inf' ? Infinity : Number(le), count: delta(before, after, sample) });
  }
  const figures: Record<string, StageFigures[string]> = {};
  for (const [stage, list] of buckets) {
    const count = delta(before, after, `${STAGES}_count{stage="${stage}"}`);
    if (count <= 0) continue;
    list.sort((a, b) => a.le - b.le);
    /** The bucket the rank falls in, interpolated linearly; undefined beyond the last finite bucket. */
    const quantile = (q: number): number | undefined => {
      const i = list.findIndex((b) => b.count >= q * count);
      const [lower, below] = i > 0 ? [list[i - 1]!.le, list[i - 1]!.count] : [0, 0];
      const { le, count: upTo } = list[i] ?? { le: Infinity, count: 0 };
      const share = upTo > below ? (q * count - below) / (upTo - below) : 1;
      return Number.isFinite(le) ? round((lower + (le - lower) * share) * 1000, 2) : undefined;
    };
    const sum = delta(before, after, `${STAGES}_sum{stage="${stage}"}`);
    figures[stage] = { count, mean: round((sum / count) * 1000, 2), p50: quantile(0.5), p95: quantile(0.95) };
  }
  return figures;
}

/** One line for progress output: `stages (ms, mean / p50 / p95): queue 0.4 / 0.3 / 1.2, …`; '' if none. */
export function formatStages(stages: StageFigures): string {
  const parts = Object.entries(stages).map(
    ([stage, f]) => `${stage} ${f.mean} / ${f.p50 ?? '?'} / ${f.p95 ?? '>5000'}`,
  );
  return parts.length === 0 ? '' : `purchase stages (ms, mean / p50 / p95): ${parts.join(', ')}`;
}

/** A cluster's node among a phase's named processes (`node-1`, `node-2`: scripts/cluster.ts `pids`). */
export const isNode = (name: string): boolean => name.startsWith('node-');

/** Σ over the cluster's nodes of the seconds per second their threads waited for a core. */
export const nodesCpuWait = (cpu: CpuShares): number =>
  Object.entries(cpu.runQueue).reduce((sum, [name, s]) => sum + (isNode(name) ? (s ?? 0) : 0), 0);

/**
 * A phase's cores by process (the nodes by name when their pids were read, else as `service`, the Σ of their
 * `process_cpu_seconds_total`), and the cores of everything else busy on the machine: the nodes counted once.
 */
export function phaseCores(cpu: CpuShares, serviceCores: number) {
  const named = Object.keys(cpu.processCores).some(isNode);
  const cores = { ...(named ? {} : { service: serviceCores }), ...cpu.processCores, bench: cpu.benchCores };
  const other = otherCores(cpu, [...(named ? [] : [serviceCores]), ...Object.values(cpu.processCores)]);
  return { cores, other };
}

/** `fn` with `/metrics` (each node read directly, summed) and CPU around it; `progress` gets the phase's purchase
 * stage line (`formatStages`) when it had purchases, and `cores: node-1 0.41, mariadb_primary 0.18, …, bench
 * 0.23`, busiest first (the nodes as `service` when they are not among the pids): which process fills the box. */
export async function measurePhase<T>(
  urls: readonly string[],
  pids: Readonly<Record<string, number>>,
  run: () => Promise<T>,
  progress?: (line: string) => void,
) {
  const before = await scrapeNodes(urls);
  const cpuBefore = cpuSnapshot(pids);
  const result = await run();
  const cpu = cpuShares(cpuBefore, cpuSnapshot(pids));
  const after = await scrapeNodes(urls);
  const serviceCores = delta(before, after, 'process_cpu_seconds_total') / cpu.wallS;
  const stages = stageFigures(before, after);
  const line = formatStages(stages);
  if (line !== '') progress?.(`bench:   ${line}`);
  const { cores, other } = phaseCores(cpu, serviceCores);
  const steal = cpu.stealCores === undefined ? '' : `; the host took ${cpu.stealCores.toFixed(2)} (steal)`;
  progress?.(`bench:   cores: ${busiest(cores)}${steal}`);
  progress?.(`bench:   waiting for a CPU (s per s, all threads): ${busiest(cpu.runQueue)}`);
  return { result, cpu, serviceCores, otherCores: other, metrics: { before, after }, stages };
}

/** `name figure, …` of the figures ≥ 0.005, largest first. */
const busiest = (figures: Readonly<Record<string, number | undefined>>): string =>
  Object.entries(figures)
    .filter((e): e is [string, number] => e[1] !== undefined && e[1] >= 0.005)
    .sort((a, b) => b[1] - a[1])
    .map(([name, n]) => `${name} ${n.toFixed(2)}`)
    .join(', ');

/** Σ over measured phases of one sample's `/metrics` delta. */
export const sumDelta = (
  phases: readonly Pick<MeasuredPhase<unknown>, 'metrics'>[],
  sample: string,
): number => phases.reduce((sum, p) => sum + delta(p.metrics.before, p.metrics.after, sample), 0);

/** The product writer's and the sagas' figures over one phase, from `/metrics` deltas. */
export function writerFigures(
  { before, after }: { readonly before: Samples; readonly after: Samples },
  wallS: number,
) {
  const batches = delta(before, after, 'product_batch_size_count');
  const committed = 'product_batch_duration_seconds_sum{outcome="committed"}';
  return {
    /** Committed batches (all products). */
    batches,
    batchesPerS: batches / wallS,
    /** New orders per batch (settlements ride in the same batches and are not counted). */
    meanBatchSize: histogramMean(before, after, 'product_batch_size'),
    meanBatchWriteMs: ms(
      histogramMean(before, after, 'product_batch_duration_seconds', 'outcome="committed"'),
    ),
    /** Share of wall time some product's writer had a batch in flight: Σ write time ÷ wall (may exceed 1 across products). */
    writerBusy: delta(before, after, committed) / wallS,
    sagasEnded: familyDelta(before, after, 'saga_duration_seconds_count'),
    meanSagaMs: ms(histogramMean(before, after, 'saga_duration_seconds')),
    eventLoopLagP99Ms: ms(after.get('nodejs_eventloop_lag_p99_seconds')),
  };
}

const ms = (seconds: number | undefined): number | undefined =>
  seconds === undefined || Number.isNaN(seconds) ? undefined : Math.round(seconds * 1e5) / 100;

export const round = (n: number, digits: number): number => Math.round(n * 10 ** digits) / 10 ** digits;

/** `round(n, digits)`, or null when `n` is unknown. */
export const roundOrNull = (n: number | null | undefined, digits: number): number | null =>
  n === undefined || n === null ? null : round(n, digits);

/** A percentile of a µs histogram in ms (NaN when empty). */
const percentileMs = (h: RecordableHistogram, percentile: number): number =>
  h.count === 0 ? NaN : round(h.percentile(percentile) / 1000, 2);

/** p50/p90/p95/p99/p99.9/max/mean of a µs histogram, ms. */
export function latencySummary(h: RecordableHistogram) {
  const p = (percentile: number) => percentileMs(h, percentile);
  const [max, mean] = h.count === 0 ? [NaN, NaN] : [round(h.max / 1000, 1), round(h.mean / 1000, 2)];
  return { count: h.count, p50: p(50), p90: p(90), p95: p(95), p99: p(99), p999: p(99.9), max, mean };
}
