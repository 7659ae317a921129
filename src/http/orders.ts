import { AppError } from '../errors.js';
import type { SagaStore } from '../storage/saga-store.js';
import { apiRoute } from '../api/contract.js';
import { getOrderContract } from '../api/routes.js';
import { errorReply, json } from './reply.js';
import type { Route } from './server.js';

/**
 * `GET /orders/:id`: the order's status and its saga's steps with their times (read from the primary).
 * A customer sees only her own orders: another user's is 404, as if it did not exist. Admins see all.
 */
export function orderRoutes(deps: { sagaStore: SagaStore }): Route[] {
  return [
    apiRoute(getOrderContract, async (ctx, { params: { id } }) => {
      const order = await deps.sagaStore.order(id);
      const caller = ctx.identity!;
      if (order === undefined || (caller.role !== 'admin' && order.userId !== caller.userId))
        return errorReply(new AppError('ORDER_NOT_FOUND', `order ${id} does not exist`, { field: 'id' }));
      return json(200, order);
    }),
  ];
}
