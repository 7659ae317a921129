import { AppError } from '../errors.js';
import type { SagaStore } from '../storage/saga-store.js';
import { errorReply, json } from './reply.js';
import type { Route } from './server.js';

const ORDER_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * `GET /orders/:id`: the order's status and its saga's steps with their times (read from the primary).
 * A customer sees only her own orders: another user's is 404, as if it did not exist. Admins see all.
 */
export function orderRoutes(deps: { sagaStore: SagaStore }): Route[] {
  return [
    {
      method: 'get',
      pattern: '/orders/:id',
      roles: ['customer', 'admin'],
      handler: async (ctx) => {
        const id = ctx.params[0]!;
        if (!ORDER_ID.test(id))
          throw new AppError('VALIDATION_FAILED', `order id must be a UUID, got ${JSON.stringify(id)}`, {
            field: 'id',
          });
        const order = await deps.sagaStore.order(id);
        const caller = ctx.identity!;
        if (order === undefined || (caller.role !== 'admin' && order.userId !== caller.userId))
          return errorReply(new AppError('ORDER_NOT_FOUND', `order ${id} does not exist`, { field: 'id' }));
        return json(200, order);
      },
    },
  ];
}
