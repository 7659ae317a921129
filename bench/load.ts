/**
 * Purchases and what they were answered: `PurchaseLedger` keeps, per product, what the MySQL checks expect
 * (bench/verify.ts); `runPurchasePhase` is the closed loop (C workers, each waits for its answer).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import type { Dispatcher } from 'undici';
import { errorCode } from './api.js';
import { BENCH_USERS, benchUser, type BenchTokens } from './auth.js';
import type { AnswerClass, AnswerTiming, OpenLoopRequest } from './open-loop.js';
import { num } from './report.js';
import type { BenchIO } from './types.js';

const HISTOGRAM_MAX_US = 120_000_000; // 2 min

/** An answer that leaves the key's order unknown: `503 OVERLOADED`, `transport UND_ERR_SOCKET`, ... */
export type PurchaseAttempt = { productId: number; userId: string; key: string; answer: string };
/** Per product: fresh 201s (confirmed orders), 402s (made and cancelled), the keys answered 202 (saga open). */
export type ProductTally = { created: number; declined: number; readonly pendingKeys: string[] };

/** A closed-loop phase's answers: fresh 201s (in the window too), 402s, replays, other answers by label, latency of 201s and of every answer. */
export type PhaseResult = Awaited<ReturnType<typeof runPurchasePhase>>;

/** `productIds`: each request to one at random; `keyPrefix` unique per run and phase; `tokens` of the BENCH_USERS. */
export interface PurchasePhase {
  readonly http: Dispatcher;
  readonly productIds: readonly number[];
  readonly connections: number;
  readonly durationS: number;
  readonly label: string;
  readonly keyPrefix: string;
  readonly tokens: BenchTokens;
  readonly io: BenchIO;
}

/** Now on the monotonic clock, µs (the clock of V8 .cpuprofile timestamps on Linux). */
export const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);

export function newLatencyHistogram(): RecordableHistogram {
  return createHistogram({ lowest: 1, highest: HISTOGRAM_MAX_US, figures: 3 });
}

export async function runPurchasePhase(phase: PurchasePhase) {
  const { http, productIds, connections, io } = phase;
  if (productIds.length === 0) throw new Error(`${phase.label}: no product to buy`);
  const ledger = new PurchaseLedger(phase.tokens, productIds);
  const latency = newLatencyHistogram();
  const answeredLatency = newLatencyHistogram();
  const statuses: Record<string, number> = {};
  const failures: Record<string, number> = {};
  /** Requests sent, fresh 201s (in the window too), other answers. */
  const n = { sent: 0, created: 0, createdInWindow: 0, failed: 0 };
  const startedAt = performance.now();
  const monotonicStart = monotonicUs();
  const endAt = startedAt + phase.durationS * 1000;
  let open = true;
  const fail = (answer: string): void => {
    n.failed += 1;
    failures[answer] = (failures[answer] ?? 0) + 1;
  };

  const worker = async (w: number): Promise<void> => {
    for (let seq = 0; open && !io.signal.aborted; seq += 1) {
      const productId =
        productIds[productIds.length === 1 ? 0 : Math.floor(Math.random() * productIds.length)]!;
      const userId = `bench-u${(w * 7_919 + seq * 104_729) % BENCH_USERS}`;
      const request = ledger.purchase('purchase', productId, 1, `${phase.keyPrefix}-${w}-${seq}`, userId);
      const started = performance.now();
      n.sent += 1;
      try {
        const res = await http.request({
          path: request.path,
          method: request.method,
          headers: { 'content-type': 'application/json', ...request.headers },
          body: request.body,
        });
        const text = res.statusCode === 201 ? (await res.body.dump(), '') : await res.body.text();
        const finished = performance.now();
        const us = Math.max(1, Math.round((finished - started) * 1000));
        answeredLatency.record(us);
        statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
        const timing = { startMs: startedAt, intendedMs: started, doneMs: finished };
        const { label = '' } = request.answer!(res.statusCode, res.headers, text, timing) ?? {};
        if (res.statusCode !== 201) fail(label);
        else {
          latency.record(us);
          if (label === '201') {
            n.created += 1;
            if (finished <= endAt) n.createdInWindow += 1;
          }
        }
      } catch (err) {
        const code = (err as { code?: string }).code ?? (err as Error).name;
        request.transportError!(code);
        fail(`transport ${code}`);
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
    connections,
    windowS: phase.durationS,
    ...n,
    replayed: ledger.replayed,
    declined: [...ledger.perProduct.values()].reduce((sum, t) => sum + t.declined, 0),
    perProduct: ledger.perProduct,
    failures,
    ambiguous: ledger.ambiguous,
    latency,
    answeredLatency,
    statuses,
    perS: n.createdInWindow / phase.durationS,
    monotonicUs: { start: monotonicStart, end: monotonicStart + phase.durationS * 1e6 },
  };
}

export class PurchaseLedger {
  readonly perProduct = new Map<number, ProductTally>();
  readonly ambiguous: PurchaseAttempt[] = [];
  /** Keys sent once but answered as replays: a proxy retry (through nginx) or a bug (straight to a node). */
  replayed = 0;

  /** Purchases of one unit, each with a fresh key `<tag>-<n>` and the next bench user: `stream(tag)(productId)` is an open loop's `next`. */
  stream(tag: string): (productId: number) => () => OpenLoopRequest {
    let seq = 0;
    return (productId) => () => {
      seq += 1;
      return this.purchase('purchase', productId, 1, `${tag}-${seq}`, benchUser(seq));
    };
  }

  constructor(
    /** Bearer tokens of every user `purchase` is called with (minted before the load). */
    private readonly tokens: BenchTokens,
    productIds: readonly number[] = [],
  ) {
    for (const id of productIds) this.tally(id);
  }

  tally(productId: number): ProductTally {
    let tally = this.perProduct.get(productId);
    if (tally === undefined) {
      tally = { created: 0, declined: 0, pendingKeys: [] };
      this.perProduct.set(productId, tally);
    }
    return tally;
  }

  /** `POST /purchases` of one key as `userId`; only a fresh 201 is not an error; `then` may reclassify. */
  purchase(
    op: string,
    productId: number,
    quantity: number,
    key: string,
    userId: string,
    then?: (cls: AnswerClass, timing: AnswerTiming) => AnswerClass | void,
  ): OpenLoopRequest {
    return {
      op,
      method: 'POST',
      path: '/purchases',
      headers: { authorization: this.tokens.bearer(userId), 'idempotency-key': key },
      body: JSON.stringify({ productId, quantity }),
      answer: (status, headers, body, timing) => {
        const cls = this.answer(productId, key, userId, status, headers, body);
        return then?.(cls, timing) ?? cls;
      },
      transportError: (code) => {
        this.ambiguous.push({ productId, userId, key, answer: `transport ${code}` });
      },
    };
  }

  private answer(
    productId: number,
    key: string,
    userId: string,
    status: number,
    headers: IncomingHttpHeaders,
    body: string,
  ): AnswerClass {
    const tally = this.tally(productId);
    if (status === 201) {
      if (headers['idempotent-replayed'] === 'true') {
        // Keys are sent once: a replay means a proxy retried a request whose first attempt committed
        // (nginx's proxy_next_upstream non_idempotent). Still this key's confirmed order.
        this.replayed += 1;
        tally.created += 1;
        return { error: false, label: '201 REPLAYED' };
      }
      tally.created += 1;
      return { error: false, label: '201' };
    }
    if (status === 202) {
      tally.pendingKeys.push(key);
      return { error: true, label: '202 PENDING' };
    }
    const label = `${status} ${errorCode(body)}`;
    if (status === 402) tally.declined += 1;
    if (status >= 500) this.ambiguous.push({ productId, userId, key, answer: label });
    return { error: true, label };
  }
}
