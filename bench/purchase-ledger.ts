/**
 * What the open-loop purchases were answered, per product, in the shape the MySQL checks expect
 * (bench/verify.ts `expectedFrom`): fresh 201 = a confirmed order, 402 = a cancelled one, 202 = an order in
 * any state, 5xx or no answer = at most one order (looked up by its key afterwards).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { errorCode } from './api.js';
import { benchUser, type BenchTokens } from './auth.js';
import type { ProductTally, PurchaseAttempt } from './load.js';
import type { AnswerClass, AnswerTiming, OpenLoopRequest } from './open-loop.js';

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

  /**
   * `POST /purchases` for one unique key as customer `userId`; only a fresh 201 is not an error. `then` sees
   * each answer's class (and may replace it).
   */
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
