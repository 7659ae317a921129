/** Shared shapes of the benchmark runner and its scenarios (`bench/scenarios/<name>.ts`). */

export interface BenchOptions {
  /** Load time of the scenario, s (a scenario may split it across phases). */
  readonly durationS: number;
  /** Concurrent connections (closed-loop: requests in flight). */
  readonly connections: number;
  /** Folder the result JSON (and service logs, profiles) is written to. */
  readonly outDir: string;
  /** A running service to target; undefined = the bench starts its own (bench/service.ts). */
  readonly url: string | undefined;
  /** Start the service under `node --cpu-prof` (profiles land in `<outDir>/profiles`). */
  readonly cpuProf: boolean;
  /** Extra environment of the service the bench starts (`--service-env KEY=VALUE`), over the bench's own. */
  readonly serviceEnv: Readonly<Record<string, string>>;
  /** Timestamp tag shared by every file of this run. */
  readonly runTag: string;
}

export interface BenchIO {
  /** One progress line on stderr (the runner adds nothing else to it). */
  progress(line: string): void;
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
}

export interface Scenario {
  readonly name: string;
  /** One line for the usage text. */
  readonly describe: string;
  /** Per-scenario defaults of --duration and --connections. */
  readonly defaults?: { durationS?: number; connections?: number };
  run(options: BenchOptions, io: BenchIO): Promise<ScenarioResult>;
}
