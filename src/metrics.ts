import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { PURCHASE_STAGES, type PurchaseStage, type StageObserver } from '../actors/product/types.js';
import { LoopDelayMonitor } from './loop-delay.js';

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
  // Every stage is listed from the start (at 0), and its child looked up once: an observation is a map
  // lookup and a bucket search.
  for (const stage of PURCHASE_STAGES) purchaseStageDuration.zero({ stage });
  const stageChildren = new Map(
    PURCHASE_STAGES.map((stage) => [stage, purchaseStageDuration.labels({ stage })] as const),
  );
  const purchaseStage: StageObserver = (stage: PurchaseStage, seconds: number, count = 1) => {
    const child = stageChildren.get(stage)!;
    for (let i = 0; i < count; i += 1) child.observe(seconds);
  };
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
    batchDuration: new Histogram({
      name: 'product_batch_duration_seconds',
      help: 'Time to write one batch (transaction and stock write-through)',
      labelNames: ['outcome'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    }),
    cacheReads: new Counter({
      name: 'product_cache_reads_total',
      help: 'Product reads answered from Redis (hit) or the replica (miss)',
      labelNames: ['result'] as const,
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
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
