/**
 * MySQL and Redis clients configured as the service configures its own (`loadConfig` and its storage adapters'
 * options: URLs, TLS): the cluster launcher's key cleanup and the bench's checks and counters (bench/stores.ts).
 */
import mysql, { type Connection } from 'mysql2/promise';
import { loadConfig, type Config } from '../src/config.js';
import { poolOptions } from '../src/storage/mysql.js';
import { connectRedis, createRedis, type Redis } from '../src/storage/redis.js';

let config: Config | undefined;

/** The service's configuration as this process's environment gives it (read once). */
export function storeConfig(): Config {
  config ??= loadConfig(process.env);
  return config;
}

/** One connection with the service's pool options (pool-only settings left out). */
export function connectMysql(
  which: 'primary' | 'replica' = 'primary',
  extra: { multipleStatements?: boolean } = {},
): Promise<Connection> {
  const {
    connectionLimit: _limit,
    maxIdle: _maxIdle,
    idleTimeout: _idle,
    queueLimit: _queue,
    waitForConnections: _wait,
    ...options
  } = poolOptions(storeConfig().mysql[which], 1);
  return mysql.createConnection({ ...options, multipleStatements: extra.multipleStatements ?? false });
}

/** `work` on a connection of its own, closed after. */
export async function withMysql<T>(
  work: (conn: Connection) => Promise<T>,
  which: 'primary' | 'replica' = 'primary',
): Promise<T> {
  const conn = await connectMysql(which);
  try {
    return await work(conn);
  } finally {
    await conn.end().catch(() => undefined);
  }
}

/** A connected Redis client as the service makes them. */
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
