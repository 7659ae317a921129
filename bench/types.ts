/** Shared shapes of the benchmark runner and its scenarios (`bench/scenarios/<name>.ts`). */

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
