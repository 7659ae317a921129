import { uuidv7 } from '../../src/ids.js';
import type {
  BatchResult,
  BatchWrite,
  ExistingOrder,
  OrderView,
  PendingPurchase,
  ProductId,
  ProductRecord,
  PurchaseOutcome,
  PurchaseRefusal,
  RestockOutcome,
} from './types.js';

/**
 * The product actor's state machine, free of nact so it can be tested alone. Every method runs inside
 * one actor message, so nothing here needs a lock: the mailbox serializes purchases of one product.
 *
 * Stock accounting: `available` = committed stock − reserved (pending + in flight) + pending restocks.
 * A purchase that fits is reserved at once; one that does not is answered out-of-stock without I/O.
 * Reserved purchases are written in batches (group commit): while one batch is in flight, new ones
 * accumulate in `pending`, and no reply is sent before its batch commits.
 */

interface Reservation {
  key: string;
  order: BatchWrite['orders'][number];
  /** The first request's reply, then those of duplicates that raced it. */
  replies: PendingPurchase['reply'][];
}

interface Restock {
  quantity: number;
  reply: (outcome: RestockOutcome) => void;
}

interface Batch {
  reservations: Reservation[];
  restocks: Restock[];
  write: BatchWrite;
}

/** What the core asks its host (the nact actor) to do. */
export interface CoreEffects {
  /** Write this batch; the result comes back through `flushed`. */
  startFlush(batch: BatchWrite): void;
  /** The actor answered everything and must be taken out of routing and stopped. */
  retire(reason: PurchaseRefusal, message: string): void;
  /** A batch committed (metrics, later: stock-change publication). */
  committed(info: { productId: ProductId; size: number; stock: number; version: number }): void;
  now(): number;
}

export type FlushResult = BatchResult | { kind: 'failed'; error: string };

/** How many answered idempotency keys an actor remembers (the database keeps successes forever). */
export const RECENT_KEYS_LIMIT = 20_000;

export const idempotencyKeyOf = (userId: string, key: string): string => `${userId}\u0000${key}`;

export class ProductCore {
  private phase: 'loading' | 'ready' | 'retired' = 'loading';
  private record: ProductRecord | undefined;
  private available = 0;
  private waiting: PendingPurchase[] = [];
  private waitingRestocks: Restock[] = [];
  private pending: Reservation[] = [];
  private pendingRestocks: Restock[] = [];
  private inFlight: Batch | undefined;
  private readonly open = new Map<string, Reservation>();
  private readonly recent = new Map<
    string,
    { productId: ProductId; quantity: number; outcome: PurchaseOutcome }
  >();

  constructor(
    readonly productId: ProductId,
    private readonly effects: CoreEffects,
  ) {}

  get isIdle(): boolean {
    return this.inFlight === undefined && this.pending.length === 0 && this.waiting.length === 0;
  }

  /** Stock not yet reserved (what a purchase can still take). */
  get availableStock(): number {
    return this.available;
  }

  loaded(record: ProductRecord | undefined): void {
    if (this.phase !== 'loading') return;
    if (record === undefined) {
      this.retire('PRODUCT_NOT_FOUND', `product ${this.productId} does not exist`);
      return;
    }
    this.record = { ...record };
    this.available = record.stock;
    this.phase = 'ready';
    const waiting = this.waiting;
    const restocks = this.waitingRestocks;
    this.waiting = [];
    this.waitingRestocks = [];
    // Restocks first, so purchases that waited can use them; one batch carries both.
    for (const restock of restocks) {
      this.available += restock.quantity;
      this.pendingRestocks.push(restock);
    }
    this.purchases(waiting);
  }

  loadFailed(error: string): void {
    this.retire('DEPENDENCY_UNAVAILABLE', `could not load product ${this.productId}: ${error}`);
  }

  purchases(items: readonly PendingPurchase[]): void {
    if (this.phase === 'loading') {
      this.waiting.push(...items);
      return;
    }
    for (const item of items) this.purchase(item);
    this.maybeFlush();
  }

  restock(quantity: number, reply: Restock['reply']): void {
    if (this.phase === 'loading') {
      this.waitingRestocks.push({ quantity, reply });
      return;
    }
    if (this.phase === 'retired') {
      reply({
        kind: 'refused',
        reason: 'OWNERSHIP_LOST',
        message: `product ${this.productId} actor was retired; retry`,
      });
      return;
    }
    this.available += quantity;
    this.pendingRestocks.push({ quantity, reply });
    this.maybeFlush();
  }

  flushed(result: FlushResult): void {
    const batch = this.inFlight;
    if (batch === undefined || this.record === undefined) return;
    this.inFlight = undefined;
    switch (result.kind) {
      case 'committed':
        this.commit(batch, result.version, result.committedAt);
        break;
      case 'duplicates':
        this.dropDuplicates(batch, result.existing);
        break;
      case 'version_conflict':
        this.retire('OWNERSHIP_LOST', `product ${this.productId} was written by another owner; retry`, batch);
        return;
      case 'failed':
        this.retire(
          'DEPENDENCY_UNAVAILABLE',
          `the batch write failed (${result.error}); retry with the same key`,
          batch,
        );
        return;
    }
    this.maybeFlush();
  }

  /** Answers everything still held with `reason` (used when the actor is stopped from outside). */
  stop(reason: PurchaseRefusal, message: string): void {
    if (this.phase !== 'retired') this.retire(reason, message, this.inFlight);
  }

  private purchase(item: PendingPurchase): void {
    const { request, reply } = item;
    const key = idempotencyKeyOf(request.userId, request.idempotencyKey);
    const seen = this.recent.get(key);
    if (seen !== undefined) {
      reply(this.sameRequest(seen, request) ? replayOf(seen.outcome) : keyReused(request.idempotencyKey));
      return;
    }
    const racing = this.open.get(key);
    if (racing !== undefined) {
      if (racing.order.quantity === request.quantity) racing.replies.push(reply);
      else reply(keyReused(request.idempotencyKey));
      return;
    }
    if (this.phase === 'retired') {
      reply({
        kind: 'refused',
        reason: 'OWNERSHIP_LOST',
        message: `product ${this.productId} actor was retired; retry`,
      });
      return;
    }
    if (request.deadline <= this.effects.now()) {
      reply({
        kind: 'refused',
        reason: 'DEADLINE_EXCEEDED',
        message: 'the request expired before it reached the product',
      });
      return;
    }
    if (request.quantity > this.available) {
      const outcome: PurchaseOutcome = {
        kind: 'out_of_stock',
        productId: this.productId,
        requested: request.quantity,
        available: this.available,
      };
      this.remember(key, request.quantity, outcome);
      reply(outcome);
      return;
    }
    this.available -= request.quantity;
    const reservation: Reservation = {
      key,
      replies: [reply],
      order: {
        id: uuidv7(),
        productId: this.productId,
        userId: request.userId,
        idempotencyKey: request.idempotencyKey,
        quantity: request.quantity,
        unitPriceCents: this.record!.priceCents,
      },
    };
    this.open.set(key, reservation);
    this.pending.push(reservation);
  }

  private maybeFlush(): void {
    if (this.phase !== 'ready' || this.inFlight !== undefined) return;
    if (this.pending.length === 0 && this.pendingRestocks.length === 0) return;
    const record = this.record!;
    const reservations = this.pending;
    const restocks = this.pendingRestocks;
    this.pending = [];
    this.pendingRestocks = [];
    const sold = reservations.reduce((sum, r) => sum + r.order.quantity, 0);
    const restocked = restocks.reduce((sum, r) => sum + r.quantity, 0);
    const write: BatchWrite = {
      productId: this.productId,
      expectedVersion: record.version,
      newStock: record.stock - sold + restocked,
      orders: reservations.map((r) => r.order),
    };
    this.inFlight = { reservations, restocks, write };
    this.effects.startFlush(write);
  }

  private commit(batch: Batch, version: number, committedAt: string): void {
    const record = this.record!;
    record.stock = batch.write.newStock;
    record.version = version;
    for (const reservation of batch.reservations) {
      const order = orderView(reservation.order, committedAt);
      const [first, ...racing] = reservation.replies;
      const created: PurchaseOutcome = { kind: 'created', order };
      this.open.delete(reservation.key);
      this.remember(reservation.key, reservation.order.quantity, created);
      first?.(created);
      for (const reply of racing) reply({ kind: 'replayed', order });
    }
    for (const restock of batch.restocks) {
      restock.reply({ kind: 'restocked', productId: this.productId, stock: record.stock, version });
    }
    this.effects.committed({
      productId: this.productId,
      size: batch.reservations.length,
      stock: record.stock,
      version,
    });
  }

  /** Orders that already exist (keys forgotten by a previous activation): answer them, retry the rest. */
  private dropDuplicates(batch: Batch, existing: readonly ExistingOrder[]): void {
    const byKey = new Map(existing.map((o) => [idempotencyKeyOf(o.userId, o.idempotencyKey), o]));
    const keep: Reservation[] = [];
    for (const reservation of batch.reservations) {
      const match = byKey.get(reservation.key);
      if (match === undefined) {
        keep.push(reservation);
        continue;
      }
      this.available += reservation.order.quantity;
      this.open.delete(reservation.key);
      const { idempotencyKey: _key, ...order } = match;
      const same = order.productId === this.productId && order.quantity === reservation.order.quantity;
      if (same) this.remember(reservation.key, order.quantity, { kind: 'created', order });
      const outcome: PurchaseOutcome = same
        ? { kind: 'replayed', order }
        : keyReused(reservation.order.idempotencyKey);
      for (const reply of reservation.replies) reply(outcome);
    }
    this.pending = [...keep, ...this.pending];
    this.pendingRestocks = [...batch.restocks, ...this.pendingRestocks];
  }

  private retire(reason: PurchaseRefusal, message: string, batch?: Batch): void {
    this.phase = 'retired';
    const refusal: PurchaseOutcome = { kind: 'refused', reason, message };
    const reservations = [...(batch?.reservations ?? []), ...this.pending];
    const restocks = [...(batch?.restocks ?? []), ...this.pendingRestocks, ...this.waitingRestocks];
    const waiting = this.waiting;
    this.pending = [];
    this.pendingRestocks = [];
    this.waitingRestocks = [];
    this.waiting = [];
    this.open.clear();
    for (const reservation of reservations) for (const reply of reservation.replies) reply(refusal);
    for (const item of waiting) item.reply(refusal);
    for (const restock of restocks) restock.reply({ kind: 'refused', reason, message });
    this.effects.retire(reason, message);
  }

  private remember(key: string, quantity: number, outcome: PurchaseOutcome): void {
    if (this.recent.size >= RECENT_KEYS_LIMIT) {
      const oldest = this.recent.keys().next().value;
      if (oldest !== undefined) this.recent.delete(oldest);
    }
    this.recent.set(key, { productId: this.productId, quantity, outcome });
  }

  private sameRequest(
    seen: { productId: ProductId; quantity: number },
    request: PendingPurchase['request'],
  ): boolean {
    return seen.productId === request.productId && seen.quantity === request.quantity;
  }
}

function replayOf(outcome: PurchaseOutcome): PurchaseOutcome {
  return outcome.kind === 'created' ? { kind: 'replayed', order: outcome.order } : outcome;
}

function keyReused(key: string): PurchaseOutcome {
  return {
    kind: 'refused',
    reason: 'IDEMPOTENCY_KEY_REUSED',
    message: `Idempotency-Key ${JSON.stringify(key)} was already used for a different purchase`,
  };
}

export function orderView(order: BatchWrite['orders'][number], createdAt: string): OrderView {
  return {
    orderId: order.id,
    productId: order.productId,
    userId: order.userId,
    quantity: order.quantity,
    unitPriceCents: order.unitPriceCents,
    status: 'CONFIRMED',
    createdAt,
  };
}
