// The migration runner: file naming and order, idempotence on the real schema, and a throwaway
// database (made as root over the stack's socket) for applying, checksums and replication. Migrations
// run as the migration user (MYSQL_MIGRATION_URL); the app's user may not change the schema.
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import mysql, { type RowDataPacket } from 'mysql2/promise';
import t, { type Test } from 'tap';
import { throwawayDatabase as sharedThrowawayDatabase } from '../helpers/database.js';
import { loadConfig, type MysqlEndpoint } from '../../src/config.js';
import { MIGRATIONS_DIR, migrate, readMigrations } from '../../src/storage/migrate.js';
import { mysqlSsl } from '../../src/storage/mysql.js';
import { uniq } from '../helpers/isolation.js';

const REPLICATION_WAIT_MS = 5_000;
const config = loadConfig({});

/** A temp folder holding `files` (name → SQL), removed at teardown. */
async function migrationsFolder(t: Test, files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'flashsale-migrations-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const [name, sql] of Object.entries(files)) await writeFile(join(dir, name), sql);
  return dir;
}

/** An empty database: `endpoint` is the app's user on it, `migration` the schema owner. */
async function throwawayDatabase(t: Test): Promise<{ endpoint: MysqlEndpoint; migration: MysqlEndpoint }> {
  return sharedThrowawayDatabase(t, 'mig', { schema: false });
}

async function appConnection(t: Test, endpoint: MysqlEndpoint): Promise<mysql.Connection> {
  const { host, port, user, password, database } = endpoint;
  const conn = await mysql.createConnection({
    host,
    port,
    user,
    password,
    database,
    ssl: mysqlSsl(endpoint),
  });
  t.teardown(() => conn.end());
  return conn;
}

void t.test('readMigrations', async (t) => {
  await t.test(
    'reads NNN_name.sql files in version order with a sha256 checksum, ignoring other files',
    async (t) => {
      const dir = await migrationsFolder(t, {
        '002_second.sql': 'SELECT 2;',
        '001_first.sql': 'SELECT 1;',
        'README.md': 'not a migration',
      });
      const migrations = await readMigrations(dir);
      t.same(
        migrations.map((m) => [m.version, m.name, m.sql]),
        [
          [1, 'first', 'SELECT 1;'],
          [2, 'second', 'SELECT 2;'],
        ],
      );
      t.match(migrations[0]?.checksum, /^[0-9a-f]{64}$/);
      t.not(migrations[0]?.checksum, migrations[1]?.checksum);
    },
  );

  await t.test('a badly named file is an error that names it', async (t) => {
    for (const bad of ['create_widgets.sql', '001-widgets.sql', '001_Widgets.sql']) {
      const dir = await migrationsFolder(t, { '001_ok.sql': 'SELECT 1;', [bad]: 'SELECT 2;' });
      await t.rejects(
        readMigrations(dir),
        { message: `migration file ${bad} is not named NNN_name.sql` },
        bad,
      );
    }
  });

  await t.test('two files with one version are an error', async (t) => {
    const dir = await migrationsFolder(t, { '001_a.sql': 'SELECT 1;', '1_b.sql': 'SELECT 2;' });
    await t.rejects(readMigrations(dir), { message: /duplicate migration version/ });
  });

  await t.test('versions are ordered by number, not by file name', async (t) => {
    const dir = await migrationsFolder(t, { '9_nine.sql': 'SELECT 9;', '10_ten.sql': 'SELECT 10;' });
    const versions = (await readMigrations(dir)).map((m) => m.version);
    t.same(versions, [9, 10], 'applied in version order');
  });
});

void t.test('migrate() on the service schema is idempotent', async (t) => {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => f.endsWith('.sql'));
  t.ok(files.length > 0, 'the service has migrations');
  await migrate(config.mysql.migration); // brings a fresh stack up to date; other files may have done it already
  const again = await migrate(config.mysql.migration);
  t.same(again.applied, [], 'the second run applies nothing');
  t.equal(again.alreadyApplied, files.length, 'every migration file counts as already applied');
  const asApp = await migrate(config.mysql.primary);
  t.same(
    asApp,
    { applied: [], alreadyApplied: files.length },
    'an up-to-date schema needs no DDL right: the app user may check it',
  );
});

void t.test('migrate() into a throwaway database', async (t) => {
  const { endpoint: appEndpoint, migration: endpoint } = await throwawayDatabase(t);
  const table = uniq('widgets_');
  const first = {
    '001_create_widgets.sql': `CREATE TABLE ${table} (id INT UNSIGNED NOT NULL PRIMARY KEY, name VARCHAR(64) NOT NULL) ENGINE=InnoDB;`,
    '002_seed_widgets.sql': `INSERT INTO ${table} (id, name) VALUES (1, 'one');\nINSERT INTO ${table} (id, name) VALUES (2, 'two');`,
  };
  const dir = await migrationsFolder(t, first);
  const app = await appConnection(t, appEndpoint);

  await t.rejects(
    migrate(appEndpoint, await readMigrations(dir)),
    { code: 'ER_TABLEACCESS_DENIED_ERROR', message: /MYSQL_MIGRATION_URL/ },
    "the app's user may not apply migrations; the error names the setting of the one who may",
  );
  const applied = await migrate(endpoint, await readMigrations(dir));
  t.same(
    applied.applied.map((m) => `${m.version}_${m.name}`),
    ['1_create_widgets', '2_seed_widgets'],
    'both migrations applied in order',
  );
  t.equal(applied.alreadyApplied, 0);
  const [rows] = await app.query<RowDataPacket[]>(`SELECT COUNT(*) AS n FROM ${table}`);
  t.equal(Number(rows[0]?.['n']), 2, 'a file of several statements ran whole');
  const [recorded] = await app.query<RowDataPacket[]>(
    'SELECT version, name, checksum FROM schema_migrations ORDER BY version',
  );
  t.same(
    recorded.map((r) => ({ version: r['version'], name: r['name'], checksum: r['checksum'] })),
    applied.applied.map((m) => ({ version: m.version, name: m.name, checksum: m.checksum })),
    'each applied migration is recorded with its checksum',
  );

  await t.test('the replica receives the migration', async (t) => {
    const replica = await appConnection(t, { ...config.mysql.replica, database: '' });
    const deadline = Date.now() + REPLICATION_WAIT_MS;
    let count: number | undefined;
    // The CREATE TABLE may arrive before the rows: wait for both.
    while (count !== 2 && Date.now() < deadline) {
      // Until the CREATE TABLE arrives the replica answers "no such table" (or "unknown database").
      count = await replica
        .query<RowDataPacket[]>(`SELECT COUNT(*) AS n FROM \`${endpoint.database}\`.${table}`)
        .then(
          ([result]) => Number(result[0]?.['n']),
          () => undefined,
        );
      if (count !== 2) await sleep(50);
    }
    t.equal(count, 2, `the table and its rows are on the replica within ${REPLICATION_WAIT_MS} ms`);
  });

  const rerun = await migrate(endpoint, await readMigrations(dir));
  t.same(rerun, { applied: [], alreadyApplied: 2 }, 'a second run applies nothing');

  await writeFile(
    join(dir, '003_add_colour.sql'),
    `ALTER TABLE ${table} ADD COLUMN colour VARCHAR(16) NULL;`,
  );
  const third = await migrate(endpoint, await readMigrations(dir));
  t.same(
    third.applied.map((m) => m.version),
    [3],
    'only the new migration is applied',
  );
  t.equal(third.alreadyApplied, 2);

  await writeFile(join(dir, '004_broken.sql'), `INSERT INTO ${table}_missing (id) VALUES (1);`);
  await t.rejects(
    migrate(endpoint, await readMigrations(dir)),
    { code: 'ER_NO_SUCH_TABLE' },
    'a failing migration is reported',
  );
  const [afterFailure] = await app.query<RowDataPacket[]>('SELECT MAX(version) AS v FROM schema_migrations');
  t.equal(Number(afterFailure[0]?.['v']), 3, 'and not recorded as applied');
  await rm(join(dir, '004_broken.sql'));

  await writeFile(join(dir, '001_create_widgets.sql'), `${first['001_create_widgets.sql']}\n-- edited`);
  await t.rejects(
    migrate(endpoint, await readMigrations(dir)),
    { message: 'migration 1_create_widgets changed after it was applied' },
    'a changed checksum of an applied migration is detected',
  );
  // Other test files may hold the lock for a moment while they migrate; held forever would time out here.
  const [[lock]] = await app.query<RowDataPacket[]>("SELECT GET_LOCK('flashsale.migrations', 10) AS got");
  t.equal(lock?.['got'], 1, 'the migrations lock is released after a failure');
  await app.query("SELECT RELEASE_LOCK('flashsale.migrations')");
});
