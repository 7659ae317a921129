/**
 * Orders as the service knows them: products, new orders, their views, payments and sagas' decisions.
 * Pure types and functions shared by the actors, the purchase paths and storage; this module imports nothing.
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

export type OrderStatus = 'PENDING' | 'CONFIRMED' | 'CANCELLED';

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

/** What a saga knows of its order. */
export interface SagaOrder {
  orderId: string;
  productId: number;
  userId: string;
  quantity: number;
  unitPriceCents: number;
  /** The saga row's version (0 until it settles). */
  version: number;
  paymentKey: string;
  /** Epoch ms by which the payment must be decided; past it the saga voids and compensates. */
  deadline: number;
  /** The request id of the purchase that made the order: on the saga's log lines and its settlement. */
  requestId?: string;
}

/** A new order as its buyer sees it, PENDING from `createdAt` (its batch's commit time). */
export function orderView(order: NewOrder, createdAt: string): OrderView {
  return {
    orderId: order.id,
    productId: order.productId,
    userId: order.userId,
    quantity: order.quantity,
    unitPriceCents: order.unitPriceCents,
    status: 'PENDING',
    createdAt,
  };
}
