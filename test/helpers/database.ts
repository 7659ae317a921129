import mysql from 'mysql2/promise';
import type { Test } from 'tap';
import { socketPath } from '../../scripts/stack/mariadb.js';
import { loadConfig, type MysqlEndpoint } from '../../src/config.js';
import { uniq } from './app.js';

/**
 * A database of its own on the primary (the replica follows by replication), for the app user: the app
 * user may not create databases, so root (unix-socket auth over the stack's socket) creates it, grants
 * it, and drops it at teardown. App processes that resume sagas need one: a node resumes every unfinished
 * saga of the database it owns shards of, and other tests' sagas are not its to finish.
 */
export async function throwawayDatabase(
  t: Test,
  label = 'db',
): Promise<{ endpoint: MysqlEndpoint; env: Record<string, string> }> {
  const config = loadConfig({ LOG_LEVEL: 'silent' });
  const database = `flashsale_${label}_${uniq('')}`;
  const root = await mysql.createConnection({ socketPath: socketPath('primary'), user: 'root' });
  const grantees = ['127.0.0.1', 'localhost'].map((host) => `'${config.mysql.primary.user}'@'${host}'`);
  t.teardown(async () => {
    await root.query(`DROP DATABASE IF EXISTS \`${database}\``);
    for (const grantee of grantees)
      await root.query(`REVOKE ALL PRIVILEGES ON \`${database}\`.* FROM ${grantee}`).catch(() => undefined);
    await root.end();
  });
  await root.query(`CREATE DATABASE \`${database}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
  for (const grantee of grantees) await root.query(`GRANT ALL PRIVILEGES ON \`${database}\`.* TO ${grantee}`);
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
    env: { MYSQL_PRIMARY_URL: url(config.mysql.primary), MYSQL_REPLICA_URL: url(config.mysql.replica) },
  };
}
