import { isConnectionError } from '../errors.js';
import type {
  OrderStatus,
  OrderView,
  PurchaseOutcome,
  PurchaseRequest,
  PurchaseRouter,
  Refusal,
  RestockOutcome,
  SagaOrder,
  SagaWait,
  StockStamp,
} from '../domain/index.js';
import type { SagaCoordinators } from '../../actors/saga/saga-coordinators.js';
import type { Catalog } from '../catalog/catalog.js';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import type { SagaStore } from '../storage/saga-store.js';
import { withTimeout } from '../timeouts.js';
import type { BaselinePurchases } from './baseline.js';

export interface PurchasesDeps {
  catalog: Catalog;
  actors: PurchaseRouter;
  baseline: BaselinePurchases;
  sagas: SagaCoordinators;
  sagaStore: SagaStore;
  /** Waits for an actor product's saga wherever it runs (its product's owner). Default: this node only. */
  sagaWait?: (productId: number, orderId: string, budgetMs: number) => Promise<SagaWait>;
  config: {
    purchase: Pick<Config['purchase'], 'deadlineMs' | 'timeoutMs' | 'waitBudgetMs'>;
    saga: Pick<Config['saga'], 'deadlineMs'>;
  };
  metrics?: Metrics;
}

export interface PurchaseInput {
  productId: number;
  quantity: number;
  userId: string;
  idempotencyKey: string;
  /** The HTTP request's id (README "Logs"): carried to the owner node, the order's saga and its events. */
  requestId?: string;
}

/** A purchase's answer: the order where its saga stands (confirmed, cancelled or pending), or no order. */
export type PurchaseAnswer =
  | {
      kind: 'order';
      order: OrderView;
      replayed: boolean;
      reason?: string;
      /** The stock right after the write that holds the order (a read may ask for at least its version). */
      stock?: StockStamp;
    }
  | Extract<PurchaseOutcome, { kind: 'out_of_stock' }>
  | Refusal;

/** Picks the product's purchase strategy, bounds every purchase by its deadline, and waits for the saga. */
export class Purchases {
  constructor(private readonly deps: PurchasesDeps) {}

  async purchase(input: PurchaseInput): Promise<PurchaseAnswer> {
    const started = Date.now();
    const strategy = await this.deps.catalog.strategyOf(input.productId);
    if (strategy === undefined) return productNotFound(input.productId);
    const request: PurchaseRequest = { ...input, deadline: started + this.deps.config.purchase.deadlineMs };
    const pending =
      strategy === 'actor'
        ? this.deps.actors.purchase(request) // its sagas start when the batch commits
        : this.deps.baseline.purchase(request).then((outcome) => {
            if (outcome.kind === 'created')
              this.deps.sagas.start(this.sagaOf(outcome.order, input.requestId));
            return outcome;
          });
    const outcome = await this.bounded(pending);
    this.deps.metrics?.purchases.inc({
      strategy,
      outcome: outcome.kind === 'refused' ? outcome.reason : outcome.kind,
    });
    if (outcome.kind !== 'created' && outcome.kind !== 'replayed') return outcome;
    // Forwarded to the owner: this node learns the stock from the answer, before its client can read.
    if (outcome.stock !== undefined)
      this.deps.catalog.offerStock(input.productId, outcome.stock.stock, outcome.stock.version);
    const budget = this.deps.config.purchase.waitBudgetMs - (Date.now() - started);
    const settled = await this.settledStatus(strategy, outcome.order, budget);
    return {
      kind: 'order',
      order: { ...outcome.order, status: settled.status },
      replayed: outcome.kind === 'replayed',
      ...(settled.reason === undefined ? {} : { reason: settled.reason }),
      ...(outcome.stock === undefined ? {} : { stock: outcome.stock }),
    };
  }

  async restock(productId: number, quantity: number): Promise<RestockOutcome> {
    const strategy = await this.deps.catalog.strategyOf(productId);
    if (strategy === undefined) return productNotFound(productId);
    const pending =
      strategy === 'actor'
        ? this.deps.actors.restock(productId, quantity)
        : this.deps.baseline.restock(productId, quantity, Date.now() + this.deps.config.purchase.deadlineMs);
    return this.bounded(pending);
  }

  /** The saga of a new order, as the order's reservation committed it, with its purchase's request id. */
  sagaOf(order: OrderView, requestId: string | undefined): SagaOrder {
    return {
      orderId: order.orderId,
      productId: order.productId,
      userId: order.userId,
      quantity: order.quantity,
      unitPriceCents: order.unitPriceCents,
      version: 0,
      paymentKey: order.orderId,
      deadline: Date.parse(order.createdAt) + this.deps.config.saga.deadlineMs,
      requestId,
    };
  }

  /** Waits for a live saga within the budget; otherwise the database says where the order stands. */
  private async settledStatus(
    strategy: 'actor' | 'baseline',
    order: OrderView,
    budgetMs: number,
  ): Promise<{ status: OrderStatus; reason?: string }> {
    const { orderId, productId } = order;
    // An actor product's saga runs on its owner (maybe another node); a baseline saga where it started.
    const live =
      strategy === 'actor' && this.deps.sagaWait !== undefined
        ? await this.deps.sagaWait(productId, orderId, budgetMs)
        : await this.deps.sagas.waitFor(orderId, budgetMs);
    if (live !== undefined) return live;
    // The order exists; if the database cannot say how it stands now (a failover), it is still running
    // as far as this answer knows: 202, and its Location tells the rest.
    const stored = await this.deps.sagaStore.order(orderId).catch((err: unknown) => {
      if (isConnectionError(err)) return undefined;
      throw err;
    });
    if (stored === undefined) return { status: 'PENDING' };
    return { status: stored.status, ...(stored.saga?.reason ? { reason: stored.saga.reason } : {}) };
  }

  private bounded<T>(pending: Promise<T>): Promise<T | Refusal> {
    return bounded(pending, this.deps.config.purchase.timeoutMs);
  }
}

/** `pending`, or DEADLINE_EXCEEDED once `timeoutMs` has passed without its outcome. */
export function bounded<T>(pending: Promise<T>, timeoutMs: number): Promise<T | Refusal> {
  return withTimeout(pending, timeoutMs, 'purchase').catch((err: unknown) => {
    if ((err as { code?: string }).code !== 'DEADLINE_EXCEEDED') throw err;
    return {
      kind: 'refused',
      reason: 'DEADLINE_EXCEEDED',
      message: `no outcome within ${timeoutMs} ms; retry with the same Idempotency-Key to learn it`,
    } satisfies Refusal;
  });
}

export function productNotFound(productId: number): Refusal {
  return { kind: 'refused', reason: 'PRODUCT_NOT_FOUND', message: `product ${productId} does not exist` };
}
