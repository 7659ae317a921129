/** Polling until something holds: the one way the bench, the chaos run and their checks wait for a store. */
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Reads every `everyMs` until `done(value)` or `timeoutMs` passed; the last value, whether it was done and
 * how long it took. A read that throws ends the wait with its error (callers catch what they retry).
 */
export async function until<T>(
  read: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs: number,
  everyMs = 1_000,
): Promise<{ value: T; agreed: boolean; waitedMs: number }> {
  const start = Date.now();
  for (;;) {
    const value = await read();
    const waitedMs = Date.now() - start;
    if (done(value)) return { value, agreed: true, waitedMs };
    if (waitedMs >= timeoutMs) return { value, agreed: false, waitedMs };
    await sleep(everyMs);
  }
}

/** Polls `probe` every 100 ms until it answers true (an error counts as false); throws naming `what` after `timeoutMs`. */
export async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const polled = await until(() => probe().catch(() => false), Boolean, timeoutMs, 100);
  if (!polled.agreed) throw new Error(`${what}: not within ${Math.round(timeoutMs / 1000)} s`);
}
