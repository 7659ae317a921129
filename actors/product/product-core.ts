import { uuidv7 } from '../../src/ids.js';
import { orderView, refused } from '../../src/domain/index.js';
import type {
  BatchResult,
  BatchWrite,
  CommittedOrders,
  ExistingOrder,
  OrderStatus,
  ProductId,
  ProductRecord,
  PurchaseOutcome,
  PurchaseRefusal,
  Refusal,
  SettleOutcome,
  Settlement,
  StageObserver,
} from '../../src/domain/index.js';
import {
  batchWrite,
  releasedBy,
  underWay,
  type Batch,
  type PendingSettlement,
  type Reservation,
  type Restock,
  type WrittenBatch,
} from './batch.js';
import { idempotencyKeyOf, keyReused, RecentAnswers } from './recent-answers.js';
import type { PendingPurchase } from './types.js';

/**
 * The product actor's state machine, free of nact so it can be tested alone. Every method runs inside
 * one actor message, so nothing here needs a lock: the mailbox serializes purchases of one product.
 *
 * Stock accounting: `available` = committed stock − reserved (pending + in flight) + pending restocks
 * and releases. A purchase that fits is reserved at once; one that does not is answered out-of-stock
 * without I/O. The actor is its product's only writer: reservations, restocks and the sagas' settlements
 * (confirm, or cancel and release) are written in batches (group commit). While one batch is in flight,
 * new work accumulates, and no reply is sent before its batch commits.
 */

/** What the core asks its host (the nact actor) to do. */
export interface CoreEffects {
  /** Write this batch; the result comes back through `flushed`. */
  startFlush(batch: BatchWrite): void;
  /** The actor answered everything and must be taken out of routing and stopped. */
  retire(reason: PurchaseRefusal, message: string): void;
  /** A batch committed, before any of its replies: its new (PENDING) orders, also as written (`newOrders`). */
  committed(info: CommittedOrders): void;
  now(): number;
  /** Latency of the queue stage: a purchase reserved, measured from its `arrivedAt` (metrics). */
  stage?: StageObserver;
}

/** `rolledBack`: the database refused the write and rolled it back, so nothing of it was applied. */
export type FlushResult = BatchResult | { kind: 'failed'; error: string; rolledBack?: boolean };

export class ProductCore {
  private phase: 'loading' | 'ready' | 'retired' = 'loading';
  private record: ProductRecord | undefined;
  private available = 0;
  /** Work that arrived before the row was loaded. */
  private waiting: PendingPurchase[] = [];
  private waitingRestocks: Restock[] = [];
  private waitingSettlements: PendingSettlement[] = [];
  /** Accepted work for the next batch. */
  private pending: Reservation[] = [];
  private pendingRestocks: Restock[] = [];
  private pendingSettlements: PendingSettlement[] = [];
  private inFlight: Batch | undefined;
  /** Reservations not yet answered, by idempotency key (a racing duplicate joins the first). */
  private readonly open = new Map<string, Reservation>();
  /** Settlements not yet answered, by order id (a repeated settle joins the first). */
  private readonly openSettlements = new Map<string, PendingSettlement>();
  private readonly recent = new RecentAnswers();

  constructor(
    readonly productId: ProductId,
    private readonly effects: CoreEffects,
  ) {}

  get isIdle(): boolean {
    return (
      this.inFlight === undefined &&
      this.open.size === 0 &&
      this.openSettlements.size === 0 &&
      this.waiting.length === 0
    );
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
    const { waiting, waitingRestocks, waitingSettlements } = this;
    this.waiting = [];
    this.waitingRestocks = [];
    this.waitingSettlements = [];
    // Restocks and releases first, so purchases that waited can use them; one batch carries all.
    for (const restock of waitingRestocks) this.acceptRestock(restock);
    for (const pending of waitingSettlements) this.acceptSettlement(pending);
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
    const reserving = this.pending.length;
    for (const item of items) this.purchase(item);
    const stage = this.effects.stage;
    if (stage !== undefined && this.pending.length > reserving) {
      // One clock read per message: every purchase in it was reserved now.
      const now = performance.now();
      for (let i = reserving; i < this.pending.length; i += 1) {
        const arrivedAt = this.pending[i]!.arrivedAt;
        if (arrivedAt !== undefined) stage('queue', (now - arrivedAt) / 1000);
      }
    }
    this.maybeFlush();
  }

  restock(quantity: number, reply: Restock['reply']): void {
    if (this.phase === 'loading') this.waitingRestocks.push({ quantity, reply });
    else if (this.phase === 'retired') reply(this.retiredRefusal());
    else {
      this.acceptRestock({ quantity, reply });
      this.maybeFlush();
    }
  }

  /** A saga's decision: confirm the order, or cancel it and release its stock (available at once). */
  settle(settlement: Settlement, reply: (outcome: SettleOutcome) => void): void {
    const joined = this.openSettlements.get(settlement.orderId);
    if (joined !== undefined) {
      joined.replies.push(reply);
      return;
    }
    if (this.phase === 'retired') {
      reply(this.retiredRefusal());
      return;
    }
    const pending: PendingSettlement = { settlement, replies: [reply] };
    this.openSettlements.set(settlement.orderId, pending);
    if (this.phase === 'loading') this.waitingSettlements.push(pending);
    else {
      this.acceptSettlement(pending);
      this.maybeFlush();
    }
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
      case 'settled_elsewhere':
        this.dropSettled(batch, result.sagas);
        break;
      case 'version_conflict':
        this.retire('OWNERSHIP_LOST', `product ${this.productId} was written by another owner; retry`, {
          batch,
          rolledBack: true,
        });
        return;
      case 'failed':
        this.retire('DEPENDENCY_UNAVAILABLE', `the batch write failed (${result.error})`, {
          batch,
          rolledBack: result.rolledBack === true,
        });
        return;
    }
    this.maybeFlush();
  }

  /** Answers everything still held with `reason` (used when the actor is stopped from outside). */
  stop(reason: PurchaseRefusal, message: string): void {
    if (this.phase !== 'retired')
      this.retire(reason, message, this.inFlight && { batch: this.inFlight, rolledBack: false });
  }

  private purchase(item: PendingPurchase): void {
    const { request, reply } = item;
    const key = idempotencyKeyOf(request.userId, request.idempotencyKey);
    const answered = this.recent.answerTo(key, request);
    if (answered !== undefined) {
      reply(answered);
      return;
    }
    const racing = this.open.get(key);
    if (racing !== undefined) {
      if (racing.order.quantity === request.quantity) racing.replies.push(reply);
      else reply(keyReused(request.idempotencyKey));
      return;
    }
    if (this.phase === 'retired') {
      reply(this.retiredRefusal());
      return;
    }
    if (request.deadline <= this.effects.now()) {
      reply(refused('DEADLINE_EXCEEDED', 'the request expired before it reached the product'));
      return;
    }
    if (request.quantity > this.available) {
      const outcome: PurchaseOutcome = {
        kind: 'out_of_stock',
        productId: this.productId,
        requested: request.quantity,
        available: this.available,
      };
      this.recent.remember(key, this.productId, request.quantity, outcome);
      reply(outcome);
      return;
    }
    this.available -= request.quantity;
    const reservation: Reservation = {
      key,
      arrivedAt: item.arrivedAt,
      replies: [reply],
      order: {
        id: uuidv7(),
        productId: this.productId,
        userId: request.userId,
        idempotencyKey: request.idempotencyKey,
        quantity: request.quantity,
        unitPriceCents: this.record!.priceCents,
        requestId: request.requestId,
      },
    };
    this.open.set(key, reservation);
    this.pending.push(reservation);
  }

  private acceptRestock(restock: Restock): void {
    this.available += restock.quantity;
    this.pendingRestocks.push(restock);
  }

  private acceptSettlement(pending: PendingSettlement): void {
    this.available += releasedBy(pending.settlement);
    this.pendingSettlements.push(pending);
  }

  private maybeFlush(): void {
    if (this.phase !== 'ready' || this.inFlight !== undefined) return;
    if (
      this.pending.length === 0 &&
      this.pendingRestocks.length === 0 &&
      this.pendingSettlements.length === 0
    )
      return;
    const record = this.record!;
    const batch: Omit<Batch, 'write'> = {
      reservations: this.pending,
      restocks: this.pendingRestocks,
      settlements: this.pendingSettlements,
    };
    this.pending = [];
    this.pendingRestocks = [];
    this.pendingSettlements = [];
    const write = batchWrite(this.productId, record, batch);
    this.inFlight = { ...batch, write };
    this.effects.startFlush(write);
  }

  private commit(batch: Batch, version: number, committedAt: string): void {
    const record = this.record!;
    record.stock = batch.write.newStock;
    record.version = version;
    const orders = batch.reservations.map((r) => orderView(r.order, committedAt));
    const stamp = { stock: record.stock, version };
    // Before any reply: whoever continues the purchase (its saga) must already know the new orders.
    this.effects.committed({
      productId: this.productId,
      orders,
      newOrders: batch.write.orders,
      stock: record.stock,
      version,
    });
    batch.reservations.forEach((reservation, i) => {
      const order = orders[i]!;
      const [first, ...racing] = reservation.replies;
      const created: PurchaseOutcome = { kind: 'created', order, stock: stamp };
      this.open.delete(reservation.key);
      this.recent.remember(reservation.key, this.productId, reservation.order.quantity, created);
      first?.(created);
      for (const reply of racing) reply({ kind: 'replayed', order, stock: stamp });
    });
    for (const restock of batch.restocks) {
      restock.reply({ kind: 'restocked', productId: this.productId, stock: record.stock, version });
    }
    for (const pending of batch.settlements) {
      this.openSettlements.delete(pending.settlement.orderId);
      const status = pending.settlement.outcome === 'confirm' ? 'CONFIRMED' : 'CANCELLED';
      for (const reply of pending.replies) reply({ kind: 'settled', status });
    }
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
      if (same)
        this.recent.remember(reservation.key, this.productId, order.quantity, { kind: 'created', order });
      const outcome: PurchaseOutcome = same
        ? { kind: 'replayed', order }
        : keyReused(reservation.order.idempotencyKey);
      for (const reply of reservation.replies) reply(outcome);
    }
    this.requeue({ ...batch, reservations: keep });
  }

  /** Sagas settled by an earlier attempt: answer with their state, undo their release, retry the rest. */
  private dropSettled(batch: Batch, sagas: readonly { orderId: string; status: OrderStatus }[]): void {
    const states = new Map(sagas.map((s) => [s.orderId, s.status]));
    const keep: PendingSettlement[] = [];
    for (const pending of batch.settlements) {
      const status = states.get(pending.settlement.orderId);
      if (status === undefined) {
        keep.push(pending);
        continue;
      }
      this.available -= releasedBy(pending.settlement);
      this.openSettlements.delete(pending.settlement.orderId);
      for (const reply of pending.replies) reply({ kind: 'already', status });
    }
    this.requeue({ ...batch, settlements: keep });
  }

  /** Puts an unwritten batch back in front of what accumulated meanwhile. */
  private requeue(batch: Batch): void {
    this.pending = [...batch.reservations, ...this.pending];
    this.pendingRestocks = [...batch.restocks, ...this.pendingRestocks];
    this.pendingSettlements = [...batch.settlements, ...this.pendingSettlements];
  }

  /**
   * Answers everything held with `reason` and stops. `written`: the batch whose write was sent; unless it
   * is known to be rolled back, it may have committed, and its requests are told so (`uncertain`).
   */
  private retire(reason: PurchaseRefusal, message: string, written?: WrittenBatch): void {
    this.phase = 'retired';
    const refusal = refused(reason, message);
    const sent = written?.rolledBack === false ? underWay(refusal) : refusal;
    const { pending, waiting, openSettlements } = this;
    const restocks = [...this.pendingRestocks, ...this.waitingRestocks];
    this.pending = [];
    this.pendingRestocks = [];
    this.waitingRestocks = [];
    this.waiting = [];
    this.pendingSettlements = [];
    this.waitingSettlements = [];
    this.open.clear();
    for (const reservation of written?.batch.reservations ?? [])
      for (const reply of reservation.replies) reply(sent);
    for (const restock of written?.batch.restocks ?? []) restock.reply(sent);
    for (const reservation of pending) for (const reply of reservation.replies) reply(refusal);
    for (const item of waiting) item.reply(refusal);
    for (const restock of restocks) restock.reply(refusal);
    for (const settlement of [...openSettlements.values()])
      for (const reply of settlement.replies) reply(refusal);
    openSettlements.clear();
    this.effects.retire(reason, message);
  }

  private retiredRefusal(): Refusal {
    return refused('OWNERSHIP_LOST', `product ${this.productId} actor was retired; retry`);
  }
}
