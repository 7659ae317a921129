/**
 * The bench's own clients of the stack's MySQL and Redis (the checks, the counters, key cleanup), set up
 * the way the service sets up its own: from `loadConfig` (MYSQL_*_URL, REDIS_URL and whatever else the
 * service's configuration says, e.g. TLS), through the service's storage adapters' options.
 */
import mysql, { type Connection, type ConnectionOptions } from 'mysql2/promise';
import { loadConfig, type Config, type MysqlEndpoint } from '../src/config.js';
import { poolOptions } from '../src/storage/mysql.js';
import { connectRedis, createRedis, type Redis } from '../src/storage/redis.js';

let config: Config | undefined;

/** The service's configuration as this process's environment gives it (read once). */
export function storeConfig(): Config {
  config ??= loadConfig(process.env);
  return config;
}

/** One connection's options from the service's pool options (pool-only settings left out). */
export function connectionOptions(
  endpoint: MysqlEndpoint,
  extra: { multipleStatements?: boolean } = {},
): ConnectionOptions {
  const {
    connectionLimit: _limit,
    maxIdle: _maxIdle,
    idleTimeout: _idle,
    queueLimit: _queue,
    waitForConnections: _wait,
    ...options
  } = poolOptions(endpoint, 1);
  return { ...options, multipleStatements: extra.multipleStatements ?? false };
}

/** A connection to the primary (MYSQL_PRIMARY_URL, else the local stack's). */
export function connectMysql(
  which: 'primary' | 'replica' = 'primary',
  extra: { multipleStatements?: boolean } = {},
): Promise<Connection> {
  return mysql.createConnection(connectionOptions(storeConfig().mysql[which], extra));
}

/** A connected Redis client as the service makes them (REDIS_URL, else the local stack's). */
export async function connectStoreRedis(): Promise<Redis> {
  const redis = createRedis(storeConfig());
  try {
    await connectRedis(redis);
  } catch (err) {
    redis.disconnect();
    throw err;
  }
  return redis;
}
