import mysql, { type Pool, type PoolOptions } from 'mysql2/promise';
import type { Config, MysqlEndpoint } from '../config.js';
import { readCaFile } from './tls.js';

export type { Pool, PoolConnection, RowDataPacket, ResultSetHeader } from 'mysql2/promise';

/** The primary takes every write; the replica serves cache-miss reads. */
export interface MysqlPools {
  readonly primary: Pool;
  readonly replica: Pool;
  close(): Promise<void>;
}

/**
 * mysql2's TLS options for an endpoint: the CA read now (once per client), the server's certificate
 * verified against it (chain and host name or IP); undefined when the endpoint is plaintext (MYSQL_TLS=off).
 */
export function mysqlSsl(endpoint: MysqlEndpoint): PoolOptions['ssl'] {
  if (endpoint.tls === null) return undefined;
  const ca = readCaFile(
    'MYSQL_TLS_CA_FILE',
    endpoint.tls.caFile,
    'MySQL',
    'set MYSQL_TLS=off for a server without TLS',
  );
  return { ca, rejectUnauthorized: true, verifyIdentity: true };
}

export function poolOptions(endpoint: MysqlEndpoint, connectionLimit: number): PoolOptions {
  return {
    host: endpoint.host,
    port: endpoint.port,
    user: endpoint.user,
    password: endpoint.password,
    database: endpoint.database,
    connectionLimit,
    // Idle connections are kept (at most connectionLimit): with fewer allowed idle, mysql2 runs a reaper
    // every second per pool, forever, waking an idle node twice a second. The server's wait_timeout
    // closes a connection left idle for hours, and the pool drops a closed connection.
    maxIdle: connectionLimit,
    connectTimeout: 2_000, // 2 s: a dead server must not hold requests for the driver's 10 s default
    enableKeepAlive: true,
    supportBigNumbers: true,
    bigNumberStrings: false,
    dateStrings: false,
    timezone: 'Z',
    charset: 'utf8mb4',
    // A product's batch is one multi-statement round trip (src/storage/batch-writer.ts). Every query
    // in this codebase uses placeholders, so this widens no injection path.
    multipleStatements: true,
    ssl: mysqlSsl(endpoint),
  };
}

export function createMysqlPools(config: Pick<Config, 'mysql'>): MysqlPools {
  const primary = mysql.createPool(poolOptions(config.mysql.primary, config.mysql.poolSize));
  const replica = mysql.createPool(poolOptions(config.mysql.replica, config.mysql.poolSize));
  return {
    primary,
    replica,
    async close() {
      await Promise.allSettled([primary.end(), replica.end()]);
    },
  };
}

/** A pool's connections: open and busy (checked out or running a query), open in all, and its limit. */
export interface PoolUsage {
  inUse: number;
  open: number;
  max: number;
  /** Callers waiting for a connection because every one is busy. */
  waiting: number;
}

interface CorePoolInternals {
  _allConnections?: { length: number };
  _freeConnections?: { length: number };
  _connectionQueue?: { length: number };
  config?: { connectionLimit?: number };
}

/**
 * Reads mysql2's own counters (its pool keeps them as queues: no per-query work for the metric). They are
 * internal to mysql2 3.x: a version without them reads NaN rather than a wrong figure.
 */
export function poolUsage(pool: Pool): PoolUsage {
  const core = (pool as unknown as { pool?: CorePoolInternals }).pool;
  const all = core?._allConnections?.length;
  const free = core?._freeConnections?.length;
  const max = core?.config?.connectionLimit;
  if (all === undefined || free === undefined || max === undefined)
    return { inUse: NaN, open: NaN, max: NaN, waiting: NaN };
  return { inUse: all - free, open: all, max, waiting: core?._connectionQueue?.length ?? NaN };
}

/** Answers when the server runs a query; rejects otherwise. */
export async function pingMysql(pool: Pool): Promise<void> {
  await pool.query('SELECT 1');
}
