import { Type } from '#typebox';
import type { RouteContract } from './contract.js';
import {
  Health,
  IdempotencyKey,
  IdParam,
  IntegerField,
  MAX_ID,
  MAX_IDS_PER_READ,
  MAX_PRICE_CENTS,
  MAX_STOCK,
  NotReady,
  OrderDetails,
  OrderIdParam,
  OutOfStock,
  PaymentDeclined,
  ProductList,
  ProductName,
  ProductSales,
  ProductView,
  PurchaseOrder,
  Ready,
  Restocked,
  Strategy,
  Text,
} from './schemas.js';

/**
 * Every route's contract (src/api/contract.ts): the handlers in src/http/ are made from these, and the
 * OpenAPI document (docs/openapi.json, `GET /openapi.json`) is written from them.
 */

const cacheHeaders = {
  'X-Cache': {
    description: '`HIT`: answered without the database; `MISS`: read from a database server',
    schema: Type.Enum(['HIT', 'MISS']),
  },
  'X-Cache-Tier': {
    description: 'Where the read was answered (the slowest tier used)',
    schema: Type.Enum(['memory', 'redis', 'replica', 'primary']),
  },
};

const location = { Location: { description: 'Where the created resource is read', schema: Type.String() } };

const replayed = {
  'Idempotent-Replayed': {
    description: '`true` when this answers a retry with the same key',
    schema: Type.Literal('true'),
  },
};

const ProductIdPath = Type.Object({ id: IdParam('The product id') }, { additionalProperties: false });

export const healthContract = {
  method: 'get',
  pattern: '/health',
  operationId: 'health',
  summary: 'Liveness: the process answers',
  tag: 'operations',
  responses: {
    200: { description: 'The node runs; its shards (`cluster.held`) and the live nodes', schema: Health },
  },
} satisfies RouteContract;

export const readyContract = {
  method: 'get',
  pattern: '/ready',
  operationId: 'ready',
  summary: 'Readiness: primary, replica, Redis and Kafka all answer',
  tag: 'operations',
  responses: {
    200: { description: 'Every dependency answers', schema: Ready },
    503: { description: '`down` names each dependency that does not answer', schema: NotReady },
  },
} satisfies RouteContract;

export const metricsContract = {
  method: 'get',
  pattern: '/metrics',
  operationId: 'metrics',
  summary: 'Prometheus metrics, for the scraper only',
  description:
    'Served only to a direct client whose socket address is in `METRICS_ALLOW_FROM` and that did not come ' +
    'through a proxy; 404 otherwise (nginx never passes it).',
  tag: 'operations',
  internal: true,
  responses: {
    200: {
      description: 'The Prometheus text format',
      contentType: 'text/plain',
      schema: Text('Prometheus exposition format'),
    },
  },
} satisfies RouteContract;

export const openApiContract = {
  method: 'get',
  pattern: '/openapi.json',
  operationId: 'openApi',
  summary: 'This document',
  tag: 'operations',
  responses: {
    200: {
      description: 'The OpenAPI 3.1 document of this API',
      schema: Type.Object({ openapi: Type.Literal('3.1.0') }, { additionalProperties: true }),
    },
  },
} satisfies RouteContract;

export const getProductContract = {
  method: 'get',
  pattern: '/products/:id',
  operationId: 'getProduct',
  summary: 'A product, from memory, Redis or the replica',
  tag: 'catalog',
  params: ProductIdPath,
  query: Type.Object(
    {
      minVersion: Type.Optional(
        Type.Integer({
          minimum: 0,
          maximum: MAX_ID,
          description:
            "Never answer a stock older than this version (a purchase answer's `stockVersion`: read-your-purchase)",
          errorMessage: '{field} must be a non-negative integer, got {value}',
        }),
      ),
    },
    { additionalProperties: false },
  ),
  responses: { 200: { description: 'The product', schema: ProductView, headers: cacheHeaders } },
  errors: ['PRODUCT_NOT_FOUND'],
} satisfies RouteContract;

export const listProductsContract = {
  method: 'get',
  pattern: '/products',
  operationId: 'listProducts',
  summary: 'Products by id',
  tag: 'catalog',
  // Other query parameters are ignored, as before the contracts.
  query: Type.Object({
    ids: Type.Array(IdParam('A product id'), {
      minItems: 1,
      maxItems: MAX_IDS_PER_READ,
      description: `Comma-separated product ids (\`ids=1,2,3\`), at most ${MAX_IDS_PER_READ} different ones`,
      errorMessage: {
        required: 'query parameter ids=1,2,3 is required',
        minItems: 'query parameter ids=1,2,3 is required',
        maxItems: `{field} may list at most ${MAX_IDS_PER_READ} products`,
        _: '{field} must be a positive integer, got {value}',
      },
    }),
  }),
  responses: {
    200: {
      description: 'The products found, and the ids of those not found',
      schema: ProductList,
      headers: cacheHeaders,
    },
  },
} satisfies RouteContract;

export const createProductContract = {
  method: 'post',
  pattern: '/products',
  operationId: 'createProduct',
  summary: 'Create a product',
  tag: 'catalog',
  roles: ['admin'],
  body: Type.Object(
    {
      name: ProductName,
      priceCents: IntegerField(0, MAX_PRICE_CENTS, 'Unit price, cents'),
      stock: IntegerField(0, MAX_STOCK, 'Units for sale'),
      strategy: Type.Optional(Strategy),
    },
    { additionalProperties: false },
  ),
  responses: { 201: { description: 'The product', schema: ProductView, headers: location } },
} satisfies RouteContract;

export const restockContract = {
  method: 'post',
  pattern: '/products/:id/restock',
  operationId: 'restock',
  summary: 'Add stock to a product',
  tag: 'catalog',
  roles: ['admin'],
  params: ProductIdPath,
  body: Type.Object(
    { quantity: IntegerField(1, MAX_STOCK, 'Units to add') },
    { additionalProperties: false },
  ),
  responses: { 200: { description: 'The stock and version after the restock', schema: Restocked } },
  errors: ['PRODUCT_NOT_FOUND', 'OVERLOADED', 'OWNERSHIP_LOST', 'DEADLINE_EXCEEDED', 'PEER_UNAVAILABLE'],
} satisfies RouteContract;

/** `POST /purchases`; the quantity's cap is a setting (`MAX_QUANTITY_PER_ORDER`). */
export const purchaseContract = (maxQuantity: number) =>
  ({
    method: 'post',
    pattern: '/purchases',
    operationId: 'purchase',
    summary: 'Buy a product',
    description:
      "The user's purchase limit is counted first. 201: the saga confirmed the order; 202: the stock is " +
      'reserved and the order created, but its saga had not ended within `PURCHASE_WAIT_BUDGET_MS` ' +
      '(`Location` says where to look); 402: the payment failed, the order was cancelled and the stock released.',
    tag: 'purchases',
    roles: ['customer'],
    headers: Type.Object({ 'Idempotency-Key': IdempotencyKey }),
    body: Type.Object(
      {
        productId: IntegerField(1, MAX_ID, 'The product to buy'),
        quantity: IntegerField(1, maxQuantity, 'Units (at most `MAX_QUANTITY_PER_ORDER`)'),
      },
      { additionalProperties: false },
    ),
    responses: {
      201: { description: 'Confirmed', schema: PurchaseOrder, headers: { ...location, ...replayed } },
      202: { description: 'Still running', schema: PurchaseOrder, headers: { ...location, ...replayed } },
      402: { description: 'Payment declined; order cancelled', schema: PaymentDeclined, headers: location },
      409: { description: 'Not enough stock; `available` says how much is left', schema: OutOfStock },
    },
    errors: [
      'PRODUCT_NOT_FOUND',
      'IDEMPOTENCY_KEY_REUSED',
      'OVERLOADED',
      'OWNERSHIP_LOST',
      'DEADLINE_EXCEEDED',
      'PEER_UNAVAILABLE',
    ],
  }) satisfies RouteContract;

export const getOrderContract = {
  method: 'get',
  pattern: '/orders/:id',
  operationId: 'getOrder',
  summary: "An order and its saga's steps",
  description: "A customer sees only her own orders: another user's is 404, as if it did not exist.",
  tag: 'purchases',
  roles: ['customer', 'admin'],
  params: Type.Object({ id: OrderIdParam }, { additionalProperties: false }),
  responses: { 200: { description: 'The order', schema: OrderDetails } },
  errors: ['ORDER_NOT_FOUND'],
} satisfies RouteContract;

export const productStatsContract = {
  method: 'get',
  pattern: '/stats/products/:id',
  operationId: 'productStats',
  summary: "The sales projection's totals for one product (zeros before any sale)",
  tag: 'catalog',
  roles: ['admin'],
  params: ProductIdPath,
  responses: { 200: { description: 'The totals', schema: ProductSales } },
} satisfies RouteContract;

/** Every route's contract, in the document's order. */
export function routeContracts(limits: { maxQuantity: number }): RouteContract[] {
  return [
    healthContract,
    readyContract,
    getProductContract,
    listProductsContract,
    createProductContract,
    restockContract,
    purchaseContract(limits.maxQuantity),
    getOrderContract,
    productStatsContract,
    metricsContract,
    openApiContract,
  ];
}
