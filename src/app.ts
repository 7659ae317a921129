import nact from 'nact';
import { addressSet, clientIp } from './auth/client-ip.js';
import { RateLimits } from './auth/rate-limits.js';
import { TokenVerifier } from './auth/tokens.js';
import { ProductActors } from '../actors/product/product-actors.js';
import { MIN_SAGA_IDLE_MS, SagaRecovery } from '../actors/saga/recovery.js';
import { SagaCoordinators } from '../actors/saga/saga-coordinators.js';
import { SagaRuns } from '../actors/saga/saga-runs.js';
import { Catalog } from './catalog/catalog.js';
import { NearCache } from './catalog/near-cache.js';
import type { Config } from './config.js';
import { healthRoutes, metricsRoute } from './http/health.js';
import { withOpenApi } from './http/openapi.js';
import { createCluster, type Cluster } from './cluster/cluster.js';
import { createRouting } from './cluster/routing.js';
import { OutboxRelay } from './events/outbox-relay.js';
import { orderRoutes } from './http/orders.js';
import { statsRoutes } from './http/stats.js';
import { productRoutes } from './http/products.js';
import { purchaseRoutes } from './http/purchases.js';
import { createHttpServer, type HttpServer } from './http/server.js';
import type { Uws } from './http/uws.js';
import type { Infrastructure } from './infrastructure.js';
import type { Logger } from './logger.js';
import { createMetrics, httpTimers, registerScrapeGauges, type Metrics } from './metrics.js';
import { ConsistencyMonitor } from './observability/consistency-monitor.js';
import { HotProducts } from './observability/hot-products.js';
import { eventFigures } from './observability/event-figures.js';
import { ReadinessChecks } from './readiness.js';
import { withTimeout } from './timeouts.js';
import { BaselinePurchases } from './purchase/baseline.js';
import { Purchases } from './purchase/purchases.js';
import { Settlements } from './purchase/settlements.js';
import { PaymentClient } from './payment/index.js';
import { SalesProjection } from './projection/sales-projection.js';
import { RedisProductCache } from './storage/product-cache.js';
import { SagaStore } from './storage/saga-store.js';
import { CommitPipeline } from './storage/commit-pipeline.js';
import { MysqlProductStore } from './storage/product-store.js';
import { RedisLock } from './storage/redis-lock.js';
import { createStockSubscriptions, type StockSubscriptions } from './ws/index.js';

export interface AppDeps {
  config: Config;
  logger: Logger;
  uws: Uws;
  infra: Infrastructure;
  /** False: no event consumers in this process. Default: the sales projection (group from config). */
  projection?: false;
}

export interface App {
  readonly server: HttpServer;
  readonly actors: ProductActors;
  readonly sagas: SagaCoordinators;
  readonly cluster: Cluster;
  /** WebSocket stock subscribers on `/ws`. */
  readonly subscriptions: StockSubscriptions;
  /**
   * Joins the cluster (`port`: the bound HTTP port), starts the outbox relay and the projection, resumes
   * unfinished sagas of its shards and starts the periodic recovery sweep (unless `recover` is false).
   */
  start(port: number, options?: { recover?: boolean }): Promise<void>;
  readonly catalog: Catalog;
  readonly metrics: Metrics;
  readonly relay: OutboxRelay;
  readonly projection: SalesProjection | undefined;
  /** Compares the stores of this node's products (README "Observability"); started by `start`. */
  readonly consistency: ConsistencyMonitor;
  /** Stop taking requests, answer the accepted ones, stop the actors. Clients are the caller's to close. */
  stop(graceMs: number): Promise<{ drained: boolean; abandoned: number }>;
}

/** At shutdown, the longest each event client (relay, projection, monitor, lag reader) may take to stop, ms. */
const CLIENT_STOP_TIMEOUT_MS = 2_000;

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
  const catalog = new Catalog({
    primary: infra.mysql.primary,
    replica: infra.mysql.replica,
    cache,
    logger,
    memory: new NearCache({
      maxProducts: config.cache.memoryProducts,
      stockTtlMs: config.cache.memoryStockTtlMs,
    }),
  });
  const system = nact.start();
  const sagaStore = new SagaStore(infra.mysql.primary);
  const payments = new PaymentClient({
    url: config.payment.url,
    timeoutMs: config.payment.timeoutMs,
    retries: config.payment.retries,
    onBreakerStateChange: (state) => {
      metrics.paymentBreaker.set(state === 'closed' ? 0 : 1);
      logger.warn({ component: 'payments', state }, 'payment circuit changed state');
    },
  });
  // Recorded by the saga coordinators, waited on through the router, which the sagas settle through.
  const sagaRuns = new SagaRuns();
  const writer = { topics: config.kafka.topics, sagaDeadlineMs: config.saga.deadlineMs };
  const relay = new OutboxRelay({
    primary: infra.mysql.primary,
    kafka: infra.kafka,
    topics: config.kafka,
    batchSize: config.outbox.batchSize,
    pollMs: config.outbox.pollMs,
    lingerMs: config.outbox.lingerMs,
    logger,
    lockName: config.outbox.relayLock,
  });
  const projection =
    deps.projection === false
      ? undefined
      : new SalesProjection({
          kafka: infra.kafka,
          primary: infra.mysql.primary,
          topics: config.kafka,
          logger,
          groupId: config.projection.groupId,
          fetchWaitMs: config.projection.fetchWaitMs,
        });
  // The actors ask it who may write; it tells them of the shards that move (onShards, below).
  const cluster = createCluster({
    config,
    logger,
    redis: infra.redis,
    onEvicted: (_node, freed) => {
      metrics.evictions.inc({ what: 'nodes' });
      metrics.evictions.inc({ what: 'leases' }, freed);
    },
    onOwnershipChanged: (change, shards) => metrics.ownershipChanges.inc({ change }, shards),
  });
  // The dashboard's hottest products (hot_product_* gauges): fed by this node's committed stock changes.
  const hotProducts = new HotProducts();
  const tokens = new TokenVerifier({
    auth: config.auth,
    onVerify: (result) => metrics.tokens.inc({ result }),
  });
  const rateLimits = new RateLimits({
    limits: config.rateLimit,
    redis: infra.redis,
    keyPrefix: config.redis.keyPrefix,
    onLimited: (limit) => metrics.rateLimited.inc({ limit }),
    onInsurance: () => metrics.rateLimitInsurance.inc(),
  });
  const trustedProxies = addressSet(config.rateLimit.trustedProxies);
  const httpApp = deps.uws.App();
  const subscriptions = createStockSubscriptions({
    app: httpApp,
    redis: infra.redis,
    keyPrefix: config.redis.keyPrefix,
    readStocks: async (ids) =>
      (await catalog.getProducts(ids)).products.map(
        (p) => p && { productId: p.id, stock: p.stock, version: p.version },
      ),
    limits: config.ws,
    logger,
    admit: (socketIp, forwardedFor) => rateLimits.admitIp(clientIp(socketIp, forwardedFor, trustedProxies)),
    onChange: (productId, stock, version) => catalog.offerStock(productId, stock, version),
    onLive: (live) => catalog.memory.setLive(live),
  });
  const consistency = new ConsistencyMonitor({
    primary: infra.mysql.primary,
    replica: infra.mysql.replica,
    cache,
    owns: (productId) => cluster.owns(productId),
    ownsAny: () => cluster.ownership.stats().held > 0,
    checkProjection: projection !== undefined,
    logger,
    intervalMs: config.consistency.intervalMs,
    productsPerRound: config.consistency.productsPerRound,
    onInconsistent: (count) => metrics.inconsistentProducts.set(count),
    onHealed: () => metrics.cacheDriftsHealed.inc(),
    onRound: (outcome, checked) => {
      metrics.consistencyRounds.inc({ outcome });
      metrics.consistencyProductsChecked.inc(checked);
    },
  });
  /** Both purchase paths report committed stock changes to reads in memory (before any reply) and subscribers. */
  const stockChanged = (productId: number, stock: number, version: number, announced = false): void => {
    catalog.offerStock(productId, stock, version);
    hotProducts.committed(productId, stock);
    consistency.committed(productId, stock, version);
    subscriptions.committed(productId, stock, version, announced);
  };
  const pipeline = new CommitPipeline({
    primary: infra.mysql.primary,
    writer,
    ownerEpoch: (productId) => cluster.epochOf(productId),
    lanes: config.commitLanes,
    confirmLingerMs: config.confirmLingerMs,
    onCycle: ({ batches, seconds, outcome, lockRetries }) => {
      metrics.commitCycleBatches.observe(batches);
      metrics.commitCycleDuration.observe({ outcome }, seconds);
      if (lockRetries > 0) metrics.commitLockRetries.inc(lockRetries);
      if (outcome !== 'failed') relay.nudge();
    },
  });
  const actors = new ProductActors({
    system,
    store: new MysqlProductStore(infra.mysql.primary, pipeline),
    mayWrite: (productId) => cluster.owns(productId),
    onWrittenElsewhere: (productId) => cluster.writtenElsewhere(productId),
    cache,
    logger: logger.child({ component: 'product-actors' }),
    mailboxLimit: config.mailboxLimit,
    passivateAfterMs: config.actor.passivateAfterMs,
    onStockChanged: stockChanged,
    // The write-through announces the change to the other nodes in its own round trip.
    stockPublication: (productId, stock, version) => subscriptions.publication(productId, stock, version),
    onStage: metrics.purchaseStage,
    onBatch: ({ size, seconds, outcome }) => {
      if (outcome === 'committed') metrics.batchSize.observe(size);
      metrics.batchDuration.observe({ outcome }, seconds);
    },
  });
  const baseline = new BaselinePurchases({
    primary: infra.mysql.primary,
    cache,
    lock: new RedisLock(infra.redis, { maxDelayMs: config.baseline.lockRetryMaxMs }),
    logger,
    keyPrefix: config.redis.keyPrefix,
    writer,
    lockTtlMs: config.baseline.lockTtlMs,
    onCommit: () => relay.nudge(),
    onStockChanged: stockChanged,
  });
  cluster.onShards({
    releasing: (which) => actors.release(which, config.shutdownGraceMs),
    lost: (which) => actors.retireWhere(which),
  });
  const routing = createRouting({
    config,
    logger,
    cluster,
    app: httpApp,
    local: actors,
    localSagaWait: (orderId, budgetMs) => sagaRuns.waitFor(orderId, budgetMs),
    onRouted: (op, where) => metrics.routed.inc({ op, where }),
    onStage: metrics.purchaseStage,
  });
  const { router } = routing;
  // Sagas settle with each product's writer, wherever it runs.
  const settlements = new Settlements({ catalog, actors: router, baseline, config });
  const sagas = new SagaCoordinators({
    system,
    payments,
    settle: (settlement) => settlements.settle(settlement),
    runs: sagaRuns,
    logger: logger.child({ component: 'sagas' }),
    onEnd: (status, seconds) => metrics.sagaDuration.observe({ status }, seconds),
    onStage: metrics.purchaseStage,
  });
  const purchases = new Purchases({
    catalog,
    actors: router,
    baseline,
    sagas,
    sagaStore,
    sagaWait: (productId, orderId, budgetMs) => router.sagaWait(productId, orderId, budgetMs),
    config: { purchase: config.purchase, saga: config.saga },
    metrics,
  });
  // New orders of the actors' batches start their sagas here.
  actors.onCommitted(({ orders, newOrders }) => {
    for (let i = 0; i < orders.length; i += 1)
      sagas.start(purchases.sagaOf(orders[i]!, newOrders[i]?.requestId));
  });
  /** When the oldest open saga seen by the last recovery sweep was created (ms), if any was open. */
  let oldestOpenSaga: number | undefined;
  const recovery = new SagaRecovery({
    sagas,
    pending: async (options) => {
      const open = await sagaStore.pending(options);
      // Oldest first; a saga's deadline is its creation + SAGA_DEADLINE_MS.
      oldestOpenSaga = open[0] === undefined ? undefined : open[0].deadline - config.saga.deadlineMs;
      return open;
    },
    logger: logger.child({ component: 'saga-recovery' }),
    // A live saga is touched by nothing until it settles: leave it this long before assuming it died.
    idleForMs: Math.max(MIN_SAGA_IDLE_MS, config.payment.timeoutMs * (config.payment.retries + 2)),
    owns: (productId) => cluster.owns(productId),
  });
  const readiness = new ReadinessChecks(infra.checks, config.readyCheckTimeoutMs);
  const figures = eventFigures({
    primary: infra.mysql.primary,
    kafka: infra.kafka,
    topics: config.kafka.topics,
    ...(projection === undefined ? {} : { projectionGroupId: config.projection.groupId }),
    logger: logger.child({ component: 'metrics' }),
  });
  registerScrapeGauges(metrics, {
    pools: { primary: infra.mysql.primary, replica: infra.mysql.replica },
    readiness: () => readiness.recent(),
    ...figures.sources,
    sagaOldestOpenAgeSeconds: () =>
      oldestOpenSaga === undefined ? 0 : Math.max(0, (Date.now() - oldestOpenSaga) / 1000),
    actorRequests: () => actors.stats().outstanding,
    hotProducts: () => hotProducts.top((productId) => cluster.owns(productId)),
  });
  const httpTimer = httpTimers(metrics);
  const server = createHttpServer({
    uws: deps.uws,
    app: httpApp,
    logger,
    maxBodyBytes: config.maxBodyBytes,
    maxHeaderBytes: config.maxHeaderBytes,
    access: {
      tokens,
      limits: rateLimits,
      trustedProxies: config.rateLimit.trustedProxies,
      internalAllowFrom: config.metricsAllowFrom,
    },
    onResponse: ({ method, route, status, seconds }) => httpTimer(method, route, status).observe(seconds),
    routes: withOpenApi([
      ...healthRoutes({
        nodeId: config.nodeId,
        readiness,
        startedAt,
        details: () => ({ cluster: cluster.ownership.stats(), ws: subscriptions.stats() }),
      }),
      ...productRoutes({ catalog, purchases, metrics, limits: config.purchase }),
      ...purchaseRoutes({ purchases, limits: config.purchase, rateLimits }),
      ...orderRoutes({ sagaStore }),
      ...statsRoutes({ pool: infra.mysql.replica }),
      metricsRoute(metrics.registry, () => metrics.actors.set(actors.stats().actors)),
    ]),
  });
  return {
    server,
    actors,
    sagas,
    catalog,
    metrics,
    relay,
    cluster,
    projection,
    subscriptions,
    consistency,
    async start(port, options = {}) {
      const recovering = options.recover !== false;
      // Shards taken over from then on have their unfinished sagas resumed here.
      if (recovering) cluster.onShards({ acquired: (which) => void recovery.resumeWhere(which) });
      await cluster.start(port);
      await subscriptions.start();
      relay.start();
      projection?.start();
      consistency.start();
      if (!recovering) return;
      await recovery.resumeAll();
      recovery.start();
    },
    async stop(graceMs) {
      recovery.stop();
      const consistencyStopped = consistency.stop();
      // At once: its stop waits for the fetch in flight (up to PROJECTION_FETCH_WAIT_MS), and the other
      // members take its partitions over (the events of the sagas still settling here are projected there).
      const projectionStopped = projection?.stop();
      // Subscribers reconnect at once (through nginx, to another node).
      subscriptions.close();
      const closing = server.close(graceMs);
      // Hand every shard off first (each drained), so the other nodes take over at once.
      await cluster.leave();
      // Sagas may still settle, forwarded to the new owners; those left off are resumed by them.
      const sagasDone = await sagas.drain(graceMs);
      if (!sagasDone)
        logger.warn({ running: sagas.stats().running }, 'sagas left off; their new owners resume them');
      const actorsDrained = await actors.drain(graceMs);
      const result = await closing;
      await routing.close();
      // Event clients get a bounded moment: offsets and outbox rows are safe to abandon (at-least-once).
      const timed = (what: string, stopping: Promise<unknown> | undefined, ms = CLIENT_STOP_TIMEOUT_MS) =>
        withTimeout(Promise.resolve(stopping), ms, what).catch((err: unknown) =>
          logger.warn({ err: (err as Error).message }, 'left unfinished at shutdown'),
        );
      await Promise.all([
        timed('outbox relay stop', relay.stop()),
        timed('projection stop', projectionStopped, config.projection.fetchWaitMs + CLIENT_STOP_TIMEOUT_MS),
        timed('consistency monitor stop', consistencyStopped),
        timed('projection lag reader close', figures.close()),
        payments.close(),
      ]);
      nact.stop(system);
      return { drained: result.drained && actorsDrained, abandoned: result.abandoned };
    },
  };
}
