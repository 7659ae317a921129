import nact from 'nact';
import type { ActorSystemRef } from 'nact';
import { every, sleep, type Periodic } from '../../src/timeouts.js';
import { spawnProductActor, type ProductActorHandle } from './product-actor.js';
import type {
  BatchResult,
  CommittedOrders,
  ProductId,
  PurchaseOutcome,
  PurchaseRefusal,
  PurchaseRequest,
  Refusal,
  RestockOutcome,
  SettleOutcome,
  Settlement,
} from '../../src/domain/index.js';
import type { PendingPurchase, ProductMessage } from './types.js';
import { errorText, StockWriteThrough, type StockWriteThroughOptions } from './write-through.js';
import { InvariantError } from '../../src/domain/index.js';
import { BatchFlusher, type BatchFlushOptions, type FlushTarget } from './batch-flush.js';

const { dispatch } = nact;

/** With the stock write-through's options (cache, timeout, publication, onStockChanged: write-through.ts) and
 * the batch writes' (store, lease check, metrics: batch-flush.ts). */
export interface ProductActorsOptions extends StockWriteThroughOptions, BatchFlushOptions {
  system: ActorSystemRef;
  /** Purchases and restocks one product may hold (queued + reserved + being written) before new ones get 503. */
  mailboxLimit: number;
  /** An actor with nothing to do for this long is passivated, ms. */
  passivateAfterMs: number;
  now?: () => number;
}

interface Queued {
  request: PurchaseRequest;
  resolve: (outcome: PurchaseOutcome) => void;
  /** performance.now() at arrival (only when stages are measured). */
  arrivedAt: number | undefined;
}

class Entry implements FlushTarget {
  /** Set right after construction: the actor's callbacks need the entry first. */
  handle!: ProductActorHandle;
  /** Requests accepted for this actor and not yet answered. */
  outstanding = 0;
  /** Purchases that arrived in this event-loop turn; dispatched to the actor as one message. */
  ingress: Queued[] = [];
  scheduled = false;
  retired = false;
  visible: Promise<void> | undefined;
  constructor(
    readonly productId: ProductId,
    public lastActive: number,
  ) {}
}

/**
 * Routes purchases to product actors: a plain map from product id to actor, activation on first use,
 * one coalesced message per actor per event-loop turn (nact handles one message per turn), a bound per
 * actor, passivation of idle actors; their batch writes go through a `BatchFlusher` (batch-flush.ts).
 *
 * Retirement order (nact loses messages sent to a stopped actor): remove from routing, let the mailbox
 * drain, then the actor stops itself on the `stop` message that is sent last.
 */
export class ProductActors {
  private readonly entries = new Map<ProductId, Entry>();
  /** Actors being handed off: no new work; they retire once what they hold is answered. */
  private readonly closing = new Set<Entry>();
  private readonly flusher: BatchFlusher;
  private readonly sweeper: Periodic;
  private readonly now: () => number;
  private admitting = true;
  private outstanding = 0;
  private activations = 0;
  private drained: (() => void) | undefined;
  private readonly committedListeners: ((info: CommittedOrders) => void)[] = [];

  constructor(private readonly options: ProductActorsOptions) {
    this.now = options.now ?? Date.now;
    this.flusher = new BatchFlusher(options, new StockWriteThrough(options));
    this.sweeper = every(Math.max(10, Math.floor(options.passivateAfterMs / 2)), () => this.passivateIdle(), {
      unref: true,
    });
  }

  /** Calls `listener` inside the actor when a batch commits, before its replies (new orders start sagas). */
  onCommitted(listener: (info: CommittedOrders) => void): void {
    this.committedListeners.push(listener);
  }

  /** Reserves and commits a purchase through the product's actor; resolves with its outcome. */
  purchase(request: PurchaseRequest): Promise<PurchaseOutcome> {
    const arrivedAt = this.options.onStage === undefined ? undefined : performance.now();
    return new Promise((resolve) => this.submit({ request, resolve, arrivedAt }));
  }

  restock(productId: ProductId, quantity: number): Promise<RestockOutcome> {
    return this.direct(productId, (reply) => ({ kind: 'restock', quantity, reply }));
  }

  /**
   * Persists a saga's decision. A cancellation releases stock: it goes through the product's actor (never
   * turned away by the mailbox bound). A confirmation changes no stock and its saga's version check fences
   * it: it is committed beside the product's chain (the store's `commitConfirmation`), so a purchase takes
   * one slot of its product's chain, not two, and never waits for a reservation batch in flight.
   */
  settle(settlement: Settlement): Promise<SettleOutcome> {
    const { store } = this.options;
    if (settlement.outcome === 'confirm' && store.commitConfirmation !== undefined)
      return this.confirm(settlement, (s) => store.commitConfirmation!(s));
    return this.direct(settlement.productId, (reply) => ({ kind: 'settle', settlement, reply }));
  }

  private async confirm(
    settlement: Settlement,
    commit: (settlement: Settlement) => Promise<BatchResult>,
  ): Promise<SettleOutcome> {
    const refusal = this.admission(settlement.productId);
    if (refusal) return refusal;
    this.outstanding += 1;
    try {
      const result = await commit(settlement);
      if (result.kind === 'committed') return { kind: 'settled', status: 'CONFIRMED' };
      if (result.kind === 'settled_elsewhere') {
        const saga = result.sagas.find((s) => s.orderId === settlement.orderId);
        if (saga !== undefined) return { kind: 'already', status: saga.status };
      }
      throw new InvariantError(`unexpected ${result.kind} for a confirmation`);
    } catch (err) {
      this.options.logger.error(
        {
          reqId: settlement.requestId,
          productId: settlement.productId,
          orderId: settlement.orderId,
          err: errorText(err),
        },
        'confirmation write failed',
      );
      return {
        kind: 'refused',
        reason: 'DEPENDENCY_UNAVAILABLE',
        message: `the confirmation write failed (${errorText(err)}); retry`,
      };
    } finally {
      this.outstanding -= 1;
      if (this.outstanding === 0 && this.drained) this.drained();
    }
  }

  /** Sends one message straight to the actor (no coalescing), counted as outstanding until answered. */
  private direct<T extends RestockOutcome | SettleOutcome>(
    productId: ProductId,
    message: (reply: (outcome: T) => void) => ProductMessage,
  ): Promise<T> {
    return new Promise((resolve) => {
      const refusal = this.admission(productId);
      if (refusal) {
        resolve(refusal as T); // both outcome types include Refusal
        return;
      }
      const entry = this.entryFor(productId);
      this.track(entry);
      dispatch(entry.handle.ref, message(this.answerOnce(entry, resolve)));
    });
  }

  /** Active actors, requests in progress, and actors activated since start. */
  stats(): { actors: number; outstanding: number; activations: number } {
    return { actors: this.entries.size, outstanding: this.outstanding, activations: this.activations };
  }

  /**
   * Hands off the products matching `which` (their shard moves to another node): refuses their new work
   * (the router sends it to the next owner), waits up to `timeoutMs` for what they hold, then retires them.
   */
  async release(which: (productId: ProductId) => boolean, timeoutMs: number): Promise<void> {
    const leaving = [...this.entries.values()].filter((e) => which(e.productId));
    for (const entry of leaving) this.closing.add(entry);
    const until = Date.now() + timeoutMs;
    while (leaving.some((e) => e.outstanding > 0) && Date.now() < until) await sleep(5);
    for (const entry of leaving) {
      this.closing.delete(entry);
      this.retire(entry, 'OWNERSHIP_LOST', `product ${entry.productId} moved to another node; retry`);
    }
  }

  /** Retires the products matching `which` at once (their shard's lease was lost): whatever they hold is refused. */
  retireWhere(which: (productId: ProductId) => boolean): void {
    for (const entry of [...this.entries.values()]) {
      if (which(entry.productId))
        this.retire(entry, 'OWNERSHIP_LOST', `product ${entry.productId} is no longer owned here; retry`);
    }
  }

  /** Stops admitting, waits for every accepted request to be answered (up to `timeoutMs`), then stops all actors. */
  async drain(timeoutMs: number): Promise<boolean> {
    this.admitting = false;
    let complete = this.outstanding === 0;
    if (!complete) {
      complete = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), timeoutMs);
        this.drained = () => {
          clearTimeout(timer);
          resolve(true);
        };
      });
    }
    for (const entry of [...this.entries.values()])
      this.retire(entry, 'SHUTTING_DOWN', 'this node is shutting down; retry');
    this.sweeper.stop();
    return complete;
  }

  private submit(queued: Queued): void {
    const refusal = this.admission(queued.request.productId);
    if (refusal) {
      queued.resolve(refusal);
      return;
    }
    const entry = this.entryFor(queued.request.productId);
    if (entry.outstanding >= this.options.mailboxLimit) {
      queued.resolve({
        kind: 'refused',
        reason: 'OVERLOADED',
        message: `product ${entry.productId} has ${entry.outstanding} requests queued (limit ${this.options.mailboxLimit}); retry`,
      });
      return;
    }
    this.track(entry);
    entry.ingress.push(queued);
    if (!entry.scheduled) {
      entry.scheduled = true;
      setImmediate(() => this.deliver(entry));
    }
  }

  private admission(productId: ProductId): Refusal | undefined {
    if (!this.admitting) {
      return {
        kind: 'refused',
        reason: 'SHUTTING_DOWN',
        message: `this node is shutting down; product ${productId} not taken`,
      };
    }
    const entry = this.entries.get(productId);
    const mayWrite = this.options.mayWrite?.(productId) ?? true;
    if (mayWrite && (entry === undefined || !this.closing.has(entry))) return undefined;
    return {
      kind: 'refused',
      reason: 'OWNERSHIP_LOST',
      message: `product ${productId} is not owned here now; retry`,
    };
  }

  private deliver(entry: Entry): void {
    entry.scheduled = false;
    const queued = entry.ingress;
    entry.ingress = [];
    if (entry.retired) {
      // The actor retired after these were accepted: hand them to its successor.
      for (const item of queued) {
        this.untrack(entry);
        this.submit(item);
      }
      return;
    }
    const items: PendingPurchase[] = queued.map((q) => ({
      request: q.request,
      reply: this.answerOnce(entry, q.resolve),
      arrivedAt: q.arrivedAt,
    }));
    dispatch(entry.handle.ref, { kind: 'purchases', items });
  }

  private entryFor(productId: ProductId): Entry {
    const existing = this.entries.get(productId);
    if (existing !== undefined) return existing;
    const entry = new Entry(productId, this.now());
    entry.handle = spawnProductActor(this.options.system, productId, {
      startFlush: (batch) => this.flusher.flush(entry, batch),
      committed: (info) => this.committedListeners.forEach((listener) => listener(info)),
      now: this.now,
      retired: () => this.retire(entry, 'OWNERSHIP_LOST', 'retired'),
      crashed: (id, error) =>
        this.options.logger.error({ productId: id, err: error }, 'product actor crashed'),
      ...(this.options.onStage === undefined ? {} : { stage: this.options.onStage }),
    });
    this.entries.set(productId, entry);
    this.activations += 1;
    this.options.store.load(productId).then(
      (record) => dispatch(entry.handle.ref, { kind: 'loaded', record }),
      (err: unknown) => dispatch(entry.handle.ref, { kind: 'load_failed', error: errorText(err) }),
    );
    return entry;
  }

  private retire(entry: Entry, reason: PurchaseRefusal, message: string): void {
    if (entry.retired) return;
    entry.retired = true;
    if (this.entries.get(entry.productId) === entry) this.entries.delete(entry.productId);
    dispatch(entry.handle.ref, { kind: 'stop', reason, message });
  }

  private passivateIdle(): void {
    const cutoff = this.now() - this.options.passivateAfterMs;
    for (const entry of this.entries.values()) {
      if (
        entry.outstanding === 0 &&
        !entry.scheduled &&
        entry.handle.core.isIdle &&
        entry.lastActive <= cutoff
      ) {
        this.retire(entry, 'OWNERSHIP_LOST', `product ${entry.productId} actor passivated; retry`);
      }
    }
  }

  private track(entry: Entry): void {
    entry.outstanding += 1;
    this.outstanding += 1;
  }

  private untrack(entry: Entry): void {
    entry.outstanding -= 1;
    entry.lastActive = this.now();
    this.outstanding -= 1;
    if (this.outstanding === 0 && this.drained) this.drained();
  }

  private answerOnce<T>(entry: Entry, resolve: (outcome: T) => void): (outcome: T) => void {
    let answered = false;
    return (outcome) => {
      if (answered) return;
      answered = true;
      const answer = (): void => {
        this.untrack(entry);
        resolve(outcome);
      };
      // After the write-through of every batch committed so far (`FlushTarget.visible`): the answer's stock
      // is in the cache.
      if (entry.visible === undefined) answer();
      else void entry.visible.then(answer);
    };
  }
}
