import { AppError } from '../errors.js';
import { readProductSales } from '../projection/sales-store.js';
import type { Pool } from '../storage/mysql.js';
import { apiRoute } from '../api/contract.js';
import { productStatsContract } from '../api/routes.js';
import { json } from './reply.js';
import type { Route } from './server.js';

export interface StatsRoutesDeps {
  /** Where product_sales is read; the replica is fine (the projection trails the events anyway). */
  pool: Pool;
}

/** `GET /stats/products/:id` (admin): the sales projection's totals for one product (zeros before any sale). */
export function statsRoutes(deps: StatsRoutesDeps): Route[] {
  return [
    apiRoute(productStatsContract, async (_ctx, { params: { id } }) => {
      const sales = await readProductSales(deps.pool, id).catch((err: unknown) => {
        throw new AppError('DEPENDENCY_UNAVAILABLE', 'sales statistics are unavailable; retry', {
          retryAfterSeconds: 1,
          cause: err,
        });
      });
      return json(200, sales);
    }),
  ];
}
