import type { Catalog, Product, ReadTier } from '../catalog/catalog.js';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import { hotCounter } from '../hot-metrics.js';
import type { Metrics } from '../metrics.js';
import type { Purchases } from '../purchase/purchases.js';
import { apiRoute } from '../api/contract.js';
import {
  createProductContract,
  getProductContract,
  listProductsContract,
  restockContract,
} from '../api/routes.js';
import { refusalError } from './purchases.js';
import { errorReply, json, type Reply } from './reply.js';
import type { Route } from './server.js';

export interface ProductRoutesDeps {
  catalog: Catalog;
  purchases: Purchases;
  metrics?: Metrics;
  limits: Pick<Config['purchase'], 'maxQuantity'>;
}

const view = (p: Product) => ({
  id: p.id,
  name: p.name,
  priceCents: p.priceCents,
  stock: p.stock,
  version: p.version,
  strategy: p.strategy,
  createdAt: p.createdAt,
});

const renderView = (p: Product): Buffer => Buffer.from(JSON.stringify(view(p)));

/** Where a read was answered: `X-Cache` HIT (no database) or MISS, `X-Cache-Tier` the tier itself. */
const TIER_HEADERS: Readonly<Record<ReadTier, Readonly<Record<string, string>>>> = {
  memory: { 'X-Cache': 'HIT', 'X-Cache-Tier': 'memory' },
  redis: { 'X-Cache': 'HIT', 'X-Cache-Tier': 'redis' },
  replica: { 'X-Cache': 'MISS', 'X-Cache-Tier': 'replica' },
  primary: { 'X-Cache': 'MISS', 'X-Cache-Tier': 'primary' },
};

/**
 * Catalog API: anonymous reads from the node's memory, Redis or the replica (X-Cache and X-Cache-Tier say
 * which), admin create and restock.
 */
export function productRoutes(deps: ProductRoutesDeps): Route[] {
  // One hot counter child per tier, made once: a read from memory counts with one addition.
  const child = deps.metrics && hotCounter(deps.metrics.cacheReads);
  const counted = (tier: ReadTier) =>
    child?.({ result: tier === 'memory' || tier === 'redis' ? 'hit' : 'miss', tier });
  const reads = {
    memory: counted('memory'),
    redis: counted('redis'),
    replica: counted('replica'),
    primary: counted('primary'),
  };
  const answered = (tier: ReadTier) => {
    reads[tier]?.inc();
    return TIER_HEADERS[tier];
  };
  const memoryReply = (body: Uint8Array): Reply => ({
    status: 200,
    text: { body, contentType: 'application/json' },
    headers: answered('memory'),
  });
  return [
    apiRoute(getProductContract, (_ctx, { params: { id }, query }) => {
      const minVersion = query.minVersion ?? 0;
      // The hot path: answered from memory, synchronously, with the body made once per version.
      const held = deps.catalog.memory.body(id, minVersion, renderView);
      if (held !== undefined) return memoryReply(held);
      return deps.catalog.getProducts([id], minVersion).then(({ products, tier }) => {
        const product = products[0];
        if (product === undefined)
          return errorReply(
            new AppError('PRODUCT_NOT_FOUND', `product ${id} does not exist`, { field: 'id' }),
          );
        return json(200, view(product), { ...answered(tier) });
      });
    }),
    // The ids arrive without duplicates (the contract reads them as a set).
    apiRoute(listProductsContract, async (_ctx, { query: { ids } }) => {
      const { products, tier } = await deps.catalog.getProducts(ids);
      const found = products.filter((p): p is Product => p !== undefined).map(view);
      const missing = ids.filter((_, i) => products[i] === undefined);
      return json(200, { products: found, missing }, { ...answered(tier) });
    }),
    apiRoute(createProductContract, async (_ctx, { body }) => {
      const product = await deps.catalog.create({ ...body, strategy: body.strategy ?? 'actor' });
      return json(201, view(product), { Location: `/products/${product.id}` });
    }),
    apiRoute(restockContract, async (_ctx, { params: { id }, body: { quantity } }) => {
      const outcome = await deps.purchases.restock(id, quantity);
      if (outcome.kind === 'refused') return errorReply(refusalError(outcome));
      return json(200, { id, stock: outcome.stock, version: outcome.version });
    }),
  ];
}
