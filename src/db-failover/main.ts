// The MariaDB failover manager as its own program: `node --import tsx src/db-failover/main.ts`.
// Settings (all required but the timings):
//   DB_FAILOVER_SERVERS        name=host:port,… in order of preference (the first is the first primary)
//   DB_FAILOVER_USER, DB_FAILOVER_PASSWORD            its login on every server (see the stack's grants)
//   DB_FAILOVER_REPLICATION_USER, DB_FAILOVER_REPLICATION_PASSWORD   a server made replica logs in with it
//   DB_FAILOVER_TLS_CA_FILE    CA of the servers' certificates (TLS; empty: plaintext)
//   DB_FAILOVER_STATE_FILE     where the elected primary's name is kept
//   DB_FAILOVER_AFTER_MS (5000), DB_FAILOVER_CHECK_MS (500), DB_FAILOVER_HOST (127.0.0.1), DB_FAILOVER_PORT
// HTTP: GET /status (the elected primary, each server, the failovers), POST /switchover?to=<name>.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { pino } from 'pino';
import { FailoverManager, type DbServer } from './manager.js';

function setting(name: string, fallback?: string): string {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === '') {
    console.error(`db-failover: ${name} is required`);
    process.exit(2);
  }
  return value;
}

function servers(text: string): DbServer[] {
  return text.split(',').map((item) => {
    const match = /^([\w-]+)=([\w.-]+):(\d+)$/.exec(item.trim());
    if (match === null) {
      console.error(`db-failover: DB_FAILOVER_SERVERS: ${JSON.stringify(item)} is not name=host:port`);
      process.exit(2);
    }
    return { name: match[1]!, host: match[2]!, port: Number(match[3]) };
  });
}

const logger = pino({ base: { component: 'db-failover' } });
const stateFile = setting('DB_FAILOVER_STATE_FILE');
const caFile = process.env['DB_FAILOVER_TLS_CA_FILE'] ?? '';
const manager = new FailoverManager({
  servers: servers(setting('DB_FAILOVER_SERVERS')),
  user: setting('DB_FAILOVER_USER'),
  password: setting('DB_FAILOVER_PASSWORD'),
  ...(caFile === '' ? {} : { ca: fs.readFileSync(caFile) }),
  replication: {
    user: setting('DB_FAILOVER_REPLICATION_USER'),
    password: setting('DB_FAILOVER_REPLICATION_PASSWORD'),
    ...(caFile === '' ? {} : { caFile: path.resolve(caFile) }),
  },
  failoverAfterMs: Number(setting('DB_FAILOVER_AFTER_MS', '5000')),
  checkMs: Number(setting('DB_FAILOVER_CHECK_MS', '500')),
  state: {
    load: () => (fs.existsSync(stateFile) ? fs.readFileSync(stateFile, 'utf8').trim() : undefined),
    save: (name) => {
      fs.mkdirSync(path.dirname(stateFile), { recursive: true });
      fs.writeFileSync(`${stateFile}.tmp`, `${name}\n`);
      fs.renameSync(`${stateFile}.tmp`, stateFile);
    },
  },
  logger,
});

const server = http.createServer((request, response) => {
  const url = new URL(request.url ?? '/', 'http://localhost');
  const reply = (status: number, body: unknown): void => {
    response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  if (request.method === 'GET' && url.pathname === '/status')
    return reply(200, { primary: manager.primary, servers: manager.servers, failovers: manager.failovers });
  if (request.method === 'POST' && url.pathname === '/switchover') {
    const to = url.searchParams.get('to') ?? '';
    manager.switchover(to).then(
      () => reply(200, { primary: manager.primary }),
      (err: Error) => reply(409, { error: { code: 'SWITCHOVER_FAILED', message: err.message } }),
    );
    return;
  }
  reply(404, { error: { code: 'NOT_FOUND', message: `${request.method} ${url.pathname}` } });
});

const host = setting('DB_FAILOVER_HOST', '127.0.0.1');
const port = Number(setting('DB_FAILOVER_PORT'));
server.listen(port, host, () => {
  logger.info({ host, port, primary: manager.primary }, 'db-failover: listening');
  manager.start();
});

for (const signal of ['SIGTERM', 'SIGINT'] as const)
  process.once(signal, () => {
    server.close();
    void manager.stop().then(() => process.exit(0));
  });
