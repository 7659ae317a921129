import { AppError, InvariantError } from './errors.js';

/** Resolves like `promise`, or rejects with DEADLINE_EXCEEDED after `ms`; the timer is cleared either way. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new AppError('DEADLINE_EXCEEDED', `${what} took longer than ${ms} ms`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Skips a failing dependency for a while instead of waiting out its timeout on every call: after a
 * failure `usable()` is false for `ms`, then true for one caller (the probe) per `ms`, until a call
 * succeeds again.
 */
export class FailureBackoff {
  /** performance.now() until which calls skip the dependency; undefined while it answers. */
  private downUntil: number | undefined;

  constructor(private readonly ms: number) {}

  /** True since a failure, until a call succeeds. */
  get failing(): boolean {
    return this.downUntil !== undefined;
  }

  /** True when a call may go to the dependency: it answers, or this caller is the next probe. */
  usable(): boolean {
    if (this.downUntil === undefined) return true;
    const now = performance.now();
    if (now < this.downUntil) return false;
    this.downUntil = now + this.ms; // this caller probes; the others go on skipping
    return true;
  }

  succeeded(): void {
    this.downUntil = undefined;
  }

  /** Records a failure; true for the first since the dependency last answered (log that one). */
  failed(): boolean {
    const first = this.downUntil === undefined;
    this.downUntil = performance.now() + this.ms;
    return first;
  }

  /**
   * Runs `call` unless the dependency is being skipped, and records how it went. Resolves with its value,
   * or undefined when it was skipped or failed (so `call` should resolve to a defined value);
   * `onFirstFailure` gets the first error since the dependency last answered.
   */
  async attempt<T>(call: () => Promise<T>, onFirstFailure?: (err: unknown) => void): Promise<T | undefined> {
    if (!this.usable()) return undefined;
    try {
      const value = await call();
      this.succeeded();
      return value;
    } catch (err) {
      if (this.failed()) onFirstFailure?.(err);
      return undefined;
    }
  }
}

/** A periodic job of `every`. */
export interface Periodic {
  /** No more runs (a run in progress finishes). */
  stop(): void;
}

/** A job due within this of a wake-up runs in it, ms (so jobs ~1 ms apart never wake the process twice). */
const SHARED_WAKE_SLACK_MS = 3;

interface Job {
  readonly periodMs: number;
  readonly run: (lateMs: number) => void;
  readonly ref: boolean;
  /** performance.now() of its next run: a multiple of its period. */
  due: number;
}

const jobs = new Set<Job>();
let wake: { timer: NodeJS.Timeout; at: number; ref: boolean } | undefined;

/** The first multiple of `periodMs` after `now` (+ the slack, so a job never runs twice in one wake-up). */
const nextOnGrid = (periodMs: number, now: number): number =>
  (Math.floor((now + SHARED_WAKE_SLACK_MS) / periodMs) + 1) * periodMs;

/** One timer for the earliest job due, ref'd while any job is. */
function arm(): void {
  let at = Infinity;
  let ref = false;
  for (const job of jobs) {
    at = Math.min(at, job.due);
    ref ||= job.ref;
  }
  if (wake !== undefined && wake.at === at && wake.ref === ref) return;
  if (wake !== undefined) clearTimeout(wake.timer);
  wake = undefined;
  if (at === Infinity) return;
  const timer = setTimeout(runDue, Math.max(0, Math.ceil(at - performance.now())));
  if (!ref) timer.unref();
  wake = { timer, at, ref };
}

function runDue(): void {
  wake = undefined;
  const now = performance.now();
  const due = [...jobs].filter((job) => job.due <= now + SHARED_WAKE_SLACK_MS);
  const late = due.map((job) => now - job.due);
  for (const job of due) job.due = nextOnGrid(job.periodMs, now);
  arm();
  due.forEach((job, i) => {
    if (!jobs.has(job)) return; // stopped by a job before it in this wake-up
    try {
      job.run(late[i]!);
    } catch (err) {
      // As a throwing setInterval callback would, but after the other jobs of this wake-up have run.
      process.nextTick(() => {
        throw err;
      });
    }
  });
}

/**
 * Runs `run` every `periodMs`, like setInterval, on the multiples of its period (performance.now()'s
 * timeline), with ONE timer for all such jobs of the process: jobs whose periods are multiples of one
 * another (the lease renewal's 500 ms, the loop-delay check's 1 s, MySQL's discovery every 2 s, the
 * stock feed's and the saga sweep's 5 s, …) run in the same wake-up instead of each waking an idle node
 * at a phase of its own (an idle node alone woke 8.4 times a second before, 5.7 with this: `strace`,
 * bench/RESULTS.md; on this VM a wake-up costs 0.1-0.4 ms of CPU). `run` gets how late it runs, ms (up to
 * SHARED_WAKE_SLACK_MS early: negative).
 * The first run comes within one period. `unref`: the job alone does not keep the process alive.
 */
export function every(
  periodMs: number,
  run: (lateMs: number) => void,
  options: { unref?: boolean } = {},
): Periodic {
  if (!(periodMs >= 1))
    throw new InvariantError(`a periodic job needs a period of at least 1 ms, not ${periodMs}`);
  const job: Job = {
    periodMs,
    run,
    ref: options.unref !== true,
    due: nextOnGrid(periodMs, performance.now()),
  };
  jobs.add(job);
  arm();
  return {
    stop() {
      if (jobs.delete(job)) arm();
    },
  };
}
