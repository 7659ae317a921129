import type { OrderStatus, SettleOutcome, Settlement } from '../product/types.js';

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

export type SagaEnd = Exclude<OrderStatus, 'PENDING'>;

/** How a saga ended, with the reason of a cancellation. */
export interface SagaResult {
  status: SagaEnd;
  reason?: string;
}
