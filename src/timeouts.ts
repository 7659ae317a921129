import { AppError } from './errors.js';

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
