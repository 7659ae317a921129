import type {
  BatchWrite,
  ProductId,
  ProductRecord,
  Refusal,
  RestockOutcome,
  SettleOutcome,
  Settlement,
} from '../../src/domain/index.js';
import type { PendingPurchase } from './types.js';

/** A product's batch: the work its actor accepted since the last write, and the write that carries it. */

export interface Reservation {
  key: string;
  /** When the first request reached the product's actors (performance.now()), for the queue stage. */
  arrivedAt: number | undefined;
  order: BatchWrite['orders'][number];
  /** The first request's reply, then those of duplicates that raced it. */
  replies: PendingPurchase['reply'][];
}

export interface Restock {
  quantity: number;
  reply: (outcome: RestockOutcome) => void;
}

export interface PendingSettlement {
  settlement: Settlement;
  replies: ((outcome: SettleOutcome) => void)[];
}

export interface Batch {
  reservations: Reservation[];
  restocks: Restock[];
  settlements: PendingSettlement[];
  write: BatchWrite;
}

const sum = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0);

/** Stock a settlement gives back: a cancellation releases its reservation, a confirmation nothing. */
export const releasedBy = (settlement: Settlement): number =>
  settlement.outcome === 'cancel' ? settlement.quantity : 0;

/**
 * The write of a batch: the row's new stock (absolute: exact because the version guard fences the write),
 * the new orders and the settlements, applied only at the version the actor holds.
 */
export function batchWrite(
  productId: ProductId,
  record: ProductRecord,
  batch: Omit<Batch, 'write'>,
): BatchWrite {
  const sold = sum(batch.reservations.map((r) => r.order.quantity));
  const restocked = sum(batch.restocks.map((r) => r.quantity));
  const released = sum(batch.settlements.map((p) => releasedBy(p.settlement)));
  return {
    productId,
    expectedVersion: record.version,
    previousStock: record.stock,
    newStock: record.stock - sold + restocked + released,
    orders: batch.reservations.map((r) => r.order),
    settlements: batch.settlements.map((p) => p.settlement),
  };
}

/** A batch whose write was sent, and whether it is known to have been rolled back (nothing of it applied). */
export interface WrittenBatch {
  batch: Batch;
  rolledBack: boolean;
}

/** `refusal` for a request whose write was under way: it may have been applied all the same. */
export const underWay = (refusal: Refusal): Refusal => ({
  ...refusal,
  message: `${refusal.message}; its write was under way and may have been applied: retry with the same key to learn the outcome`,
  uncertain: true,
});
