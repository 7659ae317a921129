// MariaDB: two servers, `primary` and `replica` by their first roles (a failover swaps them), started from
// docker/mariadb/*.cnf with TLS required, read-only until opened, semi-synchronous GTID replication over
// TLS. The elected primary (the failover manager's record, scripts/stack/db-failover.ts) is opened for
// writes and bootstrapped (users with least privilege, the schema); the other is seeded from a dump of it
// and replicates from it.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { MysqlEndpoint } from '../../src/config.js';
import { HEARTBEAT_S } from '../../src/db-failover/manager.js';
import { migrate } from '../../src/storage/migrate.js';
import {
  DOCKER_DIR,
  LOG_DIR,
  RUN_DIR,
  STACK_HOST,
  STACK_MYSQL,
  STACK_PORTS,
  STACK_TLS,
  serverPaths,
} from './layout.js';
import { StackError, waitUntil } from './process.js';
import { argumentsChanged, type ServerSpec } from './server.js';
import { ensureTls, olderThanCertificate } from './tls.js';

const execFileAsync = promisify(execFile);
const REPLICATION_TIMEOUT_MS = 30_000;

type Row = Record<string, string>;
type Role = 'primary' | 'replica';

export function socketPath(role: Role): string {
  return path.join(RUN_DIR, `${role}.sock`);
}

/** Runs SQL as root over the server's unix socket with the `mariadb` CLI; returns the rows of the last result. */
export async function rootQuery(role: Role, sql: string): Promise<Row[]> {
  const args = [
    '--no-defaults',
    '--protocol=socket',
    `--socket=${socketPath(role)}`,
    '--user=root',
    '--batch',
    '--connect-timeout=2',
    '--execute',
    sql,
  ];
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync('mariadb', args, { timeout: 15_000 }));
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new StackError(
      `${role}: ${stderr !== undefined && stderr !== '' ? stderr : (error as Error).message}`,
    );
  }
  // One line per row after the header; a row of one empty value is an empty line, so only the final
  // newline is dropped (and the empty output of a statement without a result).
  if (stdout === '') return [];
  const [header, ...lines] = stdout.replace(/\n$/, '').split('\n');
  if (header === undefined || header === '') return [];
  const columns = header.split('\t');
  return lines.map((line) => {
    const values = line.split('\t');
    return Object.fromEntries(columns.map((column, i) => [column, values[i] ?? '']));
  });
}

async function initDatadir(role: Role, dataDir: string, logFile: string): Promise<void> {
  if (fs.existsSync(path.join(dataDir, 'mysql'))) return;
  // Installed beside, then renamed: an interrupted install never leaves a half-made datadir behind.
  const staging = `${dataDir}.installing`;
  fs.rmSync(staging, { recursive: true, force: true });
  fs.mkdirSync(LOG_DIR, { recursive: true });
  try {
    const args = [
      '--no-defaults',
      `--datadir=${staging}`,
      '--auth-root-authentication-method=socket',
      '--skip-test-db',
      '--user=root',
    ];
    const { stdout, stderr } = await execFileAsync('mariadb-install-db', args, { timeout: 120_000 });
    fs.appendFileSync(logFile, stdout + stderr);
  } catch (error) {
    const output = `${(error as { stdout?: string }).stdout ?? ''}${(error as { stderr?: string }).stderr ?? ''}`;
    fs.appendFileSync(logFile, output);
    throw new StackError(
      `${role}: mariadb-install-db failed: ${(error as Error).message}\n${output.trim().split('\n').slice(-15).join('\n')}`,
    );
  }
  fs.renameSync(staging, dataDir);
}

const TCP_HOST = STACK_HOST;
const APP_ACCOUNTS = [`'${STACK_MYSQL.user}'@'${TCP_HOST}'`, `'${STACK_MYSQL.user}'@'localhost'`];
const MIGRATION_ACCOUNT = `'${STACK_MYSQL.migrationUser}'@'${TCP_HOST}'`;
const REPLICATION_ACCOUNT = `'${STACK_MYSQL.replicationUser}'@'${TCP_HOST}'`;
const ADMIN_ACCOUNT = `'${STACK_MYSQL.adminUser}'@'${TCP_HOST}'`;

/**
 * Users and grants, idempotent, and an upgrade of what older stacks made (the app user had ALL on the
 * database): every grant is revoked and given again. The app may read and write data, nothing else (no
 * DDL: migrations run as the migration user); TCP accounts must use TLS (`REQUIRE SSL`, besides the
 * server's require_secure_transport); `localhost` (the unix socket) is the app user's only other door.
 * CREATE DATABASE last: when the schema exists, every statement before it has run.
 */
const PRIMARY_BOOTSTRAP = [
  ...APP_ACCOUNTS.map(
    (account) => `CREATE USER IF NOT EXISTS ${account} IDENTIFIED BY '${STACK_MYSQL.password}'`,
  ),
  `CREATE USER IF NOT EXISTS ${MIGRATION_ACCOUNT} IDENTIFIED BY '${STACK_MYSQL.migrationPassword}'`,
  `CREATE USER IF NOT EXISTS ${REPLICATION_ACCOUNT} IDENTIFIED BY '${STACK_MYSQL.replicationPassword}'`,
  `CREATE USER IF NOT EXISTS ${ADMIN_ACCOUNT} IDENTIFIED BY '${STACK_MYSQL.adminPassword}'`,
  `REVOKE ALL PRIVILEGES, GRANT OPTION FROM ${[...APP_ACCOUNTS, MIGRATION_ACCOUNT, REPLICATION_ACCOUNT, ADMIN_ACCOUNT].join(', ')}`,
  ...[APP_ACCOUNTS[0], MIGRATION_ACCOUNT, REPLICATION_ACCOUNT, ADMIN_ACCOUNT].map(
    (account) => `ALTER USER ${account} REQUIRE SSL`,
  ),
  `GRANT SELECT, INSERT, UPDATE, DELETE ON ${STACK_MYSQL.database}.* TO ${APP_ACCOUNTS.join(', ')}`,
  // SHOW SLAVE STATUS: a node tells a replica that replicates from one that does not (src/storage/mysql.ts).
  `GRANT SLAVE MONITOR ON *.* TO ${APP_ACCOUNTS.join(', ')}`,
  // The failover manager's: open or fence a server, kill its clients, promote a replica, point one at a primary.
  `GRANT RELOAD, PROCESS, SUPER, BINLOG MONITOR, CONNECTION ADMIN, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, ` +
    `REPLICATION MASTER ADMIN, SLAVE MONITOR ON *.* TO ${ADMIN_ACCOUNT}`,
  `GRANT ALL PRIVILEGES ON ${STACK_MYSQL.database}.* TO ${MIGRATION_ACCOUNT}`,
  `GRANT REPLICATION SLAVE ON *.* TO ${REPLICATION_ACCOUNT}`,
  `CREATE DATABASE IF NOT EXISTS ${STACK_MYSQL.database} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`,
].join(';\n');
/** The bootstrap a datadir last ran, by checksum: a changed bootstrap runs again on the next `up`. */
const bootstrapMarker = (role: Role): string =>
  path.join(serverPaths(role).dataDir, 'stack-bootstrap.sha256');
const BOOTSTRAP_SHA256 = createHash('sha256').update(PRIMARY_BOOTSTRAP).digest('hex');

/** The two servers; `other` of one is the other one. */
export const MARIADB_SERVERS: readonly Role[] = ['primary', 'replica'];
const other = (role: Role): Role => (role === 'primary' ? 'replica' : 'primary');

/**
 * Where the failover manager records the elected primary (a server name): the stack opens that one and
 * makes the other its replica. Missing: `primary`, a new stack.
 */
export const ELECTED_PRIMARY_FILE = path.join(serverPaths('db-failover').dataDir, 'primary');

export function electedPrimary(): Role {
  const name = fs.existsSync(ELECTED_PRIMARY_FILE)
    ? fs.readFileSync(ELECTED_PRIMARY_FILE, 'utf8').trim()
    : '';
  return name === 'replica' ? 'replica' : 'primary';
}

export async function isWritable(role: Role): Promise<boolean> {
  const [row] = await rootQuery(role, 'SELECT @@global.read_only AS ro');
  return row?.ro === '0';
}

/** The local stack's schema owner, over TLS: how the stack (and tests that make tables) reach the primary. */
export const STACK_MIGRATION_ENDPOINT: Readonly<MysqlEndpoint> = Object.freeze({
  host: TCP_HOST,
  port: STACK_PORTS.primary,
  user: STACK_MYSQL.migrationUser,
  password: STACK_MYSQL.migrationPassword,
  database: STACK_MYSQL.database,
  tls: Object.freeze({ caFile: STACK_TLS.ca }),
});

/**
 * The elected primary: opened for writes (unless the other server is writable: the failover manager
 * settles that), then its users and schema. The stack's own opening is for a new or restarted stack; a
 * running manager does the same on its own.
 */
async function bootstrapPrimary(role: Role): Promise<void> {
  if (!(await isWritable(other(role)).catch(() => false))) await rootQuery(role, 'SET GLOBAL read_only = 0');
  const [row] = await rootQuery(
    role,
    `SELECT COUNT(*) AS n FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '${STACK_MYSQL.database}'`,
  );
  const marker = bootstrapMarker(role);
  const ranBefore = fs.existsSync(marker) && fs.readFileSync(marker, 'utf8').trim();
  if (row?.n !== '1' || ranBefore !== BOOTSTRAP_SHA256) {
    await rootQuery(role, PRIMARY_BOOTSTRAP);
    fs.writeFileSync(marker, `${BOOTSTRAP_SHA256}\n`);
  }
  // The schema too, as the app nodes apply it at start (src/storage/migrate.ts, as the migration user):
  // test files that only read it find it, whichever runs first. A broken migration is reported, not fatal.
  try {
    const result = await migrate({ ...STACK_MIGRATION_ENDPOINT, port: STACK_PORTS[role] });
    if (result.applied.length > 0)
      console.log(`stack: ${role}: applied migrations ${result.applied.map((m) => m.version).join(', ')}`);
  } catch (error) {
    console.error(
      `stack: ${role}: schema migrations failed (the app will fail the same way): ${String(error)}`,
    );
  }
}

export interface ReplicationStatus {
  readonly ioThread: string;
  readonly sqlThread: string;
  readonly secondsBehind: number | null;
  /** GTID position the replica has applied (`@@gtid_slave_pos`). */
  readonly gtid: string;
  readonly lastError: string | null;
  /** The replica connects over TLS and verifies the primary's certificate against `sslCa`. */
  readonly ssl: boolean;
  readonly sslCa: string;
  /** The port of the server it replicates from. */
  readonly masterPort: number;
}

/** SHOW SLAVE STATUS of `role` (by default the server named replica); null when it replicates from nobody. */
export async function replicationStatus(role: Role = 'replica'): Promise<ReplicationStatus | null> {
  const [status] = await rootQuery(role, 'SHOW SLAVE STATUS');
  if (status === undefined) return null;
  const [gtid] = await rootQuery(role, 'SELECT @@gtid_slave_pos AS gtid');
  const behind = status.Seconds_Behind_Master;
  const lastError = [status.Last_IO_Error, status.Last_SQL_Error]
    .filter((e) => e !== undefined && e !== '')
    .join('; ');
  return {
    ioThread: status.Slave_IO_Running ?? 'No',
    sqlThread: status.Slave_SQL_Running ?? 'No',
    secondsBehind: behind === undefined || behind === 'NULL' ? null : Number(behind),
    gtid: gtid?.gtid ?? '',
    lastError: lastError === '' ? null : lastError,
    ssl: status.Master_SSL_Allowed === 'Yes' && status.Master_SSL_Verify_Server_Cert === 'Yes',
    sslCa: status.Master_SSL_CA_File ?? '',
    masterPort: Number(status.Master_Port),
  };
}

const REPLICATION_TLS = `MASTER_SSL=1, MASTER_SSL_CA='${STACK_TLS.ca}', MASTER_SSL_VERIFY_SERVER_CERT=1`;

/** CHANGE MASTER to the elected primary `source`, from the GTID position `role` has (slave_pos). */
export function changeMasterSql(source: Role): string {
  return (
    `CHANGE MASTER TO MASTER_HOST='${STACK_HOST}', MASTER_PORT=${STACK_PORTS[source]}, ` +
    `MASTER_USER='${STACK_MYSQL.replicationUser}', MASTER_PASSWORD='${STACK_MYSQL.replicationPassword}', ` +
    `MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=${HEARTBEAT_S}, ${REPLICATION_TLS}`
  );
}

async function waitReplicating(role: Role): Promise<void> {
  let last: ReplicationStatus | null = null;
  try {
    await waitUntil(
      async () => {
        last = await replicationStatus(role);
        return last?.ioThread === 'Yes' && last.sqlThread === 'Yes';
      },
      { what: `${role} replication`, timeoutMs: REPLICATION_TIMEOUT_MS },
    );
  } catch (error) {
    throw new StackError(`${(error as Error).message}; last SHOW SLAVE STATUS: ${JSON.stringify(last)}`);
  }
}

/**
 * `replica` follows `primary` and has applied all, and `primary` has its semi-sync acknowledgements again.
 * `idle`: no writes are coming, so the primary turns semi-sync back on only at the next acknowledged
 * commit; the replica having applied everything the primary logged is the test then.
 */
export async function waitMariadbInSync(
  primary: Role,
  replica: Role,
  { idle = false, timeoutMs = 90_000 }: { idle?: boolean; timeoutMs?: number } = {},
): Promise<void> {
  let seen = 'nothing read yet';
  const inSync = async (): Promise<boolean> => {
    const status = await replicationStatus(replica);
    seen = `${replica}: io ${status?.ioThread}, sql ${status?.sqlThread}, behind ${status?.secondsBehind}, error ${status?.lastError}`;
    if (status?.ioThread !== 'Yes' || status.sqlThread !== 'Yes' || status.secondsBehind !== 0) return false;
    const rows = await rootQuery(
      primary,
      "SHOW STATUS WHERE Variable_name IN ('Rpl_semi_sync_master_status', 'Rpl_semi_sync_master_clients')",
    );
    const value = (name: string) => rows.find((r) => r.Variable_name === name)?.Value;
    seen += `; ${primary}: semi-sync ${value('Rpl_semi_sync_master_status')}, clients ${value('Rpl_semi_sync_master_clients')}`;
    if (Number(value('Rpl_semi_sync_master_clients')) === 0) return false;
    if (!idle) return value('Rpl_semi_sync_master_status') === 'ON';
    // current_pos on both: what a server applied as a replica (slave_pos), or its own binlog where that is
    // later; a freshly seeded server's binlog is empty until the next write, whichever role it has since.
    const [logged] = await rootQuery(primary, 'SELECT @@global.gtid_current_pos AS g');
    const [applied] = await rootQuery(replica, 'SELECT @@global.gtid_current_pos AS g');
    seen += `; logged ${logged?.g}, applied ${applied?.g}`;
    return logged?.g === applied?.g;
  };
  await waitUntil(inSync, { what: `MariaDB ${replica} in sync with ${primary}`, timeoutMs }).catch(
    (error: unknown) => {
      throw new StackError(`${(error as Error).message} (last: ${seen})`);
    },
  );
}

/** Databases a seed copies: every one but the server's own (users come from the bootstrap). */
const SYSTEM_DATABASES = new Set(['mysql', 'information_schema', 'performance_schema', 'sys']);

/** Runs `from | to`: resolves when both exit 0; rejects with the failing one's stderr. */
function pipe(from: { file: string; args: string[] }, to: { file: string; args: string[] }): Promise<void> {
  return new Promise((resolve, reject) => {
    const producer = spawn(from.file, from.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const consumer = spawn(to.file, to.args, { stdio: ['pipe', 'ignore', 'pipe'] });
    producer.stdout.pipe(consumer.stdin);
    let errors = '';
    producer.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
    consumer.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
    let exited = 0;
    let failed = false;
    const done = (who: string) => (code: number | null) => {
      if (code !== 0 && !failed) {
        failed = true;
        reject(
          new StackError(`${who} exited with ${code}: ${errors.trim().split('\n').slice(-5).join('\n')}`),
        );
      }
      if ((exited += 1) === 2 && !failed) resolve();
    };
    producer.once('exit', done(from.file));
    consumer.once('exit', done(to.file));
  });
}

/**
 * Makes the empty server `role` a replica of `source`: users (the bootstrap, not binlogged), a consistent
 * dump of every database with its GTID position, then replication from that position. Nothing of it goes to
 * `role`'s own binlog, so its GTID history stays the primary's.
 */
async function seedFrom(source: Role, role: Role): Promise<void> {
  await rootQuery(role, `SET SESSION sql_log_bin = 0;\n${PRIMARY_BOOTSTRAP}`);
  const databases = (await rootQuery(source, 'SHOW DATABASES'))
    .map((row) => row.Database ?? '')
    .filter((name) => name !== '' && !SYSTEM_DATABASES.has(name));
  const client = (target: Role) => ['--no-defaults', `--socket=${socketPath(target)}`, '--user=root'];
  await pipe(
    {
      file: 'mariadb-dump',
      args: [
        ...client(source),
        '--single-transaction',
        '--gtid',
        '--master-data=1',
        '--routines',
        '--events',
        '--triggers',
        '--databases',
        ...databases,
      ],
    },
    { file: 'mariadb', args: [...client(role), '--init-command=SET SESSION sql_log_bin = 0'] },
  );
  await rootQuery(role, `${changeMasterSql(source)}; START SLAVE`);
  await waitReplicating(role);
  console.log(`stack: ${role}: seeded from ${source} (${databases.join(', ')}) and replicating from it`);
}

/**
 * A server that is not the elected primary replicates from it. An empty one (a new stack, or a rejoin) is
 * seeded first. One that holds writes of its own and replicates from nobody, or from another server, is an
 * old primary: it stays fenced (read-only) until `npm run stack -- rejoin <server>` rebuilds it.
 */
async function followPrimary(role: Role, source: Role): Promise<void> {
  const current = await replicationStatus(role);
  if (current === null || current.masterPort !== STACK_PORTS[source]) {
    const [own] = await rootQuery(role, 'SELECT @@global.gtid_binlog_pos AS pos');
    if (current === null && own?.pos === '') return seedFrom(source, role);
    console.warn(
      `stack: ${role}: not a replica of the primary (${source}) but holds writes of its own: fenced, read-only; ` +
        `\`npm run stack -- rejoin ${role}\` makes it one`,
    );
    return;
  }
  const tlsCurrent = current.ssl && current.sslCa === STACK_TLS.ca;
  const [heartbeat] = await rootQuery(role, "SHOW STATUS LIKE 'Slave_heartbeat_period'");
  const heartbeatCurrent = Number(heartbeat?.Value) === HEARTBEAT_S;
  if (current.ioThread === 'Yes' && current.sqlThread === 'Yes' && tlsCurrent && heartbeatCurrent) return;
  // Set up by an older stack, without TLS (the primary now refuses it) or with the 30 s heartbeat of a 60 s
  // slave_net_timeout: same position (GTID), now with today's settings.
  if (!tlsCurrent || !heartbeatCurrent)
    await rootQuery(
      role,
      `STOP SLAVE; CHANGE MASTER TO ${REPLICATION_TLS}, MASTER_HEARTBEAT_PERIOD=${HEARTBEAT_S}`,
    );
  await rootQuery(role, 'START SLAVE');
  await waitReplicating(role);
}

/** docker/mariadb/*.cnf's replication settings, for a server started from an older copy of the file. */
const REPLICATION_SETTINGS =
  'SET GLOBAL rpl_semi_sync_master_enabled = ON, rpl_semi_sync_slave_enabled = ON, ' +
  "rpl_semi_sync_master_wait_point = 'AFTER_SYNC', rpl_semi_sync_master_timeout = 2000, slave_net_timeout = 4";

async function configureServer(role: Role): Promise<void> {
  await rootQuery(role, REPLICATION_SETTINGS);
  const elected = electedPrimary();
  if (role === elected) return bootstrapPrimary(role);
  await followPrimary(role, elected);
  // A replica whose IO thread started before semi-sync was on acknowledges nothing until it reconnects.
  const [semi] = await rootQuery(role, "SHOW STATUS LIKE 'Rpl_semi_sync_slave_status'");
  const status = await replicationStatus(role);
  if (semi?.Value === 'OFF' && status?.ioThread === 'Yes' && status.masterPort === STACK_PORTS[elected])
    await rootQuery(role, 'STOP SLAVE IO_THREAD; START SLAVE IO_THREAD');
}

function mariadbServer(role: Role): ServerSpec {
  const paths = serverPaths(role);
  const port = STACK_PORTS[role];
  const spec: ServerSpec = {
    name: role,
    ...paths,
    port,
    ports: [port],
    // The elected primary first: the other is seeded from it and replicates from it. Read at each start,
    // not once: a failover in this process's lifetime (a chaos run's) swaps the order.
    get dependsOn() {
      return role === electedPrimary() ? [] : [other(role)];
    },
    startTimeoutMs: 60_000,
    stopTimeoutMs: 60_000,
    executable: 'mariadbd',
    prepare: async () => {
      await ensureTls();
      await initDatadir(role, paths.dataDir, paths.logFile);
    },
    stale: async (pid, argv) => {
      await ensureTls();
      return argumentsChanged(spec, argv) ?? olderThanCertificate(pid);
    },
    command: () => ({
      file: 'mariadbd',
      // --defaults-file must come first; everything local (paths, port, address) is given here, not in the file.
      args: [
        `--defaults-file=${path.join(DOCKER_DIR, 'mariadb', `${role}.cnf`)}`,
        `--datadir=${paths.dataDir}`,
        `--port=${port}`,
        `--socket=${socketPath(role)}`,
        `--pid-file=${path.join(RUN_DIR, `${role}.mariadbd.pid`)}`,
        `--log-error=${paths.logFile}`,
        `--bind-address=${STACK_HOST}`,
        // TLS on every TCP connection (the unix socket counts as secure: the stack's root uses it).
        `--ssl-ca=${STACK_TLS.ca}`,
        `--ssl-cert=${STACK_TLS.cert}`,
        `--ssl-key=${STACK_TLS.key}`,
        '--require-secure-transport=ON',
        '--user=root',
      ],
    }),
    probe: async () => (await rootQuery(role, 'SELECT 1 AS ok'))[0]?.ok === '1',
    configure: () => configureServer(role),
    details: async () => {
      const [row] = await rootQuery(role, 'SELECT @@global.read_only AS ro, @@gtid_binlog_pos AS gtid');
      const [semi] = await rootQuery(role, "SHOW STATUS LIKE 'Rpl_semi_sync_master_status'");
      const replication = await replicationStatus(role);
      return {
        role: row?.ro === '0' ? 'primary' : replication !== null ? 'replica' : 'fenced',
        gtid: row?.gtid ?? '',
        // On the primary: ON while a replica acknowledges every commit (semi-synchronous), OFF while alone.
        ...(row?.ro === '0' ? { semiSync: semi?.Value === 'ON' } : {}),
        ...(replication !== null ? { replication } : {}),
      };
    },
  };
  return spec;
}

export const primary = mariadbServer('primary');
export const replica = mariadbServer('replica');
