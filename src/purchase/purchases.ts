import type {
  PurchaseOutcome,
  PurchaseRequest,
  Refusal,
  RestockOutcome,
} from '../../actors/product/types.js';
import type { Catalog } from '../catalog/catalog.js';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import { withTimeout } from '../timeouts.js';
import type { BaselinePurchases } from './baseline.js';

/**
 * Where a product's purchases go. Today the local actors; with several nodes, the product's owner,
 * which may be another process (the ownership issue plugs a forwarding router in here).
 */
export interface PurchaseRouter {
  purchase(request: PurchaseRequest): Promise<PurchaseOutcome>;
  restock(productId: number, quantity: number): Promise<RestockOutcome>;
}

export interface PurchasesDeps {
  catalog: Catalog;
  actors: PurchaseRouter;
  baseline: BaselinePurchases;
  config: Pick<Config['purchase'], 'deadlineMs' | 'timeoutMs'>;
  metrics?: Metrics;
}

export interface PurchaseInput {
  productId: number;
  quantity: number;
  userId: string;
  idempotencyKey: string;
}

/** Picks the product's purchase strategy and bounds every purchase by its deadline and timeout. */
export class Purchases {
  constructor(private readonly deps: PurchasesDeps) {}

  async purchase(input: PurchaseInput): Promise<PurchaseOutcome> {
    const strategy = await this.deps.catalog.strategyOf(input.productId);
    if (strategy === undefined) return notFound(input.productId);
    const request: PurchaseRequest = { ...input, deadline: Date.now() + this.deps.config.deadlineMs };
    const pending =
      strategy === 'actor' ? this.deps.actors.purchase(request) : this.deps.baseline.purchase(request);
    const outcome = await this.bounded(pending);
    this.deps.metrics?.purchases.inc({
      strategy,
      outcome: outcome.kind === 'refused' ? outcome.reason : outcome.kind,
    });
    return outcome;
  }

  async restock(productId: number, quantity: number): Promise<RestockOutcome> {
    const strategy = await this.deps.catalog.strategyOf(productId);
    if (strategy === undefined) return notFound(productId);
    const pending =
      strategy === 'actor'
        ? this.deps.actors.restock(productId, quantity)
        : this.deps.baseline.restock(productId, quantity, Date.now() + this.deps.config.deadlineMs);
    return this.bounded(pending);
  }

  private bounded<T>(pending: Promise<T>): Promise<T | Refusal> {
    const { timeoutMs } = this.deps.config;
    return withTimeout(pending, timeoutMs, 'purchase').catch((err: unknown) => {
      if ((err as { code?: string }).code !== 'DEADLINE_EXCEEDED') throw err;
      return {
        kind: 'refused',
        reason: 'DEADLINE_EXCEEDED',
        message: `no outcome within ${timeoutMs} ms; retry with the same Idempotency-Key to learn it`,
      } satisfies Refusal;
    });
  }
}

function notFound(productId: number): Refusal {
  return { kind: 'refused', reason: 'PRODUCT_NOT_FOUND', message: `product ${productId} does not exist` };
}
