import type { OrderView, Refusal, StockStamp } from '../domain/index.js';
import type { RateLimits } from '../auth/rate-limits.js';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import type { Purchases } from '../purchase/purchases.js';
import { apiRoute } from '../api/contract.js';
import { purchaseContract } from '../api/routes.js';
import { errorReply, json, withHeaders, type Reply } from './reply.js';
import type { Route } from './server.js';

export interface PurchaseRoutesDeps {
  purchases: Purchases;
  limits: Pick<Config['purchase'], 'maxQuantity'>;
  /** The per-user purchase limit; absent: unlimited. */
  rateLimits?: Pick<RateLimits, 'admitPurchase'>;
}

const orderBody = (order: OrderView, stock?: StockStamp) => ({
  orderId: order.orderId,
  status: order.status,
  productId: order.productId,
  quantity: order.quantity,
  unitPriceCents: order.unitPriceCents,
  totalCents: order.unitPriceCents * order.quantity,
  createdAt: order.createdAt,
  // `GET /products/:id?minVersion=<stockVersion>` on any node shows this purchase's stock or newer.
  ...(stock === undefined ? {} : { stockVersion: stock.version }),
});

/** Refusals become errors with their code (its Retry-After and field come from the registry). */
export function refusalError(refusal: Refusal): AppError {
  return new AppError(refusal.reason, refusal.message);
}

/**
 * Where the order's saga stands when the answer goes out: 201 confirmed, 402 cancelled after its
 * compensation, 202 still running (the Location says where to look).
 */
function orderReply(
  order: OrderView,
  replayed: boolean,
  reason: string | undefined,
  stock: StockStamp | undefined,
): Reply {
  const headers: Record<string, string> = { Location: `/orders/${order.orderId}` };
  if (replayed) headers['Idempotent-Replayed'] = 'true';
  if (order.status === 'CONFIRMED') return json(201, orderBody(order, stock), headers);
  if (order.status === 'PENDING') return json(202, orderBody(order, stock), headers);
  const error = new AppError(
    'PAYMENT_DECLINED',
    `order ${order.orderId} was cancelled: ${reason ?? 'payment failed'}`,
  );
  return json(402, { ...error.toBody(), ...orderBody(order), reason: reason ?? null }, headers);
}

/**
 * `POST /purchases {productId, quantity}` by a customer (bearer token) with an `Idempotency-Key`
 * (unique per user). The user's purchase limit is counted before anything else happens.
 */
export function purchaseRoutes(deps: PurchaseRoutesDeps): Route[] {
  return [
    apiRoute(purchaseContract(deps.limits.maxQuantity), async (ctx, { headers, body }) => {
      const { userId } = ctx.identity!;
      const idempotencyKey = headers['Idempotency-Key'];
      const { productId, quantity } = body;
      const limitHeaders = (await deps.rateLimits?.admitPurchase(userId)) ?? {};
      const outcome = await deps.purchases.purchase({
        productId,
        quantity,
        userId,
        idempotencyKey,
        requestId: ctx.requestId,
      });
      return withHeaders(limitHeaders, purchaseReply(outcome));
    }),
  ];
}

function purchaseReply(outcome: Awaited<ReturnType<Purchases['purchase']>>): Reply {
  switch (outcome.kind) {
    case 'order':
      return orderReply(outcome.order, outcome.replayed, outcome.reason, outcome.stock);
    case 'out_of_stock': {
      const error = new AppError(
        'OUT_OF_STOCK',
        `product ${outcome.productId} has ${outcome.available} left; ${outcome.requested} requested`,
        { field: 'quantity' },
      );
      return json(409, { ...error.toBody(), available: outcome.available });
    }
    case 'refused':
      return errorReply(refusalError(outcome));
  }
}
