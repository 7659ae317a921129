// The MariaDB failover manager (src/db-failover): a Node process run through tsx, watching both servers.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { REPO_ROOT, STACK_HOST, STACK_MYSQL, STACK_PORTS, STACK_TLS, serverPaths } from './layout.js';
import { ELECTED_PRIMARY_FILE } from './mariadb.js';
import type { ServerSpec } from './server.js';

const paths = serverPaths('db-failover');
const MAIN = path.join(REPO_ROOT, 'src', 'db-failover', 'main.ts');

/**
 * Every setting, so none leaks in from the caller's environment. A primary unreachable for 5 s is replaced:
 * long enough that a restart or a short pause is not a failover, short enough for the spec's 30 s.
 */
const SETTINGS: Readonly<Record<string, string>> = {
  DB_FAILOVER_SERVERS: `primary=${STACK_HOST}:${STACK_PORTS.primary},replica=${STACK_HOST}:${STACK_PORTS.replica}`,
  DB_FAILOVER_USER: STACK_MYSQL.adminUser,
  DB_FAILOVER_PASSWORD: STACK_MYSQL.adminPassword,
  DB_FAILOVER_REPLICATION_USER: STACK_MYSQL.replicationUser,
  DB_FAILOVER_REPLICATION_PASSWORD: STACK_MYSQL.replicationPassword,
  DB_FAILOVER_TLS_CA_FILE: STACK_TLS.ca,
  DB_FAILOVER_STATE_FILE: ELECTED_PRIMARY_FILE,
  DB_FAILOVER_AFTER_MS: '5000',
  DB_FAILOVER_CHECK_MS: '500',
  DB_FAILOVER_HOST: STACK_HOST,
  DB_FAILOVER_PORT: String(STACK_PORTS.dbFailover),
  LOG_LEVEL: 'info',
};

export interface DbFailoverStatus {
  primary: string;
  servers: { name: string; up: boolean; readOnly?: boolean; replicaOf?: string | null }[];
  failovers: { from: string; to: string; downAt: number; promotedAt: number }[];
}

/** A request to the running manager: GET /status, or POST /switchover?to=<server>. */
export function dbFailoverRequest(
  method: 'GET' | 'POST',
  pathAndQuery: string,
  timeoutMs = 15_000,
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: STACK_HOST,
        port: STACK_PORTS.dbFailover,
        method,
        path: pathAndQuery,
        agent: false,
        timeout: timeoutMs,
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.once('end', () => {
          try {
            resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> });
          } catch {
            reject(new Error(`db-failover: ${method} ${pathAndQuery} answered something other than JSON`));
          }
        });
      },
    );
    request.once('timeout', () =>
      request.destroy(new Error(`db-failover: no answer within ${timeoutMs} ms`)),
    );
    request.once('error', reject);
    request.end();
  });
}

export async function dbFailoverStatus(): Promise<DbFailoverStatus> {
  const { status, body } = await dbFailoverRequest('GET', '/status', 2_000);
  if (status !== 200) throw new Error(`db-failover: GET /status answered ${status}`);
  return body as unknown as DbFailoverStatus;
}

export const dbFailover: ServerSpec = {
  name: 'db-failover',
  ...paths,
  port: STACK_PORTS.dbFailover,
  ports: [STACK_PORTS.dbFailover],
  dependsOn: ['primary', 'replica'],
  startTimeoutMs: 30_000,
  stopTimeoutMs: 10_000,
  executable: path.basename(process.execPath),
  prepare: () => {
    fs.mkdirSync(paths.dataDir, { recursive: true });
    return Promise.resolve();
  },
  command: () => ({
    file: process.execPath,
    args: [`--diagnostic-dir=${paths.dataDir}`, '--import', 'tsx', MAIN],
    cwd: REPO_ROOT,
    env: SETTINGS,
  }),
  probe: () => dbFailoverStatus().then(() => true),
  details: async () => {
    const status = await dbFailoverStatus();
    return { primary: status.primary, failovers: status.failovers.length };
  },
};
