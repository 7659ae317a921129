import type { Config } from '../config.js';
import { outboxOldestAgeSeconds } from '../events/outbox-queries.js';
import type { Logger } from '../logger.js';
import type { ScrapeSources } from '../metrics.js';
import { ProjectionLag } from '../projection/projection-lag.js';
import type { Kafka } from '../storage/kafka.js';
import type { Pool } from '../storage/mysql.js';
import { ScrapeFigure } from './scrape-figure.js';

export interface EventFiguresDeps {
  primary: Pool;
  kafka: Kafka;
  topics: Config['kafka']['topics'];
  /** The sales projection's consumer group; absent when this process runs no projection (no lag to read). */
  projectionGroupId?: string;
  logger: Logger;
}

export interface EventFigures {
  /** The scrape gauges' sources of the outbox's age and, with a projection, its lag. */
  readonly sources: Pick<ScrapeSources, 'outboxOldestAgeSeconds' | 'projectionLagEvents'>;
  /** Closes the lag reader's Kafka admin client. */
  close(): Promise<void>;
}

/**
 * A projection lag read this young is answered again, ms. One read is ~15 Kafka requests (the group's
 * offsets, both ends of every partition); the alert on it waits 5 minutes (`KafkaConsumerLag`), and the
 * local stack's 2 s scrapes would otherwise make them most of an idle node's work.
 */
export const PROJECTION_LAG_REUSE_MS = 10_000;

/** The event pipeline's figures, read only when Prometheus scrapes (README "Observability"). */
export function eventFigures(deps: EventFiguresDeps): EventFigures {
  const { logger, topics } = deps;
  const outboxAge = new ScrapeFigure({
    name: 'outbox_oldest_age_seconds',
    logger,
    read: () => outboxOldestAgeSeconds(deps.primary, topics),
  });
  const lag =
    deps.projectionGroupId === undefined
      ? undefined
      : new ProjectionLag(deps.kafka, deps.projectionGroupId, [topics.orders, topics.payments]);
  const lagFigure =
    lag &&
    new ScrapeFigure({
      name: 'projection_consumer_lag_events',
      logger,
      read: () => lag.events(),
      reuseForMs: PROJECTION_LAG_REUSE_MS,
    });
  return {
    sources: {
      outboxOldestAgeSeconds: () => outboxAge.value(),
      ...(lagFigure === undefined ? {} : { projectionLagEvents: () => lagFigure.value() }),
    },
    close: async () => lag?.close(),
  };
}
