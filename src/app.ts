import type { Config } from './config.js';
import { healthRoutes } from './http/health.js';
import { createHttpServer, type HttpServer } from './http/server.js';
import type { Uws } from './http/uws.js';
import type { Infrastructure } from './infrastructure.js';
import type { Logger } from './logger.js';

export interface AppDeps {
  config: Config;
  logger: Logger;
  uws: Uws;
  infra: Infrastructure;
}

/** Builds the HTTP application from its dependencies; listening is the caller's choice. */
export function buildApp(deps: AppDeps): HttpServer {
  const startedAt = Date.now();
  return createHttpServer({
    uws: deps.uws,
    logger: deps.logger,
    routes: [
      ...healthRoutes({
        nodeId: deps.config.nodeId,
        checks: deps.infra.checks,
        checkTimeoutMs: deps.config.readyCheckTimeoutMs,
        startedAt,
      }),
    ],
  });
}
