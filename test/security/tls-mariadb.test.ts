// MariaDB in the local stack as in production: TLS required on every TCP connection (primary and
// replica), the replica follows the primary over TLS with the primary's certificate verified, the app's
// user has data rights only (no DDL), the schema owner has DDL, and clients verify the server's certificate.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mysql, { type RowDataPacket } from 'mysql2/promise';
import t, { type Test } from 'tap';
import { STACK_TLS } from '../../scripts/stack/layout.js';
import { rootQuery, socketPath } from '../../scripts/stack/mariadb.js';
import { STACK_HOST, STACK_MYSQL, STACK_PORTS } from '../../scripts/stack/stack.js';
import { loadConfig, type MysqlEndpoint } from '../../src/config.js';
import { createMysqlPools, mysqlSsl } from '../../src/storage/mysql.js';
import { uniq } from '../helpers/isolation.js';

const execFileAsync = promisify(execFile);
const config = loadConfig({ LOG_LEVEL: 'silent' });
const SERVERS = [
  ['primary', STACK_PORTS.primary],
  ['replica', STACK_PORTS.replica],
] as const;

async function connect(t: Test, endpoint: MysqlEndpoint): Promise<mysql.Connection> {
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

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  for (const until = Date.now() + timeoutMs; !(await check().catch(() => false));) {
    if (Date.now() > until) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

void t.test(
  'both servers require TLS on TCP: a client without it is refused, with it admitted',
  async (t) => {
    // An account without REQUIRE SSL of its own, so only the server's require_secure_transport can refuse it.
    const user = uniq('tls_probe_').slice(0, 32);
    const password = uniq('pw');
    await rootQuery('primary', `CREATE USER '${user}'@'${STACK_HOST}' IDENTIFIED BY '${password}'`);
    t.teardown(() => rootQuery('primary', `DROP USER IF EXISTS '${user}'@'${STACK_HOST}'`));
    for (const [name, port] of SERVERS) {
      const [row] = await rootQuery(name, 'SELECT @@require_secure_transport AS required, @@have_ssl AS tls');
      t.same(row, { required: '1', tls: 'YES' }, `${name}: require_secure_transport=ON, TLS available`);
      const plain = { host: STACK_HOST, port, user, password, connectTimeout: 2_000 };
      if (name === 'replica') {
        // The account arrives by replication.
        await waitFor('the probe user on the replica', () =>
          mysql.createConnection({ ...plain, ssl: mysqlSsl(config.mysql.replica) }).then(async (conn) => {
            await conn.end();
            return true;
          }),
        );
      }
      await t.rejects(
        mysql.createConnection(plain),
        { code: 'ER_ACCESS_DENIED_ERROR' },
        `${name}: mysql2 without TLS, right password: refused`,
      );
      const conn = await mysql.createConnection({ ...plain, ssl: mysqlSsl(config.mysql.primary) });
      const [[cipher]] = await conn.query<RowDataPacket[]>("SHOW SESSION STATUS LIKE 'Ssl_cipher'");
      await conn.end();
      t.not(cipher?.['Value'] ?? '', '', `${name}: with TLS admitted, cipher ${String(cipher?.['Value'])}`);
    }
  },
);

void t.test('the mariadb CLI with --skip-ssl is refused by primary and replica', async (t) => {
  for (const [name, port] of SERVERS) {
    const args = ['--no-defaults', '--skip-ssl', `-h${STACK_HOST}`, `-P${port}`];
    const credentials = [`-u${STACK_MYSQL.user}`, `-p${STACK_MYSQL.password}`, '-e', 'SELECT 1'];
    const refused = await execFileAsync('mariadb', [...args, ...credentials]).then(
      () => '',
      (error: { stderr?: string }) => error.stderr ?? 'refused',
    );
    t.match(refused, /ERROR 1045|insecure transport/, `${name}: mariadb --skip-ssl: ${refused.trim()}`);
    const admitted = await execFileAsync('mariadb', [
      ...args.filter((arg) => arg !== '--skip-ssl'),
      '--ssl',
      `--ssl-ca=${STACK_TLS.ca}`,
      '--ssl-verify-server-cert',
      ...credentials,
    ]);
    t.match(admitted.stdout, /^1$/m, `${name}: mariadb --ssl --ssl-verify-server-cert: admitted`);
  }
});

void t.test("the stack's root reaches both servers over the unix socket (it counts as secure)", async (t) => {
  for (const [name] of SERVERS) {
    const conn = await mysql.createConnection({ socketPath: socketPath(name), user: 'root' });
    const [[row]] = await conn.query<RowDataPacket[]>('SELECT 1 AS ok');
    await conn.end();
    t.equal(row?.['ok'], 1, `${name}: root over ${socketPath(name)}`);
  }
});

void t.test("the app's user reads and writes data but cannot change the schema", async (t) => {
  const app = await connect(t, config.mysql.primary);
  const [[count]] = await app.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM products');
  t.type(Number(count?.['n']), 'number', 'SELECT works');
  const table = uniq('tls_ddl_');
  for (const sql of [
    `CREATE TABLE ${table} (id INT PRIMARY KEY)`,
    'DROP TABLE schema_migrations',
    'ALTER TABLE products ADD COLUMN hacked INT',
    'TRUNCATE TABLE outbox',
    'CREATE INDEX hacked ON products (name)',
  ]) {
    await t.rejects(app.query(sql), { code: 'ER_TABLEACCESS_DENIED_ERROR' }, `refused: ${sql}`);
  }
  await t.rejects(app.query(`CREATE DATABASE ${table}`), { code: 'ER_DBACCESS_DENIED_ERROR' });
  await t.rejects(
    app.query(`GRANT SELECT ON flashsale.* TO '${STACK_MYSQL.replicationUser}'@'${STACK_HOST}'`),
    {
      code: /ER_(DBACCESS|TABLEACCESS|ACCESS)_DENIED_ERROR|ER_SPECIFIC_ACCESS_DENIED_ERROR/,
    },
  );
  const [grants] = await app.query<RowDataPacket[]>('SHOW GRANTS');
  const text = grants.map((row) => String(Object.values(row)[0])).join('\n');
  t.match(text, /GRANT SELECT, INSERT, UPDATE, DELETE ON `flashsale`\.\*/, text);
  t.notMatch(text, /ALL PRIVILEGES|CREATE|DROP|ALTER/, 'no DDL right at any level');
  t.match(text, /REQUIRE SSL/, 'the account itself requires TLS');

  await t.test('the migration user can', async (t) => {
    const owner = await connect(t, config.mysql.migration);
    await owner.query(`CREATE TABLE ${table} (id INT PRIMARY KEY)`);
    await owner.query(`DROP TABLE ${table}`);
    t.pass(`${config.mysql.migration.user} created and dropped ${table}`);
  });
});

void t.test('the replica follows the primary over TLS, verifying its certificate', async (t) => {
  const [status] = await rootQuery('replica', 'SHOW SLAVE STATUS');
  t.match(
    status,
    {
      Slave_IO_Running: 'Yes',
      Slave_SQL_Running: 'Yes',
      Master_SSL_Allowed: 'Yes',
      Master_SSL_Verify_Server_Cert: 'Yes',
      Master_SSL_CA_File: STACK_TLS.ca,
      Master_User: STACK_MYSQL.replicationUser,
      Last_IO_Error: '',
    },
    'SHOW SLAVE STATUS: running, Master_SSL_Allowed=Yes, server certificate verified',
  );
  const [grants] = await rootQuery(
    'primary',
    `SHOW GRANTS FOR '${STACK_MYSQL.replicationUser}'@'${STACK_HOST}'`,
  );
  t.match(
    Object.values(grants ?? {})[0],
    /REPLICATION SLAVE.*REQUIRE SSL/,
    'the replication account requires TLS',
  );
});

void t.test("the app's clients verify the server's certificate and need their CA file", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flashsale-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const foreignCa = join(dir, 'foreign-ca.pem');
  await execFileAsync('openssl', [
    ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=someone else'],
    ...['-keyout', join(dir, 'foreign-ca.key'), '-out', foreignCa],
  ]);
  const foreign = loadConfig({ LOG_LEVEL: 'silent', MYSQL_TLS_CA_FILE: foreignCa });
  await t.rejects(
    mysql.createConnection({
      host: foreign.mysql.primary.host,
      port: foreign.mysql.primary.port,
      user: foreign.mysql.primary.user,
      password: foreign.mysql.primary.password,
      ssl: mysqlSsl(foreign.mysql.primary),
    }),
    { message: /self.signed|unable to verify|certificate/i },
    'a server whose certificate the configured CA did not sign is refused',
  );

  const missing = loadConfig({ LOG_LEVEL: 'silent', MYSQL_TLS_CA_FILE: join(dir, 'nowhere.pem') });
  t.throws(
    () => createMysqlPools(missing),
    { message: /^MYSQL_TLS_CA_FILE=.*nowhere\.pem.*no such file.*MYSQL_TLS=off/ },
    'a missing CA file is an error naming the setting',
  );

  const pools = createMysqlPools(config);
  t.teardown(() => pools.close());
  for (const [name, pool] of [
    ['primary', pools.primary],
    ['replica', pools.replica],
  ] as const) {
    const [[row]] = await pool.query<RowDataPacket[]>("SHOW SESSION STATUS LIKE 'Ssl_version'");
    t.match(
      String(row?.['Value']),
      /^TLSv1\.[23]$/,
      `the app's ${name} pool speaks ${String(row?.['Value'])}`,
    );
  }
});
