/**
 * The ports the actors and the purchase paths see the rest of the system through: storage, the stock cache,
 * the payment provider, a product's writer and its owner. src/storage and src/cluster implement them.
 */

import type { ExistingOrder, NewOrder, OrderStatus, ProductId, ProductRecord, Settlement } from './orders.js';
import type { PurchaseOutcome, PurchaseRequest, RestockOutcome, SettleOutcome } from './outcomes.js';

export interface BatchWrite {
  productId: ProductId;
  /** The version the actor loaded or last committed; the write applies only if the row still has it. */
  expectedVersion: number;
  /** The row's stock before and after this batch (absolute: exact because the version check fences the write). */
  previousStock: number;
  newStock: number;
  /** New orders: each is inserted PENDING with its saga row, steps and events. */
  orders: NewOrder[];
  /** Sagas' decisions: confirm, or cancel and release the stock. */
  settlements: Settlement[];
}

export type BatchResult =
  | { kind: 'committed'; version: number; committedAt: string }
  /** Some (user, idempotency key) pairs already have orders: nothing was written; these are they. */
  | { kind: 'duplicates'; existing: ExistingOrder[] }
  /** The row's version moved: another writer owns this product now. Nothing was written. */
  | { kind: 'version_conflict' }
  /** These sagas were no longer at the settlement's version. Nothing was written. */
  | { kind: 'settled_elsewhere'; sagas: { orderId: string; status: OrderStatus }[] };

export interface ProductStore {
  load(productId: ProductId): Promise<ProductRecord | undefined>;
  commitBatch(batch: BatchWrite): Promise<BatchResult>;
  /**
   * Writes a saga's confirmation outside its product's chain (it changes no stock; the saga's own version
   * check fences it). Without it, confirmations go through the product's actor like cancellations.
   */
  commitConfirmation?(settlement: Settlement): Promise<BatchResult>;
}

/** A message for the other nodes, published by the write-through in the same round trip. */
export interface StockPublication {
  channel: string;
  message: string;
}

/** Write-through of committed stock, done before any purchase of the batch is acknowledged. */
export interface StockCache {
  /** With `publish`, the message goes out with the write (only when the write is not older than the cache). */
  setStock(productId: ProductId, stock: number, version: number, publish?: StockPublication): Promise<void>;
}

export interface PaymentResult {
  key: string;
  status: 'succeeded' | 'declined' | 'voided' | 'refunded';
  amountCents?: number;
  declineReason?: string;
}

/** The payment provider as the saga sees it. Failures throw an error with `retryable`. */
export interface PaymentPort {
  charge(request: { key: string; amountCents: number; orderId: string }): Promise<PaymentResult>;
  lookup(key: string): Promise<PaymentResult | undefined>;
  void(key: string): Promise<PaymentResult>;
}

/** Persists a saga's decision through the product's single writer. */
export type SettlePort = (settlement: Settlement) => Promise<SettleOutcome>;

/**
 * Where a product's work goes: the local actors on one node; with several, the product's owner, which may
 * be another process (src/cluster/router.ts).
 */
export interface PurchaseRouter {
  purchase(request: PurchaseRequest): Promise<PurchaseOutcome>;
  restock(productId: number, quantity: number): Promise<RestockOutcome>;
  settle(settlement: Settlement): Promise<SettleOutcome>;
}
