import type { PurchaseRouter, SettleOutcome, Settlement } from '../domain/index.js';
import type { Catalog } from '../catalog/catalog.js';
import type { Config } from '../config.js';
import type { BaselinePurchases } from './baseline.js';
import { bounded, productNotFound } from './purchases.js';

export interface SettlementsDeps {
  catalog: Catalog;
  /** The product actors wherever they run (the cluster router). */
  actors: PurchaseRouter;
  baseline: BaselinePurchases;
  config: { purchase: Pick<Config['purchase'], 'deadlineMs' | 'timeoutMs'> };
}

/** The sagas' settle port: their decisions go to each product's writer, as its purchases did. */
export class Settlements {
  constructor(private readonly deps: SettlementsDeps) {}

  /** Persists a saga's decision with the product's writer (its actor, or the baseline under its lock). */
  async settle(settlement: Settlement): Promise<SettleOutcome> {
    const strategy = await this.deps.catalog.strategyOf(settlement.productId);
    if (strategy === undefined) return productNotFound(settlement.productId);
    const pending =
      strategy === 'actor'
        ? this.deps.actors.settle(settlement)
        : this.deps.baseline.settle(settlement, Date.now() + this.deps.config.purchase.deadlineMs);
    return bounded(pending, this.deps.config.purchase.timeoutMs);
  }
}
