/** Recovery time per fault, from the purchases' answers (pure: unit-tested in test/bench/chaos.test.ts). */

export interface PurchaseOutcome {
  /** Intended send time, ms since the load started. */
  readonly sentMs: number;
  /** Answer (or transport error) time, ms since the load started. */
  readonly doneMs: number;
  /** 201 or 202: the purchase was acknowledged. */
  readonly ok: boolean;
}

export interface FaultWindow {
  /** When the fault struck, ms since the load started. */
  readonly atMs: number;
  /** When the next fault struck (or Infinity). */
  readonly untilMs: number;
}

export interface Recovery {
  /** Failed purchases answered in the fault's window. */
  readonly failed: number;
  /**
   * Seconds from the fault to the answer of the first acknowledged purchase sent after the last failure
   * answered in its window and answered after the fault; 0 when none failed; null when no purchase
   * succeeded after it.
   */
  readonly recoveryS: number | null;
}

/** A fault owns the failures answered between its injection and the next fault's. */
export function recoveryOf(window: FaultWindow, outcomes: readonly PurchaseOutcome[]): Recovery {
  const failures = outcomes.filter((o) => !o.ok && o.doneMs >= window.atMs && o.doneMs < window.untilMs);
  if (failures.length === 0) return { failed: 0, recoveryS: 0 };
  const lastSent = Math.max(...failures.map((o) => o.sentMs));
  let back: number | undefined;
  for (const o of outcomes)
    // Answered after the fault too: a failure sent before the fault (a request the fault before it held
    // up to nginx's timeout) must not date the recovery before the injection.
    if (o.ok && o.sentMs > lastSent && o.doneMs >= window.atMs && (back === undefined || o.doneMs < back))
      back = o.doneMs;
  return {
    failed: failures.length,
    recoveryS: back === undefined ? null : Math.round((back - window.atMs) / 10) / 100,
  };
}
