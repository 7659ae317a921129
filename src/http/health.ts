import { AppError } from '../errors.js';
import type { ReadinessChecks } from '../readiness.js';
import { apiRoute } from '../api/contract.js';
import { healthContract, metricsContract, readyContract } from '../api/routes.js';
import { json } from './reply.js';
import type { Route } from './server.js';

export interface HealthDeps {
  nodeId: string;
  /** The dependency checks (shared with the `dependency_up` gauge). */
  readiness: ReadinessChecks;
  startedAt: number;
  /** Extra facts for /health (this node's shards). */
  details?: () => Record<string, unknown>;
}

/** `GET /health`: the process answers (liveness). `GET /ready`: every dependency answers (readiness). */
export function healthRoutes(deps: HealthDeps): Route[] {
  return [
    apiRoute(healthContract, () =>
      json(200, {
        status: 'ok',
        node: deps.nodeId,
        uptimeSeconds: Math.round((Date.now() - deps.startedAt) / 1000),
        ...deps.details?.(),
      }),
    ),
    apiRoute(readyContract, async () => {
      const readiness = await deps.readiness.check();
      if (readiness.ready)
        return json(200, { status: 'ready', node: deps.nodeId, dependencies: readiness.dependencies });
      const error = new AppError('DEPENDENCY_UNAVAILABLE', `not ready: ${readiness.down.join(', ')} down`);
      return json(
        503,
        {
          ...error.toBody(),
          status: 'not_ready',
          node: deps.nodeId,
          down: readiness.down,
          dependencies: readiness.dependencies,
        },
        { 'Retry-After': '1' },
      );
    }),
  ];
}

/**
 * `GET /metrics` for the scraper only (internal: METRICS_ALLOW_FROM socket addresses, never through the
 * balancer). `beforeScrape` sets the gauges read at scrape time.
 */
export function metricsRoute(
  registry: { metrics(): Promise<string>; contentType: string },
  beforeScrape: () => void,
): Route {
  return apiRoute(metricsContract, async () => {
    beforeScrape();
    return { status: 200, text: { body: await registry.metrics(), contentType: registry.contentType } };
  });
}
