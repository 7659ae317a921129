/** Shared shapes of the benchmark runner and its scenarios (`bench/scenarios/<name>.ts`). */

export interface BenchOptions {
  /** Load time of the scenario, s (a scenario may split it across phases). */
  readonly durationS: number;
  /** Concurrent connections (closed-loop: requests in flight; open-loop: sockets the generator holds). */
  readonly connections: number;
  /** Offered rate, requests/s (open loop: the first step of a step-up); undefined = the scenario's default. */
  readonly rate: number | undefined;
  /** `open` (default): arrivals at the offered rate, latency from each intended send time; `closed`: C workers. */
  readonly mode: 'open' | 'closed';
  /** Scenario knobs (`--param key=value`, repeatable), e.g. `stock=200`; each scenario documents its own. */
  readonly params: Readonly<Record<string, string>>;
  /** Folder the result JSON (and service logs, profiles) is written to. */
  readonly outDir: string;
  /** A running service to target; undefined = the bench starts its own (bench/service.ts). */
  readonly url: string | undefined;
  /** Start the service under `node --cpu-prof` (profiles land in `<outDir>/profiles`). */
  readonly cpuProf: boolean;
  /** Extra environment of the service the bench starts (`--service-env KEY=VALUE`), over the bench's own. */
  readonly serviceEnv: Readonly<Record<string, string>>;
  /** Build the service (tsc) before starting it; false with `--no-build` (dist/ is used as it is). */
  readonly build: boolean;
  /** `--seed n`: what a randomized scenario (chaos) draws its choices from; undefined = a random seed. */
  readonly seed: number | undefined;
  /** Timestamp tag shared by every file of this run. */
  readonly runTag: string;
}

export interface BenchIO {
  /** One progress line on stderr (the runner adds nothing else to it). */
  progress: (line: string) => void;
  /** Registers teardown that also runs on Ctrl-C; runs in reverse order of registration. */
  onCleanup(fn: () => Promise<void> | void): void;
  /** Aborted on Ctrl-C: loops should stop early. */
  readonly signal: AbortSignal;
}

export interface ResultTable {
  readonly columns: readonly string[];
  readonly rows: readonly (readonly (string | number)[])[];
}

export interface ScenarioResult {
  /** False when a correctness check failed: the runner exits 1. */
  readonly ok: boolean;
  /** The last stdout line (JSON); flat keys, numbers where possible. `scenario` and `ok` are added by the runner. */
  readonly summary: Readonly<Record<string, unknown>>;
  readonly table: ResultTable;
  /** Lines printed under the table (caveats, warnings, failed checks). */
  readonly notes: readonly string[];
  /** Everything else worth keeping in the result file. */
  readonly details: unknown;
  /** Vega-Lite specs the runner renders to `<out>/<scenario>-<tag>-<name>.svg`. */
  readonly charts?: readonly ChartSpec[];
}

export interface ChartSpec {
  /** File name part: `latency`, `throughput`, `curve`. */
  readonly name: string;
  /** A Vega-Lite (v6) specification with its data inline. */
  readonly spec: Readonly<Record<string, unknown>>;
}

export interface Scenario {
  readonly name: string;
  /** One line for the usage text. */
  readonly describe: string;
  /** Per-scenario defaults of --duration, --connections and --rate. */
  readonly defaults?: { durationS?: number; connections?: number; rate?: number };
  /** Modes the scenario supports; default `['open']`. */
  readonly modes?: readonly ('open' | 'closed')[];
  run(options: BenchOptions, io: BenchIO): Promise<ScenarioResult>;
}
