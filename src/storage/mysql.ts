import mysql, { type Pool, type PoolOptions, type RowDataPacket } from 'mysql2/promise';
import type { Config, MysqlEndpoint } from '../config.js';
import { AppError, isConnectionError } from '../errors.js';
import type { Logger } from '../logger.js';
import { every } from '../timeouts.js';
import { readCaFile } from './tls.js';

export type { Pool, PoolConnection, RowDataPacket, ResultSetHeader } from 'mysql2/promise';

/** The configured servers by their first roles (MYSQL_PRIMARY_URL, MYSQL_REPLICA_URL); a failover swaps them. */
export type MysqlServer = 'primary' | 'replica';

/**
 * The primary takes every write; the replica serves cache-miss reads. Each is a view of one server's pool
 * that follows the topology (`discover`): `primary` is the writable server, `replica` the other one while it
 * replicates from it, else the primary too.
 */
export interface MysqlPools {
  readonly primary: Pool;
  readonly replica: Pool;
  /** Which configured server each view uses now. */
  readonly roles: { readonly writes: MysqlServer; readonly reads: MysqlServer };
  /** The endpoint writes go to now (migrations follow it). */
  readonly primaryEndpoint: MysqlEndpoint;
  /** Asks both servers now; resolves when the views follow what they said. */
  discover(): Promise<void>;
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
    // mysql2's promise API captures a stack trace on every query (`trace`, default on) to show the caller
    // in a failed query's stack: 2.1% of a node's CPU in the `cost` scenario (--cpu-prof). Failures are
    // logged by message and code, with the operation that failed; the driver's own stack is enough.
    trace: false,
    ssl: mysqlSsl(endpoint),
  };
}

/** Methods whose rejections are watched for connection errors (src/errors.ts): a failover may be under way. */
const WATCHED = new Set<PropertyKey>(['query', 'execute', 'getConnection']);

/**
 * A Pool that is whichever pool `current()` names at each use (a Proxy; bound methods are made once per
 * pool), and reports errors that may mean a failover.
 */
function followingPool(current: () => Pool, failed: (err: unknown) => void): Pool {
  const bound = new WeakMap<Pool, Map<PropertyKey, unknown>>();
  return new Proxy(Object.create(null) as Pool, {
    get(_target, property) {
      const pool = current();
      let methods = bound.get(pool);
      if (methods === undefined) bound.set(pool, (methods = new Map<PropertyKey, unknown>()));
      let value = methods.get(property);
      if (value !== undefined) return value;
      const raw: unknown = Reflect.get(pool, property, pool);
      if (typeof raw !== 'function') return raw;
      const method = raw as (...args: unknown[]) => unknown;
      value = WATCHED.has(property)
        ? (...args: unknown[]) =>
            (method.apply(pool, args) as Promise<unknown>).catch((err: unknown) => {
              failed(err);
              throw err;
            })
        : method.bind(pool);
      methods.set(property, value);
      return value;
    },
  });
}

interface ServerView {
  readonly up: boolean;
  readonly writable: boolean;
  /** `host:port` of the server it replicates from (its SQL thread running); null: none; '?': not allowed to see. */
  readonly replicates: string | null;
}

const PROBE_TIMEOUT_MS = 1_000;

async function probeServer(pool: Pool): Promise<ServerView> {
  try {
    const [[variables]] = await pool.query<RowDataPacket[]>({
      sql: 'SELECT @@global.read_only AS ro',
      timeout: PROBE_TIMEOUT_MS,
    });
    let replicates: string | null = '?';
    try {
      const [[status]] = await pool.query<RowDataPacket[]>({
        sql: 'SHOW SLAVE STATUS',
        timeout: PROBE_TIMEOUT_MS,
      });
      replicates =
        status !== undefined && status['Slave_SQL_Running'] === 'Yes'
          ? `${status['Master_Host']}:${status['Master_Port']}`
          : null;
    } catch {
      // No SLAVE MONITOR grant: a read-only server that answers is taken for a replica, as before.
    }
    return { up: true, writable: Number(variables?.['ro']) === 0, replicates };
  } catch {
    return { up: false, writable: false, replicates: null };
  }
}

/**
 * The pools of both servers, and the `primary` / `replica` views that follow the topology. A server is the
 * primary when it is writable: the failover manager (src/db-failover/) opens exactly one, and every server
 * starts read-only, so "writable" is the election's outcome, read where it is enforced. Reads go to the
 * other server while it replicates from that primary, else to the primary (a replica down, or an old primary
 * not yet rejoined: never a server that has stopped following).
 */
export function createMysqlPools(config: Pick<Config, 'mysql'>, logger?: Logger): MysqlPools {
  const servers: readonly { name: MysqlServer; endpoint: MysqlEndpoint; pool: Pool }[] = (
    ['primary', 'replica'] as const
  ).map((name) => ({
    name,
    endpoint: config.mysql[name],
    pool: mysql.createPool(poolOptions(config.mysql[name], config.mysql.poolSize)),
  }));
  const [first, second] = servers as readonly [(typeof servers)[number], (typeof servers)[number]];
  let writer = first;
  let reader = second;
  const address = (server: (typeof servers)[number]): string =>
    `${server.endpoint.host}:${server.endpoint.port}`;

  let discovering: Promise<void> | undefined;
  const discover = (): Promise<void> =>
    (discovering ??= (async () => {
      const [one, two] = await Promise.all([probeServer(first.pool), probeServer(second.pool)]);
      const views = new Map([
        [first, one],
        [second, two],
      ]);
      // A writable server the writes do not use yet: the primary moved. Two writable (the manager fences
      // the old one within a second): keep the current one.
      if (!views.get(writer)!.writable) {
        const moved = servers.find((server) => views.get(server)!.writable);
        if (moved !== undefined && moved !== writer) {
          logger?.warn({ from: writer.name, to: moved.name }, 'MySQL primary moved: writes follow it');
          writer = moved;
        }
      }
      const other = writer === first ? second : first;
      const view = views.get(other)!;
      const follows =
        view.up && !view.writable && (view.replicates === address(writer) || view.replicates === '?');
      const nextReader = follows ? other : writer;
      if (nextReader !== reader) {
        logger?.warn(
          { reads: nextReader.name, primary: writer.name },
          nextReader === writer
            ? 'no replica follows the primary: reads go to the primary'
            : 'reads go to the replica again',
        );
        reader = nextReader;
      }
    })().finally(() => (discovering = undefined)));

  const failed = (err: unknown): void => {
    if (isConnectionError(err)) void discover().catch(() => undefined);
  };
  const timer =
    config.mysql.discoveryMs > 0
      ? every(config.mysql.discoveryMs, () => void discover().catch(() => undefined), { unref: true })
      : undefined;
  if (timer !== undefined) void discover().catch(() => undefined);

  return {
    primary: followingPool(() => writer.pool, failed),
    replica: followingPool(() => reader.pool, failed),
    get roles() {
      return { writes: writer.name, reads: reader.name };
    },
    get primaryEndpoint() {
      return writer.endpoint;
    },
    discover,
    async close() {
      timer?.stop();
      await Promise.allSettled(servers.map((server) => server.pool.end()));
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

/** Answers when the server runs a query and takes writes (not read-only: a fenced or not yet promoted server). */
export async function pingWritable(pool: Pool): Promise<void> {
  const [[row]] = await pool.query<RowDataPacket[]>('SELECT @@global.read_only AS ro');
  if (Number(row?.['ro']) !== 0)
    throw new AppError('DEPENDENCY_UNAVAILABLE', 'read-only: no writable primary (a failover in progress?)');
}
