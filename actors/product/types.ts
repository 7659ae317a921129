/** The product actor's messages. Actors never import a driver: they see storage through src/domain's ports. */

import type { ProductRecord, Settlement } from '../../src/domain/orders.js';
import type {
  PurchaseOutcome,
  PurchaseRefusal,
  PurchaseRequest,
  RestockOutcome,
  SettleOutcome,
} from '../../src/domain/outcomes.js';
import type { BatchResult } from '../../src/domain/ports.js';

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
