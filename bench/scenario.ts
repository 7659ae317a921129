/**
 * The scenario skeleton: `defineScenario` gives each `bench/scenarios/<name>.ts` a `Run` that owns the set-up
 * (cluster, connections, tokens, products, the purchase ledger, baseline of the machine and of the nodes' lease
 * metric), the step-up loop, the post-run checks (sagas ended, stock and orders against the answers) and the
 * result's common part (`report`: run-health notes and keys, check notes, correctness, details), so a scenario
 * states only its load, its pass rule and its columns.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { Pool } from 'undici';
import { startCluster, type Cluster, type ClusterSettings } from './cluster.js';
import { background, cores, stackPids } from './cpu.js';
import { probeIo } from './io-probe.js';
import { mintTokens, newLatencyHistogram, PurchaseLedger, type BenchTokens, type Strategy } from './load.js';
import * as m from './measure.js';
import { ConnectionSet, runOpenLoop, type OpenLoopPhase, type OpenLoopResult } from './open-loop.js';
import { lines, msColumns, num, sum, tableOf } from './report.js';
import { expectedFrom, verifyProducts, waitForSagas, type ProductCheck } from './stores.js';

export interface BenchOptions {
  /** Load time, s (per step in step-up scenarios). */
  readonly durationS: number;
  /** Sockets the generator holds (closed loop: requests in flight). */
  readonly connections: number;
  /** Offered rate, requests/s (the first step of a step-up); undefined = the scenario's default. */
  readonly rate: number | undefined;
  readonly mode: 'open' | 'closed';
  /** `--param key=value` knobs. */
  readonly params: Readonly<Record<string, string>>;
  /** Folder of the result JSON, service logs and profiles. */
  readonly outDir: string;
  /** A running service to target instead of starting one. */
  readonly url: string | undefined;
  readonly cpuProf: boolean;
  /** `--service-env KEY=VALUE`, over the bench's own env of its nodes. */
  readonly serviceEnv: Readonly<Record<string, string>>;
  /** false with `--no-build`. */
  readonly build: boolean;
  readonly seed: number | undefined;
  /** Timestamp tag shared by every file of this run. */
  readonly runTag: string;
}

export interface BenchIO {
  /** One progress line on stderr. */
  progress: (line: string) => void;
  /** Teardown, also on Ctrl-C; run in reverse order of registration. */
  onCleanup(fn: () => Promise<void> | void): void;
  /** Aborted on Ctrl-C. */
  readonly signal: AbortSignal;
}

export interface ResultTable {
  readonly columns: readonly string[];
  readonly rows: readonly (readonly (string | number)[])[];
}

export interface ScenarioResult {
  /** False when a correctness check failed: the runner exits 1. */
  readonly ok: boolean;
  /** Flat keys of the last stdout line (`scenario` and `ok` added by the runner). */
  readonly summary: Readonly<Record<string, unknown>>;
  readonly table: ResultTable;
  readonly notes: readonly string[];
  readonly details: unknown;
  readonly charts?: readonly ChartSpec[];
}

export interface ChartSpec {
  /** File name part: `latency`, `throughput`, `curve`. */
  readonly name: string;
  /** A Vega-Lite (v6) specification with its data inline. */
  readonly spec: Readonly<Record<string, unknown>>;
}

/** A bad argument or `--param` value: the runner prints its message (no stack) and exits 2. */
export class UsageError extends Error {}

export interface Scenario {
  readonly name: string;
  /** One line for the usage text. */
  readonly describe: string;
  readonly defaults?: { durationS?: number; connections?: number; rate?: number };
  /** Default `['open']`. */
  readonly modes?: readonly ('open' | 'closed')[];
  /** The `--param` keys it reads: any other is a usage error before anything starts (a typo is not ignored). */
  readonly params: readonly string[];
  /** Why it cannot run against `--url` (it starts, kills or compares nodes of its own); absent: it can. */
  readonly ownNodes?: string;
  run(options: BenchOptions, io: BenchIO): Promise<ScenarioResult>;
}

/** The `--param` keys of `Run.rates()`; with `Run.pause()`'s, those of a scenario that steps up with pauses. */
export const RATE_PARAMS = ['step', 'max-steps'] as const;
export const STEP_UP_PARAMS = [...RATE_PARAMS, 'pause'] as const;
/** The purchase SLO of the step-up scenarios (hot-sku, scale): p99 ≤ 100 ms and errors ≤ 1%. */
export const SLO = { p99Ms: 100, errorShare: 0.01 } as const;
/** More product checks than this are summed up in one line (the first in full, then each failing one). */
const CHECKS_IN_FULL = 4;

/** What `bench/cli.ts` loads: the spec's run gets a fresh `Run` per repetition. */
export function defineScenario(spec: Omit<Scenario, 'run'> & { run(run: Run): Promise<ScenarioResult> }) {
  const run: Scenario['run'] = (options, io) => spec.run(new Run(spec.name, options, io, spec.params));
  return { ...spec, run };
}

type Load = OpenLoopPhase['rate'];
type Next = OpenLoopPhase['next'];
/** A measured step of `path` (`Run.step`). */
export type PathStep<P extends string = string> = OpenStep & { readonly path: P };
type Health = Pick<OpenStep, 'result' | 'otherCores'> & { readonly cpu?: { stealCores: number | undefined } };

/** Runs `cleanups`, the last registered first, each awaited and a failure logged, until none is left. */
export async function drainCleanups(cleanups: (() => Promise<void> | void)[], progress: BenchIO['progress']) {
  while (cleanups.length > 0)
    await Promise.resolve()
      .then(cleanups.pop())
      .catch((err: unknown) => progress(`bench: cleanup failed: ${String(err)}`));
}

/** A step in which other processes took more than DISTURBED_OTHER_CORES or the host more than
 * DISTURBED_STEAL_CORES, or any if a stack server restarted. */
const isDisturbed = (s: Health, restarted: readonly string[]) =>
  restarted.length > 0 ||
  (s.otherCores ?? 0) > m.DISTURBED_OTHER_CORES ||
  (s.cpu?.stealCores ?? 0) > m.DISTURBED_STEAL_CORES;

export class Run {
  readonly tokens!: BenchTokens;
  readonly cluster!: Cluster;
  readonly connections!: ConnectionSet;
  /** A small pool to the cluster for set-up calls (products, stats). */
  readonly admin!: Pool;
  /** Every purchase of the run and what it was answered (`purchases`, `check`). */
  readonly ledger!: PurchaseLedger;
  /** The stack's servers when the run began (a new pid at the end: restarted). */
  readonly pids = stackPids();
  /** Unique per run: its products' names and its idempotency keys. */
  readonly id: string;
  /** The products `check` checks: those `product` made. */
  readonly products: Parameters<typeof expectedFrom>[1][number][] = [];
  /** The machine before the load (`setUp`'s `backgroundMs`): busy share of all cores, and host steal. */
  background: { busy?: number; stealCores?: number } = {};
  /** What a loopback round trip cost a process when the run began (`setUp`), CPU-µs. */
  ioCost?: Awaited<ReturnType<typeof probeIo>>;
  opened = 0;
  private leasesBefore = 0;
  private purchaseStream?: ReturnType<PurchaseLedger['stream']>;

  constructor(
    readonly name: string,
    readonly options: BenchOptions,
    readonly io: BenchIO,
    /** The scenario's declared `--param` keys (Scenario.params). */
    private readonly declared: readonly string[],
    /** Shared with the scoped runs: what every check found (`unexpectedReplays`: fresh keys answered as
     * replays by a node straight, no nginx to retry: a bug). */
    private readonly found = {
      checks: [] as ProductCheck[],
      /** Steps `stepUp` measured again because they failed while disturbed: the first measurements' details. */
      remeasured: [] as unknown[],
      ...{ stillPending: 0, replayed: 0, unexpectedReplays: 0, shardLosses: 0 },
    },
  ) {
    this.id = `${name}-${options.runTag}${randomBytes(3).toString('hex')}`;
  }

  /** A --param number with its default and bounds (checked). */
  param(key: string, fallback: number, min: number, max: number): number {
    const raw = this.raw(key);
    const n = Number(raw);
    if (raw !== undefined && (raw.trim() === '' || !Number.isFinite(n) || n < min || n > max))
      throw new UsageError(`--param ${key}=${raw}: expected a number from ${min} to ${max}`);
    return raw === undefined ? fallback : n;
  }

  /** A --param that is one of `values` (default the first). */
  choice<T extends string>(key: string, values: readonly [T, ...T[]]): T {
    const raw = this.raw(key) ?? values[0];
    if (!(values as readonly string[]).includes(raw))
      throw new UsageError(`--param ${key}=${raw}: expected ${values.join(' or ')}`);
    return raw as T;
  }

  private raw(key: string): string | undefined {
    if (!this.declared.includes(key))
      throw new Error(`the scenario reads --param ${key} but does not declare it`);
    return this.options.params[key];
  }

  /**
   * Starts the `cluster`, the admin pool, mints the tokens (of `users`, default the bench users), opens
   * `--connections` connections (a ConnectionSet) with `connectionsTimeoutMs` when given; then the machine's
   * background over `backgroundMs` (default 2000; 0: not sampled, nor the next) and the price of a network
   * interaction on it now (`ioCost`, ~3 s: it moves 2-5× between hours here), and the nodes' lease metric.
   */
  async setUp(s: {
    cluster?: ClusterSettings;
    connectionsTimeoutMs?: number;
    users?: readonly string[];
    backgroundMs?: number;
  }): Promise<this> {
    const self = this as { -readonly [K in keyof Run]: Run[K] };
    const { options, io } = this;
    if (s.cluster !== undefined) {
      self.cluster = await startCluster(options, io, s.cluster);
      self.admin = new Pool(this.cluster.url, { connections: 4 });
      io.onCleanup(() => this.admin.close());
    }
    self.tokens = await mintTokens(options, io, s.users);
    self.ledger = new PurchaseLedger(this.tokens);
    if (s.connectionsTimeoutMs !== undefined) {
      self.connections = new ConnectionSet(this.cluster.url, options.connections, s.connectionsTimeoutMs);
      io.onCleanup(() => this.connections.close());
      const probe = this.cluster.nginx === undefined ? '/health' : '/nginx-health';
      this.opened = await this.connections.open(probe);
      io.progress(`bench: ${num(this.opened)} of ${num(options.connections)} connections open`);
    }
    const backgroundMs = s.backgroundMs ?? 2_000;
    if (backgroundMs > 0) {
      this.background = await background(backgroundMs, this.cluster ? this.measuredPids() : this.pids);
      io.progress('bench: probing the cost of a loopback round trip (~3 s)');
      this.ioCost = await probeIo();
    }
    this.leasesBefore = await this.leasesLost();
    return this;
  }

  /** A product named `bench <run id> <label>` (`POST /products` as the admin, on `on`'s cluster), checked by
   * `check`; its id. */
  async product(label: string, initialStock: number, strategy: Strategy = 'actor', on: Run = this) {
    const name = `bench ${this.id} ${label}`;
    const headers = { 'content-type': 'application/json', ...this.tokens.adminHeaders };
    const body = JSON.stringify({ name, priceCents: 1999, stock: initialStock, strategy });
    const res = await on.admin.request({ path: '/products', method: 'POST', headers, body });
    const text = await res.body.text();
    if (res.statusCode !== 201)
      throw new Error(`POST /products answered ${res.statusCode}: ${text.slice(0, 300)}`);
    const productId = (JSON.parse(text) as { id: number }).id;
    this.products.push({ productId, label, initialStock });
    return productId;
  }

  /** `count` actor products labelled `<label> <i>`; their ids. */
  async productSeries(count: number, initialStock: number, label = 'product'): Promise<number[]> {
    const ids = [];
    for (let i = 0; i < count; i += 1) ids.push(await this.product(`${label} ${i}`, initialStock));
    return ids;
  }

  /** An actor and a baseline product (labels `<path><suffix>`), each with its `stock`; their ids. */
  async pathProducts(stock: number | Readonly<Record<Strategy, number>>, suffix = '') {
    const units = (path: Strategy) => (typeof stock === 'number' ? stock : stock[path]);
    const actor = await this.product(`actor${suffix}`, units('actor'), 'actor');
    return { actor, baseline: await this.product(`baseline${suffix}`, units('baseline'), 'baseline') };
  }

  /** A load's `next`: purchases of one unit of the product (or of one of the products at random), each with a
   * fresh key and the next bench user. */
  purchases(product: number | readonly number[]) {
    this.purchaseStream ??= this.ledger.stream(this.id);
    return this.purchaseStream(product);
  }

  /** After the load: sagas waited for, then stock and orders against the ledger's answers, per product. */
  async check({ settleMs = 2_000, sagaWaitMs = 45_000, products = this.products } = {}) {
    this.io.progress(
      `bench: waiting ${settleMs} ms for in-flight writes and up to ${sagaWaitMs / 1000} s for open sagas, then checking MySQL`,
    );
    await sleep(settleMs);
    const ids = products.map((p) => p.productId);
    const stillPending = ids.length === 0 ? 0 : await waitForSagas(ids, sagaWaitMs);
    const checks = await verifyProducts(expectedFrom(this.ledger, products));
    const { replayed } = this.ledger;
    // A replay is a retry on the way that found its first attempt committed: nginx's (proxy_next_upstream
    // non_idempotent, a node failed). The nodes' own retries (forwarding again after an owner went silent, a
    // write under way) answer such an order as made (src/cluster/router.ts): without nginx, a replay is a bug.
    // A service of `--url` may sit behind a balancer of its own: its replays are not judged.
    const own = this.cluster !== undefined && this.options.url === undefined;
    const unexpected = own && this.cluster.nginx === undefined ? replayed : 0;
    const f = this.found;
    Object.assign(f, {
      stillPending: f.stillPending + stillPending,
      replayed: f.replayed + replayed,
      unexpectedReplays: f.unexpectedReplays + unexpected,
    });
    f.checks.push(...checks);
    return { checks, stillPending, ok: checks.every((c) => c.ok) && unexpected === 0 };
  }

  /** Everything the checks found so far (this run's and its scoped runs'). */
  get checked(): Readonly<Run['found']> {
    return this.found;
  }

  /**
   * The result: the scenario's summary, notes, table and details (`ok`: its own pass rule, default true), with
   * the run's health from `steps` (notes and keys: generator cores and warnings, disturbed steps, background,
   * shard leases lost; `shared`: what the generator shares the machine with, default the cluster and the
   * stack), the checks' notes and `oversold` when it checked, the correctness line, the steps' details.
   */
  async report(
    r: Omit<ScenarioResult, 'ok' | 'notes' | 'details'> & {
      readonly ok?: boolean;
      readonly notes: Parameters<typeof lines>;
      readonly details?: Readonly<Record<string, unknown>>;
      readonly steps: readonly (Health & { readonly startS?: number })[];
      readonly shared?: string;
    },
  ): Promise<ScenarioResult> {
    const { checks, remeasured, ...f } = this.found;
    const [restarted, nodes] = [this.restarted(), this.cluster?.nodes.length ?? 0];
    const shardLosses = f.shardLosses + (await this.leaseLosses());
    const service = nodes > 1 ? `${nodes} nodes` : 'the service';
    const shared =
      r.shared ??
      `sharing them with ${service}${this.cluster?.nginx ? ', nginx' : ''}, MariaDB, Redis, Kafka and the payment provider`;
    const gen = Math.max(0, ...r.steps.map((s) => s.result.generatorCores));
    const disturbed = r.steps.filter((s) => isDisturbed(s, restarted));
    const steal = Math.max(this.background.stealCores ?? 0, ...r.steps.map((s) => s.cpu?.stealCores ?? 0));
    const { busy } = this.background;
    const stack = restarted.length > 0 ? `, or stack restarted: ${restarted.join(', ')}` : '';
    const ok = r.ok !== false && checks.every((c) => c.ok) && f.unexpectedReplays === 0;
    const failing = checks.slice(1).filter((c) => !c.ok);
    const shown = checks.length <= CHECKS_IN_FULL ? checks : [...checks.slice(0, 1), ...failing.slice(0, 5)];
    const oversold = sum(checks, (c) => c.oversold);
    const notes = lines(
      ...r.notes,
      `load generator: up to ${gen.toFixed(2)} cores in a step (${Math.round((gen / cores()) * 100)}% of this machine's ${cores()} cores), ${shared}.`,
      r.steps.flatMap((s) => s.result.warnings.map((w) => `WARNING: ${w}`)),
      disturbed.length > 0 &&
        `WARNING: ${disturbed.length} of ${r.steps.length} steps disturbed (other processes > ${m.DISTURBED_OTHER_CORES} cores, the host > ${m.DISTURBED_STEAL_CORES}${stack}): ${disturbed.map((s) => s.result.label).join(', ')}`,
      (busy ?? 0) > 0.1 &&
        `WARNING: other processes kept ${Math.round(busy! * 100)}% of the machine busy before the load`,
      steal > m.DISTURBED_STEAL_CORES &&
        `WARNING: the host took up to ${steal.toFixed(2)} of this machine's ${cores()} cores (steal, /proc/stat): figures measured meanwhile are lower than the machine's own`,
      this.ioCost !== undefined &&
        `this machine now: a loopback round trip cost a process ${this.ioCost.busyUs} CPU-µs back to back, ${this.ioCost.afterSleepUs} after a ${this.ioCost.gapMs} ms sleep (bench/RESULTS.md: the figures at low rates follow it; compare runs of similar readings)`,
      remeasured.length > 0 &&
        `${remeasured.length} steps failed while disturbed and were measured again (the first measurements: details.remeasured)`,
      shardLosses > 0 &&
        `WARNING: the nodes lost ${shardLosses} shard leases during the run (shard_ownership_changes_total)`,
      shown.map((c) => checkNote(c)),
      checks.length > CHECKS_IN_FULL &&
        `checks: ${num(checks.length)} products, ${num(checks.filter((c) => c.ok).length)} match their answers; oversold ${oversold}`,
      f.unexpectedReplays > 0 && `FAIL: ${f.unexpectedReplays} fresh keys were answered as replays`,
      `correctness: ${ok ? 'OK' : 'FAILED'}`,
    );
    const summary = {
      ...r.summary,
      ...(checks.length > 0 && { oversold }),
      disturbed_steps: disturbed.length,
      remeasured_steps: remeasured.length,
      load_generator_cores: m.round(gen, 2),
      load_generator_machine_share: m.round(gen / cores(), 2),
      generator_warnings: sum(r.steps, (s) => s.result.warnings.length),
      background_busy: m.roundOrNull(busy, 2),
      host_steal_cores: m.round(steal, 2),
      io_round_trip_cpu_us_busy: this.ioCost?.busyUs ?? null,
      io_round_trip_cpu_us_after_sleep: this.ioCost?.afterSleepUs ?? null,
      stack_restarted: restarted.length > 0,
      shard_losses: shardLosses,
    };
    const details = {
      ...r.details,
      ...(checks.length > 0 && { checks, stackRestarted: restarted }),
      ...(this.ledger?.ambiguous.length > 0 && { ambiguousSample: this.ledger.ambiguous.slice(0, 100) }),
      steps: r.steps.map((s) => stepDetails({ startS: 0, ...s })),
      ...(remeasured.length > 0 && { remeasured }),
    };
    return { ok, summary, table: r.table, notes, details, charts: r.charts };
  }

  /** The stack's servers that got a new pid during the run (not the bench's doing). */
  restarted(): string[] {
    const now = stackPids();
    return Object.keys(this.pids).filter((n) => now[n] !== this.pids[n]);
  }

  /** Shard leases the cluster's nodes have lost since they started (Σ of their metric; 0 when unreadable). */
  private async leasesLost(): Promise<number> {
    const urls = this.cluster?.metricsUrls ?? [];
    const samples = urls.length === 0 ? undefined : await m.scrapeNodes(urls).catch(() => undefined);
    return samples?.get('shard_ownership_changes_total{change="lost"}') ?? 0;
  }

  private async leaseLosses() {
    return Math.max(0, (await this.leasesLost()) - this.leasesBefore);
  }

  /** `body` on a Run of its own (run tag + `suffix`) whose processes stop when it ends (or on Ctrl-C); its
   * checks, lease losses and background count for this run. */
  async scoped<T>(suffix: string, what: string, body: (run: Run) => Promise<T>): Promise<T> {
    const cleanups: (() => Promise<void> | void)[] = [];
    const stopAll = () => drainCleanups(cleanups, this.io.progress);
    this.io.onCleanup(stopAll);
    const io: BenchIO = { ...this.io, onCleanup: (fn) => void cleanups.push(fn) };
    const options = { ...this.options, runTag: `${this.options.runTag}${suffix}` };
    const run = new Run(this.name, options, io, this.declared, this.found);
    try {
      const result = await body(run);
      this.found.shardLosses += await run.leaseLosses();
      const most = (k: 'busy' | 'stealCores') => Math.max(this.background[k] ?? 0, run.background[k] ?? 0);
      if (run.background.busy !== undefined)
        this.background = { busy: most('busy'), stealCores: most('stealCores') };
      this.ioCost ??= run.ioCost;
      return result;
    } finally {
      this.io.progress(`bench: stopping ${what}`);
      await stopAll();
    }
  }

  /** `--param pause`: seconds between a step-up's steps (default 1). */
  pause(): number {
    return this.param('pause', 1, 0, 60);
  }

  /** A step-up's offered rates: from `--rate` (default `first`), each the previous ×`--param step` (default
   * `factor`), `--param max-steps` of them (default `steps`, at most `most`), rounded. */
  rates(first: number, factor: number, steps: number, most = 50) {
    const step = this.param('step', factor, 1.05, 10);
    const rates = [this.options.rate ?? first];
    for (const n = this.param('max-steps', steps, 1, most); rates.length < n;)
      rates.push(Math.round(rates[rates.length - 1]! * step));
    return { rates, factor: step };
  }

  /** `--param down-steps` (default 3; 0: none) rates below a step-up's first, each the previous ÷ its factor:
   * where a path that breaks at its first rate steps down to find its capacity (`stepUp`'s `down`). */
  downRates({ rates, factor }: { rates: readonly number[]; factor: number }): number[] {
    const n = this.param('down-steps', 3, 0, 10);
    const below = Array.from({ length: n }, (_, i) => Math.round(rates[0]! / factor ** (i + 1)));
    return [...new Set(below)].filter((r) => r >= 1 && r < rates[0]!);
  }

  /** One measured phase (bench/measure.ts) of `--duration` on the run's connections; `rate`: arrivals/s or a
   * closed loop's `{ concurrency }`. */
  measure(label: string, rate: Load, next: Next, durationS = this.options.durationS) {
    const phase = { connections: this.connections, rate, durationS, label, io: this.io, next };
    const pids = this.measuredPids();
    return m.measurePhase(this.cluster.metricsUrls, pids, () => runOpenLoop(phase), this.io.progress);
  }

  /**
   * Whose CPU a phase reads: the stack's servers and the cluster's own processes (its nodes, its nginx and
   * workers, its payment provider). A provider of the bench's own stands in for the stack's, idle meanwhile:
   * counted as another process, its CPU (~0.15 cores at 2,000 purchases/s) marked steps disturbed.
   */
  private measuredPids(): Record<string, number> {
    const own = this.cluster.pids();
    const provider = Object.keys(own).find((name) => name.endsWith('-payment'));
    const { payment_provider: stackProvider, ...stack } = this.pids;
    return {
      ...stack,
      ...(provider === undefined && stackProvider !== undefined ? { payment_provider: stackProvider } : {}),
      ...own,
    };
  }

  /** Load on the run's connections, no `/metrics` read (warm-ups; failover, sellout, chaos). */
  openLoop(label: string, rate: Load, durationS: number, next: Next, maxArrivals?: number) {
    const { connections, io } = this;
    return runOpenLoop({ connections, io, label, rate, durationS, next, maxArrivals });
  }

  /** A measured phase judged as a step (`openStep`) of `path`; its `offered` is the rate, or what was sent/s. */
  async step<P extends string>(path: P, label: string, rate: Load, next: Next, startS = 0) {
    const measured = await this.measure(label, rate, next);
    const offered = typeof rate === 'number' ? rate : Math.round(measured.result.offeredPerS);
    return { ...openStep(measured, offered, startS), path };
  }

  /**
   * Closed-loop phases of `--connections` in flight, one per entry of `order` (A B A B: a drift of the machine
   * hits both paths alike), each `--duration` ÷ 2, after 1 s unmeasured of each path; `seen` numbers the
   * phases per path across calls.
   */
  async alternate<P extends string>(order: readonly P[], next: (p: P) => Next, seen = new Map<P, number>()) {
    const load = { concurrency: this.options.connections };
    for (const path of new Set(order)) await this.openLoop(`warm-up ${path}`, load, 1, next(path));
    const steps = [];
    for (const path of order) {
      if (this.io.signal.aborted) throw new Error('interrupted');
      seen.set(path, (seen.get(path) ?? 0) + 1);
      const label = `${path} #${seen.get(path)} closed-loop c=${load.concurrency}`;
      const measured = await this.measure(label, load, next(path), this.options.durationS / 2);
      steps.push({ ...openStep(measured, Math.round(measured.result.offeredPerS), 0), path });
    }
    return steps;
  }

  /**
   * The step-up loop: after `warmUp` (s unmeasured at the first rate, and the load of each path), each path
   * once per rate while its steps `keep` going; a path whose first step does not keep steps `down` (lower
   * rates, `downRates()`) until one does, so that its capacity is found all the same. `pause` s between steps
   * (read before the set-up: `pause()`); each step's progress line ends in what it `says`.
   */
  async stepUp<P extends string, S extends Health>(loop: {
    readonly paths: readonly P[];
    readonly rates: readonly number[];
    readonly down?: readonly number[];
    readonly pause: number;
    readonly warmUp?: readonly [s: number, next: (path: P) => Next];
    step(path: P, rate: number, startS: number): Promise<S>;
    keep(step: S): boolean;
    says(step: S): string;
  }): Promise<S[]> {
    const [steps, active, { pause, warmUp }] = [[] as S[], new Set(loop.paths), loop];
    for (const path of warmUp !== undefined && warmUp[0] > 0 ? loop.paths : [])
      await this.openLoop(`warm-up ${path}`, loop.rates[0]!, warmUp![0], warmUp![1](path));
    let clock = 0;
    const measured = async (path: P, rate: number) => {
      if (clock > 0 && pause > 0) await sleep(pause * 1000);
      const step = await loop.step(path, rate, clock);
      clock += step.result.wallS + pause;
      return step;
    };
    const kept = async (path: P, rate: number) => {
      let step = await measured(path, rate);
      // A step that failed while the host or other processes took cores measured them as much as the
      // service: it is measured once more, and the first is kept in the report's details.
      if (!loop.keep(step) && isDisturbed(step, []) && !this.io.signal.aborted) {
        this.io.progress(`bench: ${step.result.label}: ${loop.says(step)}; DISTURBED, measuring it again`);
        this.found.remeasured.push(stepDetails({ ...step, startS: clock }));
        step = await measured(path, rate);
      }
      this.io.progress(`bench: ${step.result.label}: ${loop.says(step)}`);
      steps.push(step);
      return loop.keep(step);
    };
    for (const [i, rate] of loop.rates.entries())
      for (const path of loop.paths) {
        if (!active.has(path) || this.io.signal.aborted || (await kept(path, rate))) continue;
        active.delete(path);
        for (const lower of i === 0 ? (loop.down ?? []) : [])
          if (this.io.signal.aborted || (await kept(path, lower))) break;
      }
    return steps;
  }
}

/** A measured purchase step of an open loop: latency percentiles (ms), error share, SLO verdict, CPU, stages. */
export type OpenStep = ReturnType<typeof openStep>;

/** A step's purchase figures and whether they met the SLO. */
export function openStep(measured: m.MeasuredPhase<OpenLoopResult>, offered: number, startS: number) {
  const h = measured.result.ops.get('purchase')?.latency;
  const { p50, p95, p99, p999, max } = m.latencySummary(h ?? newLatencyHistogram());
  const errorShare = measured.result.scheduled > 0 ? measured.result.errors / measured.result.scheduled : 0;
  const pass = Number.isFinite(p99) && p99 <= SLO.p99Ms && errorShare <= SLO.errorShare;
  return { ...measured, offered, p50, p95, p99, p999, max, errorShare, pass, startS };
}

/** The lowest offered rate that failed `ok` (`broke`), the highest that passed below it (`best`), and whether
 * none failed (`capped`): in a step-up, the step before the first failure; after a step-down, the first pass. */
export function capacity<S extends { readonly offered: number }>(steps: readonly S[], ok: (s: S) => boolean) {
  // The step of `list` whose offered rate `before` puts ahead of every other's.
  const top = (list: S[], before: (a: number, b: number) => boolean) =>
    list.reduce<S | undefined>(
      (a, s) => (a === undefined || before(s.offered, a.offered) ? s : a),
      undefined,
    );
  const broke = top(
    steps.filter((s) => !ok(s)),
    (a, b) => a < b,
  );
  const below = steps.filter((s) => ok(s) && (broke === undefined || s.offered < broke.offered));
  return { best: top(below, (a, b) => a > b), capped: broke === undefined && steps.length > 0, broke };
}

/** `{ <prefix>_<key>: value }` for each key of `keys`. */
export const keyed = (prefix: string, keys: Readonly<Record<string, unknown>>): Record<string, unknown> =>
  Object.fromEntries(Object.entries(keys).map(([k, v]) => [`${prefix}_${k}`, v]));

/** `<prefix>_<p>_ms` keys of a latency summary's percentiles `ps`. */
export const latencyKeys = <K extends string>(prefix: string, s: Record<K, number>, ps: readonly K[]) =>
  keyed(prefix, Object.fromEntries(ps.map((p) => [`${p}_ms`, s[p]])));

/**
 * Paths `a` and `b` of alternating phases, each merged (ok answers/s inside the windows, latency of every
 * answer, answers by label, service cores weighted by wall time); their ratio, the ratio of the undisturbed
 * phases only (null when a path has none), the `<path>_per_s`, `_p50_ms`, `_p99_ms`, `_errors` keys.
 */
export function compare(steps: readonly PathStep[], [a, b]: [string, string], restarted: readonly string[]) {
  const merged = (path: string, all: readonly PathStep[]) => {
    const list = all.filter((s) => s.path === path);
    const latency = newLatencyHistogram();
    const answers: Record<string, number> = {};
    for (const purchases of list.map((s) => s.result.ops.get('purchase'))) {
      if (purchases !== undefined) latency.add(purchases.latency);
      for (const [label, n] of Object.entries(purchases?.statuses ?? {}))
        answers[label] = (answers[label] ?? 0) + n;
    }
    const perS = sum(list, (s) => s.result.okPerS * s.result.windowS) / sum(list, (s) => s.result.windowS);
    const serviceCores = sum(list, (s) => s.serviceCores * s.result.wallS) / sum(list, (s) => s.result.wallS);
    const keys = {
      [`${path}_per_s`]: Math.round(perS),
      ...latencyKeys(path, m.latencySummary(latency), ['p50', 'p99']),
      [`${path}_errors`]: sum(list, (s) => s.result.errors),
    };
    return { perS, answers, serviceCores, keys };
  };
  const clean = steps.filter((s) => !isDisturbed(s, restarted));
  const [A, B, cleanA, cleanB] = [merged(a, steps), merged(b, steps), merged(a, clean), merged(b, clean)];
  const ratioUndisturbed = cleanA.perS > 0 && cleanB.perS > 0 ? cleanA.perS / cleanB.perS : null;
  return {
    A,
    B,
    ratio: B.perS > 0 ? A.perS / B.perS : null,
    ratioUndisturbed,
    keys: { ...A.keys, ...B.keys },
  };
}

/** One line per product check: stock against the orders, orders against the answers. */
export function checkNote(c: ProductCheck, sagaWaitS = 45): string {
  return (
    `check ${c.label} (product ${c.productId}): initial ${num(c.initialStock)} - stock ${num(c.stock)} = ${num(c.initialStock - c.stock)}, ` +
    `SUM(quantity) of pending+confirmed orders ${num(c.sold)} ${c.stockMatches ? 'OK' : 'MISMATCH'}; ` +
    `orders confirmed ${num(c.orders.CONFIRMED)} / cancelled ${num(c.orders.CANCELLED)} / pending ${num(c.orders.PENDING)} vs answers 201 ${num(c.confirmed)} / 402 ${num(c.declined)}` +
    `${c.answered202 + c.ambiguous > 0 ? ` + ${num(c.answered202)} 202 and ${num(c.ambiguous)} 5xx/transport (${num(c.unsure.CONFIRMED)} confirmed, ${num(c.unsure.CANCELLED)} cancelled, ${num(c.unsure.PENDING)} pending among them)` : ''} ` +
    `${c.ordersMatch ? 'OK' : 'MISMATCH'}; oversold ${c.oversold}${c.stillPending > 0 ? `; ${num(c.stillPending)} sagas still open after ${sagaWaitS} s` : ''}`
  );
}

type Cells<S> = readonly (readonly [string, (s: S) => string | number])[];

/** The table of open-loop purchase steps, with the `mid` and `own` columns of the scenario. */
export function stepTable<S extends OpenStep>(first: string, steps: S[], mid: Cells<S>, own: Cells<S>) {
  return tableOf<S>(
    [
      [first, (s) => s.result.label],
      ['achieved/s', (s) => Math.round(s.result.achievedPerS)],
      ['ok/s', (s) => Math.round(s.result.okPerS)],
      ...mid,
      ...msColumns(['p50', 'p99', 'p999', 'max'] as const, (s: S, k) => s[k]),
      ['errors %', (s) => m.round(s.errorShare * 100, 2)],
      ['SLO', (s) => (s.pass ? 'met' : 'BROKEN')],
      ...own,
      ['svc cores', (s) => s.serviceCores.toFixed(2)],
      ['gen cores', (s) => s.result.generatorCores.toFixed(2)],
      ['other cores', (s) => (s.otherCores === undefined ? '-' : s.otherCores.toFixed(2))],
      ['host steal', (s) => s.cpu.stealCores?.toFixed(2) ?? '-'],
    ],
    steps,
  );
}

/** Details of a measured step or phase. */
function stepDetails<S extends { result: OpenLoopResult; startS: number; metrics?: unknown }>(s: S) {
  const { result, startS: _startS, metrics: _metrics, ...step } = s;
  return {
    // label and monotonicUs let `bench/profile-summary.ts --phase <label text>` pick the step's samples.
    label: result.label,
    monotonicUs: result.monotonicUs,
    ...step,
    statuses: result.ops.get('purchase')?.statuses,
    achievedPerS: m.round(result.achievedPerS, 1),
    okPerS: m.round(result.okPerS, 1),
    generatorCores: result.generatorCores,
    schedulerLagP99Ms: m.round(result.schedulerLag.percentile(99) / 1000, 2),
    maxQueued: result.maxQueued,
    timeline: result.timeline,
  };
}
