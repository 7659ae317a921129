// MariaDB primary and replica: datadir init, start from docker/mariadb/*.cnf with TLS required, users
// (least privilege), the schema, GTID replication over TLS.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { MysqlEndpoint } from '../../src/config.js';
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
  const [header, ...lines] = stdout.split('\n').filter((line) => line !== '');
  if (header === undefined) return [];
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
  `REVOKE ALL PRIVILEGES, GRANT OPTION FROM ${[...APP_ACCOUNTS, MIGRATION_ACCOUNT, REPLICATION_ACCOUNT].join(', ')}`,
  ...[APP_ACCOUNTS[0], MIGRATION_ACCOUNT, REPLICATION_ACCOUNT].map(
    (account) => `ALTER USER ${account} REQUIRE SSL`,
  ),
  `GRANT SELECT, INSERT, UPDATE, DELETE ON ${STACK_MYSQL.database}.* TO ${APP_ACCOUNTS.join(', ')}`,
  `GRANT ALL PRIVILEGES ON ${STACK_MYSQL.database}.* TO ${MIGRATION_ACCOUNT}`,
  `GRANT REPLICATION SLAVE ON *.* TO ${REPLICATION_ACCOUNT}`,
  `CREATE DATABASE IF NOT EXISTS ${STACK_MYSQL.database} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`,
].join(';\n');
/** The bootstrap a datadir last ran, by checksum: a changed bootstrap runs again on the next `up`. */
const BOOTSTRAP_MARKER = path.join(serverPaths('primary').dataDir, 'stack-bootstrap.sha256');
const BOOTSTRAP_SHA256 = createHash('sha256').update(PRIMARY_BOOTSTRAP).digest('hex');

/** The local stack's schema owner, over TLS: how the stack (and tests that make tables) reach the primary. */
export const STACK_MIGRATION_ENDPOINT: Readonly<MysqlEndpoint> = Object.freeze({
  host: TCP_HOST,
  port: STACK_PORTS.primary,
  user: STACK_MYSQL.migrationUser,
  password: STACK_MYSQL.migrationPassword,
  database: STACK_MYSQL.database,
  tls: Object.freeze({ caFile: STACK_TLS.ca }),
});

async function bootstrapPrimary(): Promise<void> {
  const [row] = await rootQuery(
    'primary',
    `SELECT COUNT(*) AS n FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '${STACK_MYSQL.database}'`,
  );
  const ranBefore = fs.existsSync(BOOTSTRAP_MARKER) && fs.readFileSync(BOOTSTRAP_MARKER, 'utf8').trim();
  if (row?.n !== '1' || ranBefore !== BOOTSTRAP_SHA256) {
    await rootQuery('primary', PRIMARY_BOOTSTRAP);
    fs.writeFileSync(BOOTSTRAP_MARKER, `${BOOTSTRAP_SHA256}\n`);
  }
  // The schema too, as the app nodes apply it at start (src/storage/migrate.ts, as the migration user):
  // test files that only read it find it, whichever runs first. A broken migration is reported, not fatal.
  try {
    const result = await migrate(STACK_MIGRATION_ENDPOINT);
    if (result.applied.length > 0)
      console.log(`stack: primary: applied migrations ${result.applied.map((m) => m.version).join(', ')}`);
  } catch (error) {
    console.error(
      `stack: primary: schema migrations failed (the app will fail the same way): ${String(error)}`,
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
}

export async function replicationStatus(): Promise<ReplicationStatus | null> {
  const [status] = await rootQuery('replica', 'SHOW SLAVE STATUS');
  if (status === undefined) return null;
  const [gtid] = await rootQuery('replica', 'SELECT @@gtid_slave_pos AS gtid');
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
  };
}

const REPLICATION_TLS = `MASTER_SSL=1, MASTER_SSL_CA='${STACK_TLS.ca}', MASTER_SSL_VERIFY_SERVER_CERT=1`;

async function startReplication(): Promise<void> {
  const current = await replicationStatus();
  const tlsCurrent = current?.ssl === true && current.sslCa === STACK_TLS.ca;
  if (current?.ioThread === 'Yes' && current.sqlThread === 'Yes' && tlsCurrent) return;
  if (current === null) {
    await rootQuery(
      'replica',
      `CHANGE MASTER TO MASTER_HOST='${STACK_HOST}', MASTER_PORT=${STACK_PORTS.primary}, ` +
        `MASTER_USER='${STACK_MYSQL.replicationUser}', MASTER_PASSWORD='${STACK_MYSQL.replicationPassword}', ` +
        `MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, ${REPLICATION_TLS}`,
    );
  } else if (!tlsCurrent) {
    // Set up by an older stack without TLS: the primary now refuses it. Same position (GTID), now over TLS.
    await rootQuery('replica', `STOP SLAVE; CHANGE MASTER TO ${REPLICATION_TLS}`);
  }
  await rootQuery('replica', 'START SLAVE');
  let last: ReplicationStatus | null = null;
  try {
    await waitUntil(
      async () => {
        last = await replicationStatus();
        return last?.ioThread === 'Yes' && last.sqlThread === 'Yes';
      },
      { what: 'replica replication', timeoutMs: REPLICATION_TIMEOUT_MS },
    );
  } catch (error) {
    throw new StackError(`${(error as Error).message}; last SHOW SLAVE STATUS: ${JSON.stringify(last)}`);
  }
}

function mariadbServer(role: Role): ServerSpec {
  const paths = serverPaths(role);
  const port = STACK_PORTS[role];
  const spec: ServerSpec = {
    name: role,
    ...paths,
    port,
    ports: [port],
    dependsOn: role === 'replica' ? ['primary'] : [],
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
    configure: role === 'primary' ? bootstrapPrimary : startReplication,
    details: async () => {
      if (role === 'replica') return { replication: await replicationStatus() };
      const [row] = await rootQuery('primary', 'SELECT @@gtid_binlog_pos AS gtid');
      return { gtid: row?.gtid ?? '' };
    },
  };
  return spec;
}

export const primary = mariadbServer('primary');
export const replica = mariadbServer('replica');
