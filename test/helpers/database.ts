import mysql from 'mysql2/promise';
import type { Test } from 'tap';
import { electedPrimary, socketPath } from '../../scripts/stack/mariadb.js';
import { loadConfig, type MysqlEndpoint } from '../../src/config.js';
import { migrate } from '../../src/storage/migrate.js';
import type { Infrastructure } from '../../src/infrastructure.js';
import { mysqlSsl, type RowDataPacket } from '../../src/storage/mysql.js';
import { uniq } from './isolation.js';

export interface ThrowawayDatabase {
  /** The app's user on it: data only (SELECT, INSERT, UPDATE, DELETE), as on the service's database. */
  readonly endpoint: MysqlEndpoint;
  /** The migration user on it: every right on this database (DDL: tables, migrations). */
  readonly migration: MysqlEndpoint;
  /** MYSQL_PRIMARY_URL, MYSQL_REPLICA_URL and MYSQL_MIGRATION_URL of it, for app processes. */
  readonly env: Record<string, string>;
}

/**
 * A database of its own on the primary (the replica follows by replication), with the service's schema
 * applied (unless `schema: false`). Neither the app user nor the migration user may create databases, so
 * root (unix-socket auth over the stack's socket) creates it, grants the app user data rights and the
 * migration user all rights on it, and drops it at teardown. App processes that resume sagas need one: a
 * node resumes every unfinished saga of the database it owns shards of, and other tests' sagas are not
 * its to finish.
 */
export async function throwawayDatabase(
  t: Test,
  label = 'db',
  { schema = true }: { schema?: boolean } = {},
): Promise<ThrowawayDatabase> {
  const config = loadConfig({ LOG_LEVEL: 'silent' });
  const database = `flashsale_${label}_${uniq('')}`;
  // On the elected primary (a fault test may fail over and back meanwhile): a connection of its own each time.
  const asRoot = () => mysql.createConnection({ socketPath: socketPath(electedPrimary()), user: 'root' });
  const root = await asRoot();
  const appGrantees = ['127.0.0.1', 'localhost'].map((host) => `'${config.mysql.primary.user}'@'${host}'`);
  const migrationGrantee = `'${config.mysql.migration.user}'@'${config.mysql.migration.host}'`;
  t.teardown(async () => {
    const cleaner = await asRoot();
    try {
      await cleaner.query(`DROP DATABASE IF EXISTS \`${database}\``);
      for (const grantee of [...appGrantees, migrationGrantee])
        await cleaner
          .query(`REVOKE ALL PRIVILEGES ON \`${database}\`.* FROM ${grantee}`)
          .catch(() => undefined);
    } finally {
      await cleaner.end(); // an open connection would keep the file running until tap's timeout
    }
  });
  await root.query(`CREATE DATABASE \`${database}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
  for (const grantee of appGrantees)
    await root.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON \`${database}\`.* TO ${grantee}`);
  await root.query(`GRANT ALL PRIVILEGES ON \`${database}\`.* TO ${migrationGrantee}`);
  await root.end();
  const migration = { ...config.mysql.migration, database };
  if (schema) await migrate(migration);
  // The database and its grants reach the replica by replication: wait until the app user can use it there.
  const replica = { ...config.mysql.replica, database };
  for (const until = Date.now() + 15_000; ;) {
    const ok = await mysql
      .createConnection({
        host: replica.host,
        port: replica.port,
        user: replica.user,
        password: replica.password,
        database,
        ssl: mysqlSsl(replica),
      })
      .then(async (conn) => {
        await conn.end();
        return true;
      })
      .catch(() => false);
    if (ok) break;
    if (Date.now() > until) throw new Error(`database ${database} did not reach the replica within 15 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const url = (e: MysqlEndpoint) => `mysql://${e.user}:${e.password}@${e.host}:${e.port}/${database}`;
  return {
    endpoint: { ...config.mysql.primary, database },
    migration,
    env: {
      MYSQL_PRIMARY_URL: url(config.mysql.primary),
      MYSQL_REPLICA_URL: url(config.mysql.replica),
      MYSQL_MIGRATION_URL: url(config.mysql.migration),
    },
  };
}

export interface Totals {
  stock: number;
  version: number;
  /** Units of orders not cancelled (confirmed or still pending). */
  sold: number;
  /** Orders not cancelled. */
  orders: number;
  confirmed: number;
  pending: number;
  cancelledQuantity: number;
}

/** Stock, version and the orders of one product as a server (primary or replica) has them. */
export async function totals(pool: Infrastructure['mysql']['primary'], productId: number): Promise<Totals> {
  const [[row]] = await pool.query<RowDataPacket[]>(
    `SELECT p.stock, p.version,
            (SELECT COALESCE(SUM(quantity), 0) FROM orders WHERE product_id = p.id AND status <> 'CANCELLED') AS sold,
            (SELECT COUNT(*) FROM orders WHERE product_id = p.id AND status <> 'CANCELLED') AS orders,
            (SELECT COUNT(*) FROM orders WHERE product_id = p.id AND status = 'CONFIRMED') AS confirmed,
            (SELECT COUNT(*) FROM orders WHERE product_id = p.id AND status = 'PENDING') AS pending,
            (SELECT COALESCE(SUM(quantity), 0) FROM orders WHERE product_id = p.id AND status = 'CANCELLED') AS cancelled_quantity
       FROM products p WHERE p.id = ?`,
    [productId],
  );
  if (row === undefined) throw new Error(`product ${productId} not found`);
  return {
    stock: Number(row['stock']),
    version: Number(row['version']),
    sold: Number(row['sold']),
    orders: Number(row['orders']),
    confirmed: Number(row['confirmed']),
    pending: Number(row['pending']),
    cancelledQuantity: Number(row['cancelled_quantity']),
  };
}

/** Waits until the replica shows at least `version` of the product, then returns its totals. */
export async function replicaTotals(
  infra: Infrastructure,
  productId: number,
  version: number,
  timeoutMs = 10_000,
): Promise<Totals> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const seen = await totals(infra.mysql.replica, productId).catch(() => undefined);
    if (seen !== undefined && seen.version >= version) return seen;
    if (Date.now() > until)
      throw new Error(`replica did not reach version ${version} of product ${productId} in ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
