// MariaDB primary and replica: datadir init, start from docker/mariadb/*.cnf, users, GTID replication.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { DOCKER_DIR, LOG_DIR, RUN_DIR, STACK_HOST, STACK_MYSQL, STACK_PORTS, serverPaths } from './layout.js';
import { StackError, waitUntil } from './process.js';
import type { ServerSpec } from './server.js';

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

// CREATE DATABASE last: when the schema exists, every statement before it has run.
const PRIMARY_BOOTSTRAP = [
  ...['127.0.0.1', 'localhost'].flatMap((host) => [
    `CREATE USER IF NOT EXISTS '${STACK_MYSQL.user}'@'${host}' IDENTIFIED BY '${STACK_MYSQL.password}'`,
    `GRANT ALL ON ${STACK_MYSQL.database}.* TO '${STACK_MYSQL.user}'@'${host}'`,
    `GRANT REPLICATION CLIENT, SLAVE MONITOR ON *.* TO '${STACK_MYSQL.user}'@'${host}'`,
  ]),
  `CREATE USER IF NOT EXISTS '${STACK_MYSQL.replicationUser}'@'${STACK_HOST}' IDENTIFIED BY '${STACK_MYSQL.replicationPassword}'`,
  `GRANT REPLICATION SLAVE ON *.* TO '${STACK_MYSQL.replicationUser}'@'${STACK_HOST}'`,
  `CREATE DATABASE IF NOT EXISTS ${STACK_MYSQL.database} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`,
].join(';\n');

async function bootstrapPrimary(): Promise<void> {
  const [row] = await rootQuery(
    'primary',
    `SELECT COUNT(*) AS n FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '${STACK_MYSQL.database}'`,
  );
  if (row?.n !== '1') await rootQuery('primary', PRIMARY_BOOTSTRAP);
}

export interface ReplicationStatus {
  readonly ioThread: string;
  readonly sqlThread: string;
  readonly secondsBehind: number | null;
  /** GTID position the replica has applied (`@@gtid_slave_pos`). */
  readonly gtid: string;
  readonly lastError: string | null;
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
  };
}

async function startReplication(): Promise<void> {
  const current = await replicationStatus();
  if (current?.ioThread === 'Yes' && current.sqlThread === 'Yes') return;
  if (current === null) {
    await rootQuery(
      'replica',
      `CHANGE MASTER TO MASTER_HOST='${STACK_HOST}', MASTER_PORT=${STACK_PORTS.primary}, ` +
        `MASTER_USER='${STACK_MYSQL.replicationUser}', MASTER_PASSWORD='${STACK_MYSQL.replicationPassword}', ` +
        'MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1',
    );
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
  return {
    name: role,
    ...paths,
    port,
    ports: [port],
    dependsOn: role === 'replica' ? ['primary'] : [],
    startTimeoutMs: 60_000,
    stopTimeoutMs: 60_000,
    executable: 'mariadbd',
    prepare: () => initDatadir(role, paths.dataDir, paths.logFile),
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
}

export const primary = mariadbServer('primary');
export const replica = mariadbServer('replica');
