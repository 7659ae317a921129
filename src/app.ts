import nact from 'nact';
import { ProductActors } from '../actors/product/registry.js';
import { Catalog } from './catalog/catalog.js';
import type { Config } from './config.js';
import { healthRoutes } from './http/health.js';
import { productRoutes } from './http/products.js';
import { purchaseRoutes } from './http/purchases.js';
import { createHttpServer, type HttpServer } from './http/server.js';
import type { Uws } from './http/uws.js';
import type { Infrastructure } from './infrastructure.js';
import type { Logger } from './logger.js';
import { createMetrics, type Metrics } from './metrics.js';
import { BaselinePurchases } from './purchase/baseline.js';
import { Purchases } from './purchase/purchases.js';
import { RedisProductCache } from './storage/product-cache.js';
import { MysqlProductStore } from './storage/product-store.js';
import { RedisLock } from './storage/redis-lock.js';

export interface AppDeps {
  config: Config;
  logger: Logger;
  uws: Uws;
  infra: Infrastructure;
}

export interface App {
  readonly server: HttpServer;
  readonly actors: ProductActors;
  readonly catalog: Catalog;
  readonly metrics: Metrics;
  /** Stop taking requests, answer the accepted ones, stop the actors. Clients are the caller's to close. */
  stop(graceMs: number): Promise<{ drained: boolean; abandoned: number }>;
}

/** Builds the service from its dependencies; listening is the caller's choice. */
export function buildApp(deps: AppDeps): App {
  const { config, logger, infra } = deps;
  const startedAt = Date.now();
  const metrics = createMetrics();
  const cache = new RedisProductCache(infra.redis, {
    prefix: config.redis.keyPrefix,
    detailsTtlSeconds: config.cache.detailsTtlSeconds,
    stockTtlMs: config.cache.stockTtlMs,
  });
  const catalog = new Catalog({ primary: infra.mysql.primary, replica: infra.mysql.replica, cache, logger });
  const system = nact.start();
  const actors = new ProductActors({
    system,
    store: new MysqlProductStore(infra.mysql.primary),
    cache,
    logger: logger.child({ component: 'product-actors' }),
    mailboxLimit: config.purchase.mailboxLimit,
    passivateAfterMs: config.purchase.passivateAfterMs,
    cacheWriteTimeoutMs: 500,
    onBatch: ({ size, seconds, outcome }) => {
      if (outcome === 'committed') metrics.batchSize.observe(size);
      metrics.batchDuration.observe({ outcome }, seconds);
    },
  });
  const baseline = new BaselinePurchases({
    primary: infra.mysql.primary,
    cache,
    lock: new RedisLock(infra.redis),
    logger,
    keyPrefix: config.redis.keyPrefix,
    lockTtlMs: config.purchase.baselineLockTtlMs,
  });
  const purchases = new Purchases({ catalog, actors, baseline, config: config.purchase, metrics });
  const server = createHttpServer({
    uws: deps.uws,
    logger,
    maxBodyBytes: config.http.maxBodyBytes,
    onResponse: ({ method, route, status, seconds }) =>
      metrics.httpDuration.observe({ method, route, status }, seconds),
    routes: [
      ...healthRoutes({
        nodeId: config.nodeId,
        checks: infra.checks,
        checkTimeoutMs: config.readyCheckTimeoutMs,
        startedAt,
      }),
      ...productRoutes({ catalog, purchases, metrics, limits: config.purchase }),
      ...purchaseRoutes({ purchases, limits: config.purchase }),
      {
        method: 'get',
        pattern: '/metrics',
        handler: async () => {
          metrics.actors.set(actors.stats().actors);
          return {
            status: 200,
            text: { body: await metrics.registry.metrics(), contentType: metrics.registry.contentType },
          };
        },
      },
    ],
  });
  return {
    server,
    actors,
    catalog,
    metrics,
    async stop(graceMs) {
      const closing = server.close(graceMs);
      const actorsDrained = await actors.drain(graceMs);
      const result = await closing;
      nact.stop(system);
      return { drained: result.drained && actorsDrained, abandoned: result.abandoned };
    },
  };
}
