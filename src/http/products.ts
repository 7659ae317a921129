import type { Catalog, Product, ReadTier } from '../catalog/catalog.js';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { Purchases } from '../purchase/purchases.js';
import { parseJsonObject } from './body.js';
import { refusalError } from './purchases.js';
import { errorReply, json, type Reply } from './reply.js';
import type { Route } from './server.js';
import { idParam, integerField, nameField, onlyFields, optionalEnumField } from './validate.js';

export interface ProductRoutesDeps {
  catalog: Catalog;
  purchases: Purchases;
  metrics?: Metrics;
  limits: Pick<Config['purchase'], 'maxQuantity'>;
}

/** Most ids one `GET /products?ids=` may ask for. */
export const MAX_IDS_PER_READ = 100;
const MAX_STOCK = 1_000_000_000;
/** Characters of a product name (the column is VARCHAR(200)). */
const MAX_NAME_LENGTH = 200;
const MAX_PRICE_CENTS = 100_000_000_00;

const view = (p: Product) => ({
  id: p.id,
  name: p.name,
  priceCents: p.priceCents,
  stock: p.stock,
  version: p.version,
  strategy: p.strategy,
  createdAt: p.createdAt,
});

const renderView = (p: Product): string => JSON.stringify(view(p));

/** Where a read was answered: `X-Cache` HIT (no database) or MISS, `X-Cache-Tier` the tier itself. */
const TIER_HEADERS: Readonly<Record<ReadTier, Readonly<Record<string, string>>>> = {
  memory: { 'X-Cache': 'HIT', 'X-Cache-Tier': 'memory' },
  redis: { 'X-Cache': 'HIT', 'X-Cache-Tier': 'redis' },
  replica: { 'X-Cache': 'MISS', 'X-Cache-Tier': 'replica' },
  primary: { 'X-Cache': 'MISS', 'X-Cache-Tier': 'primary' },
};

/**
 * `minVersion` of a read's query (read-your-purchase: a purchase answer's `stockVersion`); 0 if absent.
 * Only `minVersion` is accepted, so a typo is an error rather than a silently stale read.
 */
function minVersionOf(query: string): number {
  if (query === '') return 0;
  const params = new URLSearchParams(query);
  for (const name of params.keys()) {
    if (name !== 'minVersion')
      throw new AppError('VALIDATION_FAILED', `unknown query parameter ${JSON.stringify(name)}`, {
        field: name,
      });
  }
  const raw = params.get('minVersion')!;
  if (!/^\d{1,16}$/.test(raw) || !Number.isSafeInteger(Number(raw)))
    throw new AppError(
      'VALIDATION_FAILED',
      `minVersion must be a non-negative integer, got ${JSON.stringify(raw)}`,
      { field: 'minVersion' },
    );
  return Number(raw);
}

/**
 * Catalog API: anonymous reads from the node's memory, Redis or the replica (X-Cache and X-Cache-Tier say
 * which), admin create and restock.
 */
export function productRoutes(deps: ProductRoutesDeps): Route[] {
  // One counter child per tier, looked up once: a read from memory counts with one increment.
  const counted = (tier: ReadTier) =>
    deps.metrics?.cacheReads.labels({ result: tier === 'memory' || tier === 'redis' ? 'hit' : 'miss', tier });
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
  const memoryReply = (body: string): Reply => ({
    status: 200,
    text: { body, contentType: 'application/json' },
    headers: answered('memory'),
  });
  return [
    {
      method: 'get',
      pattern: '/products/:id',
      handler: (ctx) => {
        const id = idParam(ctx.params[0]!, 'id');
        const minVersion = minVersionOf(ctx.query);
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
      },
    },
    {
      method: 'get',
      pattern: '/products',
      handler: async (ctx) => {
        const raw = new URLSearchParams(ctx.query).get('ids');
        if (raw === null || raw === '')
          throw new AppError('VALIDATION_FAILED', 'query parameter ids=1,2,3 is required', { field: 'ids' });
        const ids = [...new Set(raw.split(',').map((part) => idParam(part.trim(), 'ids')))];
        if (ids.length > MAX_IDS_PER_READ) {
          throw new AppError('VALIDATION_FAILED', `ids may list at most ${MAX_IDS_PER_READ} products`, {
            field: 'ids',
          });
        }
        const { products, tier } = await deps.catalog.getProducts(ids);
        const found = products.filter((p): p is Product => p !== undefined).map(view);
        const missing = ids.filter((_, i) => products[i] === undefined);
        return json(200, { products: found, missing }, { ...answered(tier) });
      },
    },
    {
      method: 'post',
      pattern: '/products',
      roles: ['admin'],
      handler: async (ctx) => {
        const body = parseJsonObject(ctx.body);
        onlyFields(body, ['name', 'priceCents', 'stock', 'strategy']);
        const product = await deps.catalog.create({
          name: nameField(body, 'name', MAX_NAME_LENGTH),
          priceCents: integerField(body, 'priceCents', 0, MAX_PRICE_CENTS),
          stock: integerField(body, 'stock', 0, MAX_STOCK),
          strategy: optionalEnumField(body, 'strategy', ['actor', 'baseline'], 'actor'),
        });
        return json(201, view(product), { Location: `/products/${product.id}` });
      },
    },
    {
      method: 'post',
      pattern: '/products/:id/restock',
      roles: ['admin'],
      handler: async (ctx) => {
        const id = idParam(ctx.params[0]!, 'id');
        const body = parseJsonObject(ctx.body);
        onlyFields(body, ['quantity']);
        const quantity = integerField(body, 'quantity', 1, MAX_STOCK);
        const outcome = await deps.purchases.restock(id, quantity);
        if (outcome.kind === 'refused') return errorReply(refusalError(outcome));
        return json(200, { id, stock: outcome.stock, version: outcome.version });
      },
    },
  ];
}
