/**
 * How a request to a product ends: purchases, restocks, settlements and sagas. Every refusal reason maps 1:1
 * to an error code (src/errors.ts).
 */

import type { ErrorCode } from './errors.js';
import type { OrderStatus, OrderView, ProductId } from './orders.js';

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

/** Why a purchase was not attempted or not completed: codes of the error registry. */
export type PurchaseRefusal = Extract<
  ErrorCode,
  | 'PRODUCT_NOT_FOUND'
  | 'DEADLINE_EXCEEDED'
  | 'OVERLOADED'
  | 'OWNERSHIP_LOST'
  | 'DEPENDENCY_UNAVAILABLE'
  | 'IDEMPOTENCY_KEY_REUSED'
  | 'SHUTTING_DOWN'
>;

/** A request not carried out, and the error code it is answered with. */
export interface Refusal {
  kind: 'refused';
  reason: PurchaseRefusal;
  message: string;
  /**
   * The request may have been applied all the same: its write was under way when the refusal was decided
   * (a lease lost or a connection dropped mid-write). A retry with the same idempotency key tells.
   */
  uncertain?: true;
}

export const refused = (reason: PurchaseRefusal, message: string): Refusal => ({
  kind: 'refused',
  reason,
  message,
});

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

export type RestockOutcome =
  { kind: 'restocked'; productId: ProductId; stock: number; version: number } | Refusal;

export type SettleOutcome =
  | { kind: 'settled'; status: Exclude<OrderStatus, 'PENDING'> }
  /** The saga row had moved on already (a retried settlement whose first attempt committed). */
  | { kind: 'already'; status: OrderStatus }
  | Refusal;

export type SagaEnd = Exclude<OrderStatus, 'PENDING'>;

/** How a saga ended, with the reason of a cancellation. */
export interface SagaResult {
  status: SagaEnd;
  reason?: string;
}

/** Where a saga stands after waiting for it: its end, still pending, or not running on that node. */
export type SagaWait = SagaResult | { status: 'PENDING' } | undefined;
