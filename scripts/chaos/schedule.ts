/**
 * The chaos run's fault schedule, drawn from a seed (the same seed, the same faults in the same order with
 * the same spacing and durations), and each fault's recovery time from the purchases' answers. Pure: unit-
 * tested in test/bench/chaos.test.ts.
 */
import { seededRandom } from '../../src/payment-provider/random.js';

/** The payment provider's seeded PRNG (mulberry32): one seed, the same rolls in both. */
export { seededRandom };

/** Every fault the chaos run injects. */
export const FAULT_KINDS = [
  'app-kill',
  'app-pause',
  'redis-primary-kill',
  'kafka-broker-kill',
  'mysql-primary-kill',
  'mysql-replica-stop',
  'app-redis-cut',
] as const;

export type FaultKind = (typeof FAULT_KINDS)[number];

export interface PlannedFault {
  readonly kind: FaultKind;
  /** Which of the candidates to hit (an app node, a Kafka broker), as an index the injector reduces modulo. */
  readonly target: number;
  /** How long the fault lasts before its heal starts (pause, broker down, replica down), ms. */
  readonly holdMs: number;
  /** Pause from this fault's injection to the next one's (at least; a heal still running delays it), ms. */
  readonly gapMs: number;
}

/** How long each kind holds its fault before healing it, ms: [min, max]. */
const HOLD_MS: Readonly<Record<FaultKind, readonly [number, number]>> = {
  'app-kill': [1_000, 3_000], // dead before its restart
  'app-pause': [2_000, 5_000], // SIGSTOP → SIGCONT
  'redis-primary-kill': [0, 0], // restarted once the Sentinels promoted the replica
  'kafka-broker-kill': [6_000, 10_000], // longer than the brokers' 4 s fencing: leadership must move
  'mysql-primary-kill': [0, 0], // rejoined once the manager promoted the replica
  'mysql-replica-stop': [3_000, 6_000],
  // one node alone cut off Redis: its leases expire there after 3 s and the other node takes its shards,
  // while it keeps serving them for LEASE_OUTAGE_GRACE_MS (10 s): both sell, fenced by the row version
  'app-redis-cut': [4_000, 12_000],
};

export interface ScheduleSettings {
  readonly seed: number;
  /** Mean pause between two injections, ms (each gap is drawn from 0.8× to 1.2× of it). */
  readonly intervalMs: number;
  /** `short`: each kind once; `long`: rounds of every kind, each round in a new order, without end. */
  readonly profile: 'short' | 'long';
  /** The kinds to inject; default every one. */
  readonly kinds?: readonly FaultKind[];
}

/** `--param faults=a,b`: fault kinds by name; throws naming the unknown ones. */
export function parseKinds(raw: string | undefined): FaultKind[] {
  if (raw === undefined) return [...FAULT_KINDS];
  const names = raw.split(',').map((s) => s.trim());
  const unknown = names.filter((n) => !(FAULT_KINDS as readonly string[]).includes(n));
  if (unknown.length > 0 || names.length === 0)
    throw new Error(`--param faults=${raw}: unknown ${unknown.join(', ')}; kinds: ${FAULT_KINDS.join(', ')}`);
  return [...new Set(names as FaultKind[])];
}

/** The faults in order: rounds of every kind, each shuffled; `short` stops after one round, `long` never. */
export function* faultSchedule(settings: ScheduleSettings): Generator<PlannedFault, void, undefined> {
  const random = seededRandom(settings.seed);
  const between = (min: number, max: number): number => Math.round(min + (max - min) * random());
  for (;;) {
    const round = [...(settings.kinds ?? FAULT_KINDS)];
    for (let i = round.length - 1; i > 0; i -= 1) {
      const j = Math.floor(random() * (i + 1));
      [round[i], round[j]] = [round[j]!, round[i]!];
    }
    for (const kind of round) {
      const [min, max] = HOLD_MS[kind];
      yield {
        kind,
        target: Math.floor(random() * 1_000),
        holdMs: between(min, max),
        gapMs: between(settings.intervalMs * 0.8, settings.intervalMs * 1.2),
      };
    }
    if (settings.profile === 'short') return;
  }
}

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
  /** Fault → answer of the first acknowledged purchase sent after its last failure, s; 0: none failed; null: never. */
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

/** Each fault with its recovery (its window ends at the next fault), and per kind their count, median and max. */
export function recoveries<F extends { kind: FaultKind; atMs: number }>(
  faults: readonly F[],
  outcomes: readonly PurchaseOutcome[],
) {
  const each = faults.map((f, i) => ({
    ...f,
    ...recoveryOf({ atMs: f.atMs, untilMs: faults[i + 1]?.atMs ?? Infinity }, outcomes),
  }));
  const byKind = Object.fromEntries(
    FAULT_KINDS.map((kind) => {
      const values = each.flatMap((f) => (f.kind === kind && f.recoveryS !== null ? [f.recoveryS] : []));
      const sorted = values.sort((a, b) => a - b);
      const n = sorted.length;
      const median = n % 2 === 1 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
      return [
        kind,
        { n, median: n === 0 ? null : Math.round(median * 100) / 100, max: sorted[n - 1] ?? null },
      ];
    }),
  );
  return { each, byKind };
}

/** The purchases' answers as a fault run needs them: when each was sent and answered, and the keys acknowledged. */
export class PurchaseOutcomes {
  readonly all: PurchaseOutcome[] = [];
  /** Keys answered 201. */
  readonly confirmed: string[] = [];
  /** Keys answered 202. */
  readonly pending: string[] = [];

  /** An answer (times in ms since the load started); true when it acknowledged the purchase (201 or 202). */
  answered(key: string, status: number, sentMs: number, doneMs: number): boolean {
    if (status === 201) this.confirmed.push(key);
    if (status === 202) this.pending.push(key);
    const ok = status === 201 || status === 202;
    this.all.push({ sentMs, doneMs, ok });
    return ok;
  }

  /** No answer (a transport error) at `atMs`. */
  lostAt(atMs: number): void {
    this.all.push({ sentMs: atMs, doneMs: atMs, ok: false });
  }
}
