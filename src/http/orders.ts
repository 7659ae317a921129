import { AppError } from '../errors.js';
import type { SagaStore } from '../storage/saga-store.js';
import { errorReply, json } from './reply.js';
import type { Route } from './server.js';

const ORDER_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** `GET /orders/:id`: the order's status and its saga's steps with their times (read from the primary). */
export function orderRoutes(deps: { sagaStore: SagaStore }): Route[] {
  return [
    {
      method: 'get',
      pattern: '/orders/:id',
      handler: async (ctx) => {
        const id = ctx.params[0]!;
        if (!ORDER_ID.test(id))
          throw new AppError('VALIDATION_FAILED', `order id must be a UUID, got ${JSON.stringify(id)}`, {
            field: 'id',
          });
        const order = await deps.sagaStore.order(id);
        if (order === undefined)
          return errorReply(new AppError('ORDER_NOT_FOUND', `order ${id} does not exist`, { field: 'id' }));
        return json(200, order);
      },
    },
  ];
}
