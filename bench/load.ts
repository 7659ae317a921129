/**
 * Closed-loop purchase load: `connections` workers, each sends `POST /purchases` (to one product, or to one
 * of several picked uniformly at random per request) and waits for the answer before sending the next,
 * until the phase ends. Latencies go into Node's built-in HDR histogram
 * (perf_hooks.createHistogram, 3 significant digits, recorded in µs). Closed loop means the generator
 * slows down with the service, so latencies omit the waiting a fixed arrival rate would have caused
 * (coordinated omission); rates and latencies are those of C requests always in flight.
 */
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import type { Dispatcher } from 'undici';
import { errorCode } from './api.js';
import { BENCH_USERS, type BenchTokens } from './auth.js';
import { num } from './report.js';
import type { BenchIO } from './types.js';

const HISTOGRAM_MAX_US = 120_000_000; // 2 min

export interface PurchaseAttempt {
  readonly productId: number;
  readonly userId: string;
  readonly key: string;
  /** What was answered: `503 OVERLOADED`, `transport UND_ERR_SOCKET`, ... */
  readonly answer: string;
}

/** What one product of a phase was answered (the verifier's expectations come from these). */
export interface ProductTally {
  /** Fresh 201 answers: confirmed orders. */
  created: number;
  /** 402 answers: orders made and cancelled. */
  declined: number;
  /** Keys answered 202: the order exists, its saga had not ended when the answer went out. */
  readonly pendingKeys: string[];
}

export interface PhaseResult {
  readonly label: string;
  /** The products the phase spread its purchases over (one for a hot-product phase). */
  readonly productIds: readonly number[];
  readonly perProduct: ReadonlyMap<number, ProductTally>;
  readonly connections: number;
  /** Length of the measuring window, s (answers after it still count for correctness, not for the rate). */
  readonly windowS: number;
  readonly sent: number;
  /** 201 answers without Idempotent-Replayed: confirmed orders this phase created (the rate counts these). */
  readonly created: number;
  readonly createdInWindow: number;
  /** 402 answers: an order was made and cancelled (payment declined; its stock released). */
  readonly declined: number;
  /** 201 answers with Idempotent-Replayed (keys are unique, so these should be 0). */
  readonly replayed: number;
  /** Answers other than a fresh 201, by `status CODE` (or `transport ERR_CODE`). */
  readonly failures: Readonly<Record<string, number>>;
  readonly failed: number;
  /** 5xx and transport errors: the outcome is unknown until the key is retried. */
  readonly ambiguous: readonly PurchaseAttempt[];
  /** Latency of the 201 answers. */
  readonly latency: RecordableHistogram;
  /** Latency of every answered request (any HTTP status; transport errors are not answers). */
  readonly answeredLatency: RecordableHistogram;
  /** Answers by HTTP status (`201`, `202`, `402`, `503`, ...), replays included. */
  readonly statuses: Readonly<Record<string, number>>;
  readonly perS: number;
  /** The measuring window on the monotonic clock, µs (the clock of V8 .cpuprofile timestamps on Linux). */
  readonly monotonicUs: { readonly start: number; readonly end: number };
}

export interface PurchasePhase {
  readonly http: Dispatcher;
  /** One product, or several: each request picks one uniformly at random. */
  readonly productIds: readonly number[];
  readonly connections: number;
  readonly durationS: number;
  readonly label: string;
  /** Prefix of every Idempotency-Key of the phase; must be unique per run and phase. */
  readonly keyPrefix: string;
  /** The buyers' bearer tokens (minted before the phase): purchases are spread over BENCH_USERS users. */
  readonly tokens: BenchTokens;
  readonly io: BenchIO;
}

/** Now on the monotonic clock, µs (the clock of V8 .cpuprofile timestamps on Linux). */
export const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);

export function newLatencyHistogram(): RecordableHistogram {
  return createHistogram({ lowest: 1, highest: HISTOGRAM_MAX_US, figures: 3 });
}

export async function runPurchasePhase(phase: PurchasePhase): Promise<PhaseResult> {
  const { http, productIds, connections, tokens, io } = phase;
  if (productIds.length === 0) throw new Error(`${phase.label}: no product to buy`);
  const bodies = productIds.map((productId) => JSON.stringify({ productId, quantity: 1 }));
  const perProduct = new Map<number, ProductTally>(
    productIds.map((id) => [id, { created: 0, declined: 0, pendingKeys: [] }]),
  );
  const latency = newLatencyHistogram();
  const answeredLatency = newLatencyHistogram();
  const statuses: Record<string, number> = {};
  const failures: Record<string, number> = {};
  const ambiguous: PurchaseAttempt[] = [];
  /** Requests sent, fresh 201s (in the window too), replays, other answers, 402s. */
  const n = { sent: 0, created: 0, createdInWindow: 0, replayed: 0, failed: 0, declined: 0 };
  const startedAt = performance.now();
  const monotonicStart = monotonicUs();
  const endAt = startedAt + phase.durationS * 1000;
  let open = true;

  const fail = (answer: string, attempt: Omit<PurchaseAttempt, 'answer'>, isAmbiguous: boolean): void => {
    n.failed += 1;
    failures[answer] = (failures[answer] ?? 0) + 1;
    if (isAmbiguous) ambiguous.push({ ...attempt, answer });
  };

  const worker = async (w: number): Promise<void> => {
    for (let seq = 0; open && !io.signal.aborted; seq += 1) {
      const userId = `bench-u${(w * 7_919 + seq * 104_729) % BENCH_USERS}`;
      const key = `${phase.keyPrefix}-${w}-${seq}`;
      const pick = productIds.length === 1 ? 0 : Math.floor(Math.random() * productIds.length);
      const productId = productIds[pick]!;
      const tally = perProduct.get(productId)!;
      const started = performance.now();
      n.sent += 1;
      try {
        const res = await http.request({
          path: '/purchases',
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            authorization: tokens.bearer(userId),
            'idempotency-key': key,
          },
          body: bodies[pick]!,
        });
        const text = res.statusCode === 201 ? (await res.body.dump(), '') : await res.body.text();
        const finished = performance.now();
        const us = Math.max(1, Math.round((finished - started) * 1000));
        answeredLatency.record(us);
        statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
        if (res.statusCode === 201) {
          latency.record(us);
          if (res.headers['idempotent-replayed'] === 'true') n.replayed += 1;
          else {
            n.created += 1;
            tally.created += 1;
            if (finished <= endAt) n.createdInWindow += 1;
          }
        } else {
          if (res.statusCode === 202) tally.pendingKeys.push(key);
          else if (res.statusCode === 402) {
            n.declined += 1;
            tally.declined += 1;
          }
          fail(
            `${res.statusCode} ${res.statusCode === 202 ? 'PENDING' : errorCode(text)}`,
            { productId, userId, key },
            res.statusCode >= 500,
          );
        }
      } catch (err) {
        fail(
          `transport ${(err as { code?: string }).code ?? (err as Error).name}`,
          { productId, userId, key },
          true,
        );
        await new Promise((resolve) => setTimeout(resolve, 10)); // no hot loop against a dead socket
      }
    }
  };

  let lastCreated = 0;
  const ticker = setInterval(() => {
    const elapsed = (performance.now() - startedAt) / 1000;
    const rate = n.created - lastCreated;
    lastCreated = n.created;
    io.progress(
      `[${phase.label}] ${elapsed.toFixed(0).padStart(3)}s  ${num(rate).padStart(7)}/s  (mean ${num(n.created / elapsed)}/s)  ok ${num(n.created)}  errors ${num(n.failed)}`,
    );
  }, 1000);
  const closer = setTimeout(() => (open = false), phase.durationS * 1000);
  try {
    await Promise.all(Array.from({ length: connections }, (_, w) => worker(w)));
  } finally {
    clearInterval(ticker);
    clearTimeout(closer);
  }
  return {
    label: phase.label,
    productIds,
    perProduct,
    connections,
    windowS: phase.durationS,
    ...n,
    failures,
    ambiguous,
    latency,
    answeredLatency,
    statuses,
    perS: n.createdInWindow / phase.durationS,
    monotonicUs: { start: monotonicStart, end: monotonicStart + phase.durationS * 1e6 },
  };
}
