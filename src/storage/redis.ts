import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../config.js';
import { readCaFile } from './tls.js';

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
  const common: RedisOptions = {
    ...redisTls(config.redis),
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000, // 2 s
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2_000), // back off to 2 s between reconnects
    ...overrides,
  };
  if (config.redis.sentinels.length > 0) {
    // With Sentinel, REDIS_URL still carries the data nodes' credentials and database.
    const url = new URL(config.redis.url);
    return new Redis({
      ...common,
      sentinels: [...config.redis.sentinels],
      name: config.redis.sentinelName,
      ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
      ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
      db: url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0,
    });
  }
  return new Redis(config.redis.url, common);
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
    const onEnd = (): void => done(new Error('redis connection ended before it was ready'));
    redis.once('ready', onReady).once('error', onError).once('end', onEnd);
  });
  if (redis.status === 'wait') redis.connect().catch(() => undefined); // the error event carries the cause
  await ready;
}

export async function pingRedis(redis: Redis): Promise<void> {
  const reply: string = await redis.ping();
  if (reply !== 'PONG') throw new Error(`unexpected PING reply ${reply}`);
}
