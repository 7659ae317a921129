// In-memory implementations of the domain's ports (src/domain/ports.ts) for fast tests of the actors, the
// saga runner and recovery: the same contracts as the MySQL store and the payment client, in microseconds.
// The integration tests run the real ones against the real servers.
import type {
  BatchResult,
  BatchWrite,
  ExistingOrder,
  NewOrder,
  OrderStatus,
  PaymentPort,
  PaymentResult,
  ProductRecord,
  ProductStore,
  SettleOutcome,
  Settlement,
  StockCache,
} from '../../src/domain/index.js';

interface StoredOrder {
  order: NewOrder;
  status: OrderStatus;
  createdAt: string;
  /** The saga row's version: 0 until its settlement commits. */
  sagaVersion: number;
}

/**
 * Products, orders and sagas in memory, written under the same rules as `MysqlProductStore`: a batch
 * applies only at the row's expected version, nothing of it when an idempotency key exists already or a
 * settlement's saga moved on, and all of it otherwise (stock, orders, settlements, version + 1).
 */
export class MemoryProductStore implements ProductStore {
  readonly products = new Map<number, ProductRecord>();
  readonly orders = new Map<string, StoredOrder>();
  private readonly keys = new Map<string, string>();
  /** Every batch that committed, in order. */
  readonly committed: BatchWrite[] = [];
  /** Set to make the next commits throw (a dependency down) or answer something else. */
  intercept: ((batch: BatchWrite) => BatchResult | undefined) | undefined;

  add(record: Omit<ProductRecord, 'version'> & { version?: number }): void {
    this.products.set(record.id, { version: 1, ...record });
  }

  /** Another writer commits behind the actors' back: the row's version moves on. */
  writeElsewhere(productId: number): void {
    const row = this.products.get(productId)!;
    this.products.set(productId, { ...row, version: row.version + 1 });
  }

  async load(productId: number): Promise<ProductRecord | undefined> {
    const row = this.products.get(productId);
    return row === undefined ? undefined : { ...row };
  }

  async commitBatch(batch: BatchWrite): Promise<BatchResult> {
    const intercepted = this.intercept?.(batch);
    if (intercepted !== undefined) return intercepted;
    const row = this.products.get(batch.productId);
    if (row === undefined || row.version !== batch.expectedVersion) return { kind: 'version_conflict' };
    const existing: ExistingOrder[] = [];
    for (const order of batch.orders) {
      const id = this.keys.get(`${order.userId}\u0000${order.idempotencyKey}`);
      if (id !== undefined) existing.push({ ...this.view(id), idempotencyKey: order.idempotencyKey });
    }
    if (existing.length > 0) return { kind: 'duplicates', existing };
    const moved = batch.settlements.filter((s) => this.orders.get(s.orderId)?.sagaVersion !== s.sagaVersion);
    if (moved.length > 0)
      return {
        kind: 'settled_elsewhere',
        sagas: moved.map((s) => ({
          orderId: s.orderId,
          status: this.orders.get(s.orderId)?.status ?? 'PENDING',
        })),
      };
    if (batch.previousStock !== row.stock)
      throw new Error(`stock ${row.stock} is not the batch's previous ${batch.previousStock}`);
    const committedAt = new Date().toISOString();
    for (const order of batch.orders) {
      this.orders.set(order.id, { order, status: 'PENDING', createdAt: committedAt, sagaVersion: 0 });
      this.keys.set(`${order.userId}\u0000${order.idempotencyKey}`, order.id);
    }
    for (const s of batch.settlements) this.settle(s);
    const version = row.version + 1;
    this.products.set(batch.productId, { ...row, stock: batch.newStock, version });
    this.committed.push(batch);
    return { kind: 'committed', version, committedAt };
  }

  /** Units held by orders of `productId` in `status`. */
  held(productId: number, status: OrderStatus): number {
    let units = 0;
    for (const o of this.orders.values())
      if (o.order.productId === productId && o.status === status) units += o.order.quantity;
    return units;
  }

  private settle(s: Settlement): void {
    const stored = this.orders.get(s.orderId)!;
    stored.status = s.outcome === 'confirm' ? 'CONFIRMED' : 'CANCELLED';
    stored.sagaVersion += 1;
  }

  private view(orderId: string): Omit<ExistingOrder, 'idempotencyKey'> {
    const { order, status, createdAt } = this.orders.get(orderId)!;
    return {
      orderId,
      productId: order.productId,
      userId: order.userId,
      quantity: order.quantity,
      unitPriceCents: order.unitPriceCents,
      status,
      createdAt,
    };
  }
}

/** A stock cache that keeps the highest version written, like the Redis write-through. */
export class MemoryStockCache implements StockCache {
  readonly stock = new Map<number, { stock: number; version: number }>();
  async setStock(productId: number, stock: number, version: number): Promise<void> {
    const seen = this.stock.get(productId);
    if (seen === undefined || seen.version < version) this.stock.set(productId, { stock, version });
  }
}

/** A failure of the payment client: `retryable` as the real client's errors carry it. */
export class FakePaymentError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

/**
 * A payment provider in memory with the real one's idempotency: one result per key, whatever the number
 * of charges. `decide` chooses each new key's result (default: succeeded); `failures` makes the next calls
 * throw first.
 */
export class FakePayments implements PaymentPort {
  readonly results = new Map<string, PaymentResult>();
  readonly calls: { op: 'charge' | 'lookup' | 'void'; key: string }[] = [];
  /** Errors the next calls throw, one per call, before answering normally. */
  failures: Error[] = [];
  /** Held while set: every call waits for it (a slow provider). */
  gate: Promise<void> | undefined;

  constructor(
    private readonly decide: (key: string, amountCents: number) => PaymentResult['status'] = () =>
      'succeeded',
  ) {}

  async charge(request: { key: string; amountCents: number; orderId: string }): Promise<PaymentResult> {
    await this.call('charge', request.key);
    let result = this.results.get(request.key);
    if (result === undefined) {
      const status = this.decide(request.key, request.amountCents);
      result = {
        key: request.key,
        status,
        amountCents: request.amountCents,
        ...(status === 'declined' ? { declineReason: 'insufficient funds' } : {}),
      };
      this.results.set(request.key, result);
    }
    return result;
  }

  async lookup(key: string): Promise<PaymentResult | undefined> {
    await this.call('lookup', key);
    return this.results.get(key);
  }

  async void(key: string): Promise<PaymentResult> {
    await this.call('void', key);
    const known = this.results.get(key);
    const result: PaymentResult =
      known?.status === 'succeeded'
        ? { ...known, status: 'refunded' }
        : {
            key,
            status: 'voided',
            ...(known?.amountCents === undefined ? {} : { amountCents: known.amountCents }),
          };
    this.results.set(key, result);
    return result;
  }

  count(op: 'charge' | 'lookup' | 'void'): number {
    return this.calls.filter((c) => c.op === op).length;
  }

  private async call(op: 'charge' | 'lookup' | 'void', key: string): Promise<void> {
    this.calls.push({ op, key });
    await this.gate;
    const failure = this.failures.shift();
    if (failure !== undefined) throw failure;
  }
}

/** A settle port that records every settlement and answers from `answer` (default: settled). */
export function recordingSettle(
  answer: (s: Settlement, attempt: number) => SettleOutcome = (s) => ({
    kind: 'settled',
    status: s.outcome === 'confirm' ? 'CONFIRMED' : 'CANCELLED',
  }),
): { settle: (s: Settlement) => Promise<SettleOutcome>; settlements: Settlement[] } {
  const settlements: Settlement[] = [];
  return {
    settlements,
    settle: async (s) => {
      settlements.push(s);
      return answer(s, settlements.filter((x) => x.orderId === s.orderId).length);
    },
  };
}
