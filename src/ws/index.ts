import type { TemplatedApp } from 'uWebSockets.js';
import type { Logger } from '../logger.js';
import type { Redis } from '../storage/redis.js';
import { attachStockEndpoint, type StockEndpoint, type StockEndpointOptions } from './endpoint.js';
import { StockFeed, type ReadStocks, type StockFeedOptions } from './stock-feed.js';
import type { StockSubscriptionLimits } from './types.js';

export { WS_CLOSE, wsDefaults, type ServerFrame, type StockState } from './types.js';

export interface StockSubscriptionsDeps {
  app: TemplatedApp;
  redis: Redis;
  /** Redis key prefix of the cluster; the pub/sub channel is `<prefix>stock-changes`. */
  keyPrefix: string;
  readStocks: ReadStocks;
  limits: StockSubscriptionLimits;
  logger: Logger;
  /** Admission of each upgrade (the per-IP limit); throws AppError to refuse it. */
  admit?: StockEndpointOptions['admit'];
  /** Other nodes' committed changes, and whether the feed is live (see StockFeedOptions). */
  onChange?: StockFeedOptions['onChange'];
  onLive?: StockFeedOptions['onLive'];
}

export interface StockSubscriptions {
  /**
   * A change committed on this node (called by the product actors after the write-through); `announced`:
   * the write-through published `publication(...)` already.
   */
  committed(productId: number, stock: number, version: number, announced?: boolean): void;
  /** The other nodes' message of a change committed now, for the write-through to publish. */
  publication(productId: number, stock: number, version: number): { channel: string; message: string };
  /** Subscribes to the other nodes' changes. */
  start(): Promise<void>;
  /** Closes every subscriber with 1001 and leaves the channel. */
  close(): void;
  stats(): ReturnType<StockEndpoint['stats']> & ReturnType<StockFeed['stats']>;
}

/** WebSocket stock subscribers on `/ws`, fed by this node's commits and, through Redis, every other node's. */
export function createStockSubscriptions(deps: StockSubscriptionsDeps): StockSubscriptions {
  const logger = deps.logger.child({ component: 'stock-subscriptions' });
  const feed = new StockFeed({
    app: deps.app,
    redis: deps.redis,
    channel: `${deps.keyPrefix}stock-changes`,
    readStocks: deps.readStocks,
    logger,
    ...(deps.onChange ? { onChange: deps.onChange } : {}),
    ...(deps.onLive ? { onLive: deps.onLive } : {}),
  });
  const endpoint = attachStockEndpoint({
    app: deps.app,
    feed,
    limits: deps.limits,
    logger,
    ...(deps.admit ? { admit: deps.admit } : {}),
  });
  return {
    committed: (productId, stock, version, announced) => feed.committed(productId, stock, version, announced),
    publication: (productId, stock, version) => feed.publication(productId, stock, version),
    start: () => feed.start(),
    close() {
      endpoint.close();
      feed.stop();
    },
    stats: () => ({ ...endpoint.stats(), ...feed.stats() }),
  };
}
