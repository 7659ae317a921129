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
  /** The request id of the purchase that made it (its events' `x-request-id`, its saga's log lines). */
  requestId?: string;
}

/** A committed batch's new orders: as clients see them, and as written (same order, with request ids). */
export interface CommittedOrders {
  productId: ProductId;
  orders: OrderView[];
  newOrders: readonly NewOrder[];
  stock: number;
  version: number;
}

/** An order as clients see it. */
export interface OrderView {
  orderId: string;
  productId: ProductId;
  userId: string;
  quantity: number;
  unitPriceCents: number;
  status: OrderStatus;
  createdAt: string;
}

/** An order found by its (user, idempotency key), with the key it was bought under. */
export type ExistingOrder = OrderView & { idempotencyKey: string };

/** How a saga's payment step ended. */
export interface PaymentOutcome {
  key: string;
  status: 'succeeded' | 'declined' | 'voided' | 'refunded';
  amountCents: number;
  reason?: string;
  /** When the payment step ended (ISO-8601); recorded as the step's time. */
  at: string;
}

/** A saga's final decision for one order, persisted by the product's single writer. */
export interface Settlement {
  orderId: string;
  productId: ProductId;
  outcome: 'confirm' | 'cancel';
  quantity: number;
  unitPriceCents: number;
  /** The saga row's version the decision was made from; the write checks it. */
  sagaVersion: number;
  payment: PaymentOutcome;
  /** Why the order is cancelled (declined, timed out, deadline). */
  reason?: string;
  /** The request id of the purchase whose saga decided this (its events' `x-request-id`). */
  requestId?: string;
}

export type OrderStatus = 'PENDING' | 'CONFIRMED' | 'CANCELLED';

export type SettleOutcome =
  | { kind: 'settled'; status: Exclude<OrderStatus, 'PENDING'> }
  /** The saga row had moved on already (a retried settlement whose first attempt committed). */
  | { kind: 'already'; status: OrderStatus }
  | Refusal;

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

/**
 * The product's committed stock right after the write that holds an order: a read that asks for at least
 * this version never shows a stock older than the purchase (read-your-purchase, on any node).
 */
export interface StockStamp {
  stock: number;
  version: number;
}

export type PurchaseOutcome =
  | { kind: 'created'; order: OrderView; stock?: StockStamp }
  /** The same user and idempotency key bought before: the first answer again. */
  | { kind: 'replayed'; order: OrderView; stock?: StockStamp }
  | { kind: 'out_of_stock'; productId: ProductId; requested: number; available: number }
  | Refusal;

export interface PurchaseRequest {
  productId: ProductId;
  userId: string;
  idempotencyKey: string;
  quantity: number;
  /** Epoch ms after which the request must not touch stock. */
  deadline: number;
  /** The HTTP request's id: it travels with the purchase to its owner node, its order, saga and events. */
  requestId?: string;
}

export type RestockOutcome =
  { kind: 'restocked'; productId: ProductId; stock: number; version: number } | Refusal;

/** The messages a product actor handles. Replies travel as callbacks in the message, never via nact query. */
export type ProductMessage =
  | { kind: 'loaded'; record: ProductRecord | undefined }
  | { kind: 'load_failed'; error: string }
  | { kind: 'purchases'; items: PendingPurchase[] }
  | { kind: 'restock'; quantity: number; reply: (outcome: RestockOutcome) => void }
  | { kind: 'settle'; settlement: Settlement; reply: (outcome: SettleOutcome) => void }
  | { kind: 'flushed'; result: BatchResult | { kind: 'failed'; error: string } }
  | { kind: 'stop'; reason: PurchaseRefusal; message: string };

export interface PendingPurchase {
  request: PurchaseRequest;
  reply: (outcome: PurchaseOutcome) => void;
  /** performance.now() when the purchase reached the product's actors (its queue stage starts). */
  arrivedAt?: number;
}

/**
 * The stages of a purchase whose latency is measured: queue (arrival at the product's actors → reserved),
 * reserve_commit (its batch handed to the commit pipeline → committed), payment (the saga's payment step),
 * confirm_commit (the confirm settlement sent to the product's writer → committed), reply (the whole
 * purchase as its node routes it: routed to the product → the saga's end handed back for the answer).
 */
export const PURCHASE_STAGES = ['queue', 'reserve_commit', 'payment', 'confirm_commit', 'reply'] as const;
export type PurchaseStage = (typeof PURCHASE_STAGES)[number];

/** Where the purchase path reports a stage's duration (seconds), `count` purchases at once (default 1). */
export type StageObserver = (stage: PurchaseStage, seconds: number, count?: number) => void;
