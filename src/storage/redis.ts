import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../config.js';
import { readCaFile } from './tls.js';
import { AppError } from '../errors.js';

export type { Redis };

/**
 * ioredis's TLS options for the configured Redis (a `rediss://` URL): the CA read now (once per client),
 * the server's certificate verified against it, to the data nodes and the sentinels alike. Empty for
 * plaintext (`redis://`). Also for clients made outside createRedis: `new Redis(url, {...redisTls(config.redis)})`.
 */
export function redisTls(redis: Config['redis']): RedisOptions {
  if (redis.tls === null) return {};
  const ca = readCaFile(
    'REDIS_TLS_CA_FILE',
    redis.tls.caFile,
    'Redis',
    'use a redis:// REDIS_URL for a server without TLS',
  );
  const tls = { ca, rejectUnauthorized: true };
  return redis.sentinels.length > 0 ? { tls, sentinelTLS: tls, enableTLSForSentinelMode: true } : { tls };
}

/**
 * A Redis client that fails fast while disconnected (no offline queue): a flash sale prefers an
 * immediate 503 over requests piling up behind a dead connection. It reconnects in the background.
 */
export function createRedis(config: Pick<Config, 'redis'>, overrides: RedisOptions = {}): Redis {
  const sentinel = config.redis.sentinels.length > 0;
  const common: RedisOptions = {
    ...redisTls(config.redis),
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000, // 2 s
    // A server that hangs (paused, or a primary cut off mid-failover) fails commands instead of holding them.
    commandTimeout: 2_000,
    // Leaving a hung server (after a failover): a FIN it will never answer, then the socket destroyed
    // after this long (ioredis's default is 2 s) so the reconnect to the new primary starts.
    disconnectTimeout: 250,
    // Back off to 2 s between reconnects to a single node; through Sentinel to 500 ms, so that a client
    // finds the promoted replica soon after a failover (asking a Sentinel is cheap).
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, sentinel ? 500 : 2_000),
    // A primary demoted while we stayed connected (a failover during a pause or a partition) answers
    // writes with READONLY: reconnect, through the Sentinels to the new primary, and send the command again.
    reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 2 : false),
    ...overrides,
  };
  if (sentinel) {
    // With Sentinel, REDIS_URL still carries the data nodes' credentials and database.
    const url = new URL(config.redis.url);
    const client = new Redis({
      ...common,
      sentinels: [...config.redis.sentinels],
      name: config.redis.sentinelName,
      // Subscribes to the Sentinels' +switch-master: a client leaves the old primary as soon as a failover
      // is decided, even if that primary hangs without closing its connections.
      failoverDetector: true,
      // A fresh object per lookup: ioredis adds its TLS options to the address it is given (Object.assign).
      natMap: (reported: string) => {
        const reached = config.redis.natMap[reported];
        return reached === undefined ? null : { host: reached.host, port: reached.port };
      },
      sentinelRetryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 500),
      ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
      ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
      db: url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0,
    });
    retireFailoverDetectorOnClose(client);
    return client;
  }
  return new Redis(config.redis.url, common);
}

/**
 * Works around ioredis 6.0.0: the failover detector of a connection outlives it. When the primary dies,
 * the client reconnects through the Sentinels (still naming the dead primary for a second or two); the
 * +switch-master that ends the failover then reaches the old detector, whose `connector.disconnect()`
 * aborts the reconnect in progress, and the client ends for good ("Connection is closed."). Retiring the
 * detector when its connection closes leaves the reconnect alone; each new connection subscribes a new one.
 * test/faults/redis-failover.test.ts fails without it.
 */
function retireFailoverDetectorOnClose(client: Redis): void {
  type WithDetector = { connector?: { failoverDetector?: { cleanup(): void } | null } };
  client.on('close', () => (client as unknown as WithDetector).connector?.failoverDetector?.cleanup());
}

/**
 * A client of its own with `client`'s settings (a subscriber: pub/sub takes the connection over), with the
 * same failover workaround when it goes through Sentinel.
 */
export function duplicateRedis(client: Redis, overrides: RedisOptions = {}): Redis {
  const copy = client.duplicate(overrides);
  if ((copy.options.sentinels?.length ?? 0) > 0) retireFailoverDetectorOnClose(copy);
  return copy;
}

/** Resolves once the client is ready; rejects with the connection's own error (e.g. ECONNREFUSED). */
export async function connectRedis(redis: Redis): Promise<void> {
  if (redis.status === 'ready') return;
  const ready = new Promise<void>((resolve, reject) => {
    const done = (err?: Error): void => {
      redis.off('ready', onReady);
      redis.off('error', onError);
      redis.off('end', onEnd);
      if (err) reject(err);
      else resolve();
    };
    const onReady = (): void => done();
    const onError = (err: Error): void => done(err);
    const onEnd = (): void =>
      done(new AppError('DEPENDENCY_UNAVAILABLE', 'redis connection ended before it was ready'));
    redis.once('ready', onReady).once('error', onError).once('end', onEnd);
  });
  if (redis.status === 'wait') redis.connect().catch(() => undefined); // the error event carries the cause
  await ready;
}

export async function pingRedis(redis: Redis): Promise<void> {
  const reply: string = await redis.ping();
  if (reply !== 'PONG') throw new AppError('DEPENDENCY_UNAVAILABLE', `unexpected PING reply ${reply}`);
}
