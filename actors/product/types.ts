/**
 * The product actor's messages and the ports it sees storage through. Actors never import a driver:
 * src/storage implements these interfaces.
 */

export type ProductId = number;

/** A product's row as the actor loads it from the primary. */
export interface ProductRecord {
  id: ProductId;
  name: string;
  priceCents: number;
  stock: number;
  version: number;
}

/** One order to insert in a batch. */
export interface NewOrder {
  id: string;
  productId: ProductId;
  userId: string;
  idempotencyKey: string;
  quantity: number;
  unitPriceCents: number;
}

/** An order as clients see it. */
export interface OrderView {
  orderId: string;
  productId: ProductId;
  userId: string;
  quantity: number;
  unitPriceCents: number;
  status: string;
  createdAt: string;
}

/** An order found by its (user, idempotency key), with the key it was bought under. */
export type ExistingOrder = OrderView & { idempotencyKey: string };

export interface BatchWrite {
  productId: ProductId;
  /** The version the actor loaded or last committed; the write applies only if the row still has it. */
  expectedVersion: number;
  /** The row's stock after this batch (absolute: exact because the version check fences the write). */
  newStock: number;
  orders: NewOrder[];
}

export type BatchResult =
  | { kind: 'committed'; version: number; committedAt: string }
  /** Some (user, idempotency key) pairs already have orders: nothing was written; these are they. */
  | { kind: 'duplicates'; existing: ExistingOrder[] }
  /** The row's version moved: another writer owns this product now. Nothing was written. */
  | { kind: 'version_conflict' };

export interface ProductStore {
  load(productId: ProductId): Promise<ProductRecord | undefined>;
  commitBatch(batch: BatchWrite): Promise<BatchResult>;
}

/** Write-through of committed stock, done before any purchase of the batch is acknowledged. */
export interface StockCache {
  setStock(productId: ProductId, stock: number, version: number): Promise<void>;
}

/** Why a purchase was not attempted or not completed; maps 1:1 to an error code. */
export type PurchaseRefusal =
  | 'PRODUCT_NOT_FOUND'
  | 'DEADLINE_EXCEEDED'
  | 'OVERLOADED'
  | 'OWNERSHIP_LOST'
  | 'DEPENDENCY_UNAVAILABLE'
  | 'IDEMPOTENCY_KEY_REUSED'
  | 'SHUTTING_DOWN';

/** A request not carried out; the reason maps 1:1 to an error code. */
export interface Refusal {
  kind: 'refused';
  reason: PurchaseRefusal;
  message: string;
}

export type PurchaseOutcome =
  | { kind: 'created'; order: OrderView }
  /** The same user and idempotency key bought before: the first answer again. */
  | { kind: 'replayed'; order: OrderView }
  | { kind: 'out_of_stock'; productId: ProductId; requested: number; available: number }
  | Refusal;

export interface PurchaseRequest {
  productId: ProductId;
  userId: string;
  idempotencyKey: string;
  quantity: number;
  /** Epoch ms after which the request must not touch stock. */
  deadline: number;
}

export type RestockOutcome =
  { kind: 'restocked'; productId: ProductId; stock: number; version: number } | Refusal;

/** The messages a product actor handles. Replies travel as callbacks in the message, never via nact query. */
export type ProductMessage =
  | { kind: 'loaded'; record: ProductRecord | undefined }
  | { kind: 'load_failed'; error: string }
  | { kind: 'purchases'; items: PendingPurchase[] }
  | { kind: 'restock'; quantity: number; reply: (outcome: RestockOutcome) => void }
  | { kind: 'flushed'; result: BatchResult | { kind: 'failed'; error: string } }
  | { kind: 'stop'; reason: PurchaseRefusal; message: string };

export interface PendingPurchase {
  request: PurchaseRequest;
  reply: (outcome: PurchaseOutcome) => void;
}
