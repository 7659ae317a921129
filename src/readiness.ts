import { withTimeout } from './timeouts.js';

/** The dependencies `/ready` reports on, in the order it lists them. */
export const DEPENDENCIES = ['primary', 'replica', 'redis', 'kafka'] as const;
export type Dependency = (typeof DEPENDENCIES)[number];

/**
 * A readiness result this young is reused by the scrape's `dependency_up` (README "Observability"), ms:
 * a scrape then shares the round of checks of a `/ready` probe (the balancer's, the blackbox exporter's)
 * instead of running four more.
 */
const RECENT_ENOUGH_MS = 5_000;

export type DependencyCheck = () => Promise<void>;

export type DependencyState =
  { status: 'up'; latencyMs: number } | { status: 'down'; latencyMs: number; error: string };

export interface Readiness {
  ready: boolean;
  down: Dependency[];
  dependencies: Record<Dependency, DependencyState>;
}

/** Runs every check at once, each bounded by `timeoutMs`; one slow dependency cannot hide another. */
export async function checkReadiness(
  checks: Readonly<Record<Dependency, DependencyCheck>>,
  timeoutMs: number,
): Promise<Readiness> {
  const states = await Promise.all(
    DEPENDENCIES.map(async (name): Promise<DependencyState> => {
      const started = performance.now();
      try {
        await withTimeout(checks[name](), timeoutMs, `${name} check`);
        return { status: 'up', latencyMs: Math.round(performance.now() - started) };
      } catch (err) {
        const error = err instanceof Error ? err.message || err.name : String(err);
        return { status: 'down', latencyMs: Math.round(performance.now() - started), error };
      }
    }),
  );
  const dependencies = Object.fromEntries(DEPENDENCIES.map((name, i) => [name, states[i]!])) as Record<
    Dependency,
    DependencyState
  >;
  const down = DEPENDENCIES.filter((name) => dependencies[name].status === 'down');
  return { ready: down.length === 0, down, dependencies };
}

/**
 * The dependency checks shared by `/ready` (always fresh) and the `dependency_up` gauge (a result up to
 * `reuseForMs` old is reused, and scrapes arriving together share one round of checks).
 */
export class ReadinessChecks {
  private last: { readiness: Readiness; at: number } | undefined;
  private inFlight: Promise<Readiness> | undefined;

  constructor(
    private readonly checks: Readonly<Record<Dependency, DependencyCheck>>,
    private readonly timeoutMs: number,
  ) {}

  /** Checks every dependency now (a round already running is joined). */
  check(): Promise<Readiness> {
    this.inFlight ??= checkReadiness(this.checks, this.timeoutMs).then(
      (readiness) => {
        this.inFlight = undefined;
        this.last = { readiness, at: performance.now() };
        return readiness;
      },
      (err: unknown) => {
        this.inFlight = undefined;
        throw err;
      },
    );
    return this.inFlight;
  }

  /** The last result if younger than `reuseForMs` (default 5 s: the scrape's `dependency_up`), else a fresh one. */
  recent(reuseForMs = RECENT_ENOUGH_MS): Promise<Readiness> {
    if (this.last !== undefined && performance.now() - this.last.at < reuseForMs)
      return Promise.resolve(this.last.readiness);
    return this.check();
  }
}
