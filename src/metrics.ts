import {
  Counter,
  Gauge,
  Histogram,
  Registry,
  collectDefaultMetrics,
  type CounterConfiguration,
} from 'prom-client';
import { PURCHASE_STAGES } from './domain/index.js';
import type { PurchaseStage, StageObserver } from './domain/index.js';
import { hotHistogram, type HotHistogram } from './hot-metrics.js';
import { LoopDelayMonitor } from './loop-delay.js';
import type { HotProduct } from './observability/hot-products.js';
import type { Dependency, Readiness } from './readiness.js';
import { poolUsage, type Pool, type PoolUsage } from './storage/mysql.js';

/** A counter of `change`s whose every child exists from the start at 0 (so one minus another always has a value). */
function zeroed<T extends string>(
  changes: readonly T[],
  config: CounterConfiguration<'change'>,
): Counter<'change'> {
  const counter = new Counter(config);
  for (const change of changes) counter.inc({ change }, 0);
  return counter;
}

/** The service's Prometheus metrics, on a registry of its own (tests build several apps in one process). */
export function createMetrics() {
  const registry = new Registry();
  // prom-client's event-loop delay sampler (every 10 ms, forever) is replaced by one that samples only
  // while the loop is busy (LoopDelayMonitor, same metric names); its own timer is left at the longest
  // period a timer has (24.8 days), so it never wakes the process.
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 2 ** 31 - 1 });
  const loopDelay = new LoopDelayMonitor(registry);
  const purchaseStageDuration = new Histogram({
    name: 'purchase_stage_duration_seconds',
    help:
      'Time a purchase spends in each stage: queue (arrival at the product actors → reserved), ' +
      'reserve_commit (its batch handed to the commit pipeline → committed), payment (the saga payment step), ' +
      'confirm_commit (confirm settlement sent → committed), reply (the whole purchase on the node that ' +
      'routes it: routed → saga outcome handed to the HTTP answer)',
    labelNames: ['stage'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  // Every stage is listed from the start (at 0), and its hot child made once: an observation of a batch's
  // purchases is a map lookup and one bucket search.
  const stageChild = hotHistogram(purchaseStageDuration);
  const stageChildren = new Map(PURCHASE_STAGES.map((stage) => [stage, stageChild({ stage })] as const));
  const purchaseStage: StageObserver = (stage: PurchaseStage, seconds: number, count = 1) =>
    stageChildren.get(stage)!.observe(seconds, count);
  return {
    registry,
    loopDelay,
    purchaseStageDuration,
    /** Reports a purchase stage's latency (the port actors and the router are given). */
    purchaseStage,
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request duration by route and status',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    purchases: new Counter({
      name: 'purchase_outcomes_total',
      help: 'Purchase outcomes by strategy',
      labelNames: ['strategy', 'outcome'] as const,
      registers: [registry],
    }),
    batchSize: new Histogram({
      name: 'product_batch_size',
      help: 'Purchases per group-committed batch',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
      registers: [registry],
    }),
    commitCycleBatches: new Histogram({
      name: 'commit_cycle_batches',
      help: "Products' batches written per commit cycle of the node's pipeline (one transaction)",
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000],
      registers: [registry],
    }),
    commitCycleDuration: new Histogram({
      name: 'commit_cycle_duration_seconds',
      help: 'Time to write one commit cycle (its round trips, splits included)',
      labelNames: ['outcome'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    }),
    commitLockRetries: new Counter({
      name: 'commit_cycle_lock_retries_total',
      help: 'Commit cycles sent again because InnoDB refused them a lock (deadlock victim or lock-wait timeout)',
      registers: [registry],
    }),
    batchDuration: new Histogram({
      name: 'product_batch_duration_seconds',
      help: "Time to commit one product's batch (its stock write-through then runs beside the product's next batch)",
      labelNames: ['outcome'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    }),
    cacheReads: new Counter({
      name: 'product_cache_reads_total',
      help: "Product reads by the tier that answered: the node's memory or Redis (result hit), the replica or the primary (result miss)",
      labelNames: ['result', 'tier'] as const,
      registers: [registry],
    }),
    sagaDuration: new Histogram({
      name: 'saga_duration_seconds',
      help: 'Time from a saga start to its end, by how it ended',
      labelNames: ['status'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    paymentBreaker: new Gauge({
      name: 'payment_circuit_open',
      help: '1 while the payment provider circuit is open or half-open',
      registers: [registry],
    }),
    tokens: new Counter({
      name: 'auth_tokens_total',
      help: 'Bearer tokens checked: answered from the per-node cache, signature verified, or refused',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    rateLimited: new Counter({
      name: 'rate_limited_requests_total',
      help: 'Requests refused with 429 by limit (ip: per node; user: purchases, shared through Redis)',
      labelNames: ['limit'] as const,
      registers: [registry],
    }),
    rateLimitInsurance: new Counter({
      name: 'rate_limit_insurance_total',
      help: "User-limit checks answered by the node's in-memory insurance limiter because Redis failed",
      registers: [registry],
    }),
    routed: new Counter({
      name: 'cluster_routed_total',
      help: "Routing attempts of product work (purchase, restock, settle): served by this node's actors or forwarded to the owner",
      labelNames: ['op', 'where'] as const,
      registers: [registry],
    }),
    evictions: new Counter({
      name: 'cluster_node_evictions_total',
      help: 'Dead peers this node evicted (silent, port refusing connections) and the shard leases it freed',
      labelNames: ['what'] as const,
      registers: [registry],
    }),
    actors: new Gauge({ name: 'product_actors', help: 'Active product actors', registers: [registry] }),
    ownershipChanges: zeroed(['acquired', 'released', 'lost'], {
      name: 'shard_ownership_changes_total',
      help: 'Shard leases this node acquired, handed off (released) or lost without a handoff',
      labelNames: ['change'] as const,
      registers: [registry],
    }),
    inconsistentProducts: new Gauge({
      name: 'inventory_inconsistent_products',
      help:
        'Products this node owns whose stores disagree beyond what the consistency monitor heals (actor, ' +
        'primary, replica, Redis cache, sales projection, ledger); their ids are in the log',
      registers: [registry],
    }),
    cacheDriftsHealed: new Counter({
      name: 'inventory_cache_drifts_healed_total',
      help: 'Cached stocks the consistency monitor found stale or wrong in Redis and rewrote from the primary',
      registers: [registry],
    }),
    consistencyRounds: new Counter({
      name: 'inventory_consistency_rounds_total',
      help: 'Rounds of the consistency monitor: completed, or failed (a store could not be read; retried next round)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    consistencyProductsChecked: new Counter({
      name: 'inventory_consistency_products_checked_total',
      help: 'Products the consistency monitor compared across stores',
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** Dependency names of `dependency_up`, by the readiness check that answers for them. */
export const DEPENDENCY_LABELS: Readonly<Record<Dependency, string>> = {
  primary: 'mysql_primary',
  replica: 'mysql_replica',
  redis: 'redis',
  kafka: 'kafka',
};

/** What the scrape-time gauges read; each is read only when /metrics is scraped. */
export interface ScrapeSources {
  /** The node's MySQL pools by name (`primary`, `replica`). */
  pools: Readonly<Record<string, Pool>>;
  /** The dependency checks of /ready (a result a second old is reused). */
  readiness: () => Promise<Readiness>;
  /** Age of the oldest outbox row not yet sent to Kafka, s (0 when none); NaN when unknown. */
  outboxOldestAgeSeconds: () => Promise<number>;
  /** Age of the oldest saga still open, s (0 when none). */
  sagaOldestOpenAgeSeconds: () => number;
  /** Events the sales projection has not consumed yet; absent when this node runs no projection. */
  projectionLagEvents?: () => Promise<number>;
  /** Requests the product actors hold (queued, reserved, being written). */
  actorRequests: () => number;
  /** This node's fastest-selling products, fastest first (a few ranks). */
  hotProducts?: () => readonly HotProduct[];
}

/** Gauges computed when Prometheus scrapes, never between scrapes: an idle node stays idle. */
export function registerScrapeGauges(metrics: Metrics, sources: ScrapeSources): void {
  const registers = [metrics.registry];
  const pools = Object.entries(sources.pools);
  const poolGauge = (name: string, help: string, figure: (usage: PoolUsage) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['pool'] as const,
      registers,
      collect() {
        for (const [pool, p] of pools) this.set({ pool }, figure(poolUsage(p)));
      },
    });
  poolGauge(
    'mysql_pool_connections_in_use',
    'Connections of the pool checked out or running a query',
    (u) => u.inUse,
  );
  poolGauge('mysql_pool_connections_open', 'Connections the pool holds open, busy or idle', (u) => u.open);
  poolGauge('mysql_pool_connections_max', 'Most connections the pool opens (MYSQL_POOL_SIZE)', (u) => u.max);
  poolGauge(
    'mysql_pool_waiting_requests',
    'Callers waiting for a connection of the pool because every one is busy',
    (u) => u.waiting,
  );
  new Gauge({
    name: 'dependency_up',
    help: "1 while the dependency answers this node's readiness check (GET /ready), 0 while it does not",
    labelNames: ['dependency'] as const,
    registers,
    async collect() {
      const { dependencies } = await sources.readiness();
      for (const [dependency, label] of Object.entries(DEPENDENCY_LABELS))
        this.set({ dependency: label }, dependencies[dependency as Dependency].status === 'up' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'outbox_oldest_age_seconds',
    help: 'Age of the oldest outbox event not yet sent to Kafka (0: none waiting)',
    registers,
    async collect() {
      this.set(await sources.outboxOldestAgeSeconds());
    },
  });
  new Gauge({
    name: 'saga_oldest_open_age_seconds',
    help: "Age of the oldest purchase saga still open, as of the node's last recovery sweep (every 5 s; 0: none)",
    registers,
    collect() {
      this.set(sources.sagaOldestOpenAgeSeconds());
    },
  });
  const lag = sources.projectionLagEvents;
  if (lag !== undefined) {
    new Gauge({
      name: 'projection_consumer_lag_events',
      help: "Events in the sales projection's topics its consumer group has not committed yet",
      registers,
      async collect() {
        this.set(await lag());
      },
    });
  }
  new Gauge({
    name: 'product_actor_requests',
    help: "Requests this node's product actors hold: queued in mailboxes, reserved, or being written",
    registers,
    collect() {
      this.set(sources.actorRequests());
    },
  });
  const hot = sources.hotProducts;
  if (hot !== undefined) registerHotProductGauges(registers, hot);
}

/**
 * hot_product_{id,stock,sold_per_second}{rank}: a product id is never a label, so the ranks are (bounded);
 * the three gauges of one scrape read the same ranking (taken once, reused for 500 ms).
 */
function registerHotProductGauges(registers: Registry[], hot: () => readonly HotProduct[]): void {
  let ranking: readonly HotProduct[] = [];
  let takenAt = -Infinity;
  const current = (): readonly HotProduct[] => {
    if (performance.now() - takenAt > 500) {
      ranking = hot();
      takenAt = performance.now();
    }
    return ranking;
  };
  const rankGauge = (name: string, help: string, figure: (product: HotProduct) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['rank'] as const,
      registers,
      collect() {
        this.reset();
        current().forEach((product, i) => this.set({ rank: String(i + 1) }, figure(product)));
      },
    });
  rankGauge(
    'hot_product_id',
    "Id of this node's product at this rank of units sold per second (rank 1: fastest)",
    (p) => p.productId,
  );
  rankGauge('hot_product_stock', 'Committed stock of the product at this rank', (p) => p.stock);
  rankGauge(
    'hot_product_sold_per_second',
    'Units sold per second of the product at this rank (reservations, decayed with a 30 s half-life)',
    (p) => p.soldPerSecond,
  );
}

/**
 * The HTTP duration histogram's hot child of each (method, route, status), found without hashing its labels
 * on every answer.
 */
export function httpTimers(
  metrics: Metrics,
): (method: string, route: string, status: number) => HotHistogram {
  const child = hotHistogram(metrics.httpDuration);
  const timers = new Map<string, Map<string, Map<number, HotHistogram>>>();
  return (method, route, status) => {
    let byRoute = timers.get(method);
    if (byRoute === undefined) timers.set(method, (byRoute = new Map<string, Map<number, HotHistogram>>()));
    let byStatus = byRoute.get(route);
    if (byStatus === undefined) byRoute.set(route, (byStatus = new Map<number, HotHistogram>()));
    let timer = byStatus.get(status);
    if (timer === undefined) byStatus.set(status, (timer = child({ method, route, status })));
    return timer;
  };
}
