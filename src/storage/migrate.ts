import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import mysql from 'mysql2/promise';
import type { RowDataPacket } from 'mysql2/promise';
import type { MysqlEndpoint } from '../config.js';
import { storageAsset } from './assets.js';
import { poolOptions } from './mysql.js';
import { AppError } from '../errors.js';

/** Folder of `NNN_name.sql` files, applied in version order. */
export const MIGRATIONS_DIR = storageAsset('migrations');

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

export interface MigrationResult {
  applied: Migration[];
  alreadyApplied: number;
}

export async function readMigrations(dir?: string): Promise<Migration[]> {
  const folder = dir ?? MIGRATIONS_DIR;
  const files = (await readdir(folder)).filter((f) => f.endsWith('.sql')).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const match = /^(\d+)_([a-z0-9_]+)\.sql$/.exec(file);
    if (!match) throw new AppError('STARTUP_FAILED', `migration file ${file} is not named NNN_name.sql`);
    const sql = await readFile(`${folder}/${file}`, 'utf8');
    migrations.push({
      version: Number(match[1]),
      name: match[2]!,
      sql,
      checksum: createHash('sha256').update(sql).digest('hex'),
    });
  }
  migrations.sort((a, b) => a.version - b.version);
  const versions = new Set(migrations.map((m) => m.version));
  if (versions.size !== migrations.length)
    throw new AppError('STARTUP_FAILED', `duplicate migration version in ${folder}`);
  return migrations;
}

/** A DDL right refused: says which user tried and which setting names the one that may. */
function explainDenied(endpoint: MysqlEndpoint): (err: Error & { code?: string }) => never {
  return (err) => {
    if (err.code === 'ER_TABLEACCESS_DENIED_ERROR' || err.code === 'ER_DBACCESS_DENIED_ERROR')
      err.message += ` (user ${endpoint.user} may not change the schema: migrations run as MYSQL_MIGRATION_URL's user)`;
    throw err;
  };
}

/** True when every migration is recorded with its checksum: nothing to do, and no DDL right needed. */
async function upToDate(conn: mysql.Connection, all: readonly Migration[]): Promise<boolean> {
  const rows = await conn
    .query<RowDataPacket[]>('SELECT version, checksum FROM schema_migrations')
    .then(([result]) => result)
    .catch((err: { code?: string }) => {
      if (err.code === 'ER_NO_SUCH_TABLE') return [];
      throw err;
    });
  const done = new Map(rows.map((r) => [Number(r['version']), String(r['checksum'])]));
  return all.every((migration) => done.get(migration.version) === migration.checksum);
}

/**
 * Applies pending migrations to the primary, holding a named lock so nodes starting together do not
 * race. A changed checksum of an applied migration is an error: migrations are append-only. `endpoint`
 * must be allowed DDL on its database (config.mysql.migration, MYSQL_MIGRATION_URL) unless the schema is
 * already up to date: then nothing but a read of schema_migrations happens, as the app's own user may do.
 */
export async function migrate(endpoint: MysqlEndpoint, migrations?: Migration[]): Promise<MigrationResult> {
  const all = migrations ?? (await readMigrations());
  const conn = await mysql.createConnection({ ...poolOptions(endpoint, 1), multipleStatements: true });
  if (await upToDate(conn, all).catch(() => false)) {
    await conn.end();
    return { applied: [], alreadyApplied: all.length };
  }
  try {
    const [[lock]] = await conn.query<RowDataPacket[]>("SELECT GET_LOCK('flashsale.migrations', 60) AS got");
    if (lock?.['got'] !== 1)
      throw new AppError('STARTUP_FAILED', 'could not take the migrations lock within 60 s');
    await conn
      .query(
        `CREATE TABLE IF NOT EXISTS schema_migrations (
      version INT UNSIGNED NOT NULL PRIMARY KEY,
      name VARCHAR(200) NOT NULL,
      checksum CHAR(64) CHARACTER SET ascii NOT NULL,
      applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
    ) ENGINE=InnoDB`,
      )
      .catch(explainDenied(endpoint));
    const [rows] = await conn.query<RowDataPacket[]>('SELECT version, name, checksum FROM schema_migrations');
    const done = new Map(rows.map((r) => [Number(r['version']), String(r['checksum'])]));
    const applied: Migration[] = [];
    for (const migration of all) {
      const checksum = done.get(migration.version);
      if (checksum !== undefined) {
        if (checksum !== migration.checksum) {
          throw new AppError(
            'STARTUP_FAILED',
            `migration ${migration.version}_${migration.name} changed after it was applied`,
          );
        }
        continue;
      }
      // DDL commits implicitly in MySQL, so a failed migration is reported, not rolled back.
      await conn.query(migration.sql).catch(explainDenied(endpoint));
      await conn.query('INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)', [
        migration.version,
        migration.name,
        migration.checksum,
      ]);
      applied.push(migration);
    }
    return { applied, alreadyApplied: all.length - applied.length };
  } finally {
    await conn.query("SELECT RELEASE_LOCK('flashsale.migrations')").catch(() => undefined);
    await conn.end();
  }
}
