// nginx: the load balancer in front of the app nodes, started from the production docker/nginx/nginx.conf.
//
// The documented local run (docker/README.md): a folder holding a symlink to nginx.conf beside its own
// upstreams.conf and listen.conf (nginx resolves `include` against the directory of the -c path as given),
// `-p` that folder, and pid/daemon/startup log on the command line. Only the included files differ from
// production: the app nodes are 127.0.0.1:8081/8082 (`npm start` runs them) with the production
// upstreams.conf's passive health-check parameters, and nginx listens on 127.0.0.1:8080.
//
// .stack/nginx/
//   nginx.conf       -> docker/nginx/nginx.conf
//   upstreams.conf      generated: one `server` line per app node of layout.ts
//   listen.conf         generated: `listen 127.0.0.1:8080;`
//   logs/error.log   -> .stack/logs/nginx.log         (nginx.conf: `error_log logs/error.log`)
//   logs/access.log  -> .stack/logs/nginx-access.log  (nginx.conf: `access_log logs/access.log`)
//   *_temp/             created by nginx
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import { APP_NODES, DOCKER_DIR, LOG_DIR, RUN_DIR, STACK_HOST, STACK_PORTS, serverPaths } from './layout.js';
import { StackError, portAnswers, startedBeforeChangeOf } from './process.js';
import type { ServerSpec } from './server.js';

const execFileAsync = promisify(execFile);
const paths = serverPaths('nginx');
/** Debian's package (setup.mjs installs it); /usr/sbin is not on every user's PATH. */
const NGINX = '/usr/sbin/nginx';
const SOURCE_DIR = path.join(DOCKER_DIR, 'nginx');
const SOURCE_CONFIG = path.join(SOURCE_DIR, 'nginx.conf');
const SOURCE_UPSTREAMS = path.join(SOURCE_DIR, 'upstreams.conf');
/** The -c path: the symlink, so that nginx looks for the included files in the stack's folder. */
const CONFIG_LINK = path.join(paths.dataDir, 'nginx.conf');
const UPSTREAMS_FILE = path.join(paths.dataDir, 'upstreams.conf');
const LISTEN_FILE = path.join(paths.dataDir, 'listen.conf');
const ACCESS_LOG = path.join(LOG_DIR, 'nginx-access.log');
/** nginx's own pid file (the master's pid, as the stack's pid file; nginx deletes it on exit). */
const SERVER_PID_FILE = path.join(RUN_DIR, 'nginx.server.pid');

/** -p/-c/-e/-g of every nginx invocation; `daemon off` only for the server itself (not for `-t`). */
function nginxArgs(daemonOff: boolean): string[] {
  const globals = `${daemonOff ? 'daemon off; ' : ''}pid "${SERVER_PID_FILE}";`;
  return ['-p', `${paths.dataDir}/`, '-c', CONFIG_LINK, '-e', 'stderr', '-g', globals];
}

/**
 * The local upstreams.conf: one line per app node, with the passive health-check parameters
 * (`max_fails`, `fail_timeout`, …) of the production file, which must be the same on each of its lines.
 */
export function localUpstreams(productionUpstreams: string): string {
  const servers = [...productionUpstreams.matchAll(/^\s*server\s+([^\s;]+)([^;]*);/gm)];
  const parameters = new Set(servers.map((match) => (match[2] ?? '').trim().replace(/\s+/g, ' ')));
  const [shared] = parameters;
  if (shared === undefined || parameters.size !== 1)
    throw new StackError(
      `nginx: ${SOURCE_UPSTREAMS} must list servers with the same parameters (found ${
        parameters.size === 0 ? 'no server line' : [...parameters].map((p) => `'${p}'`).join(', ')
      }); the local stack copies them onto its own app nodes`,
    );
  return [
    `# Generated from ${SOURCE_UPSTREAMS} by scripts/stack/nginx.ts: do not edit.`,
    '# The app nodes of `npm start` (scripts/start.mjs), with the production passive health checks.',
    ...APP_NODES.map(({ port }) => `server ${STACK_HOST}:${port}${shared === '' ? '' : ` ${shared}`};`),
    '',
  ].join('\n');
}

/** Makes `link` a symlink to `target`, replacing whatever is there. */
function symlink(target: string, link: string): void {
  fs.rmSync(link, { force: true });
  fs.symlinkSync(target, link);
}

/** GET `urlPath` on nginx's port; resolves with the status and the `Server` header, whatever the status. */
function httpGet(urlPath: string, timeoutMs = 1000): Promise<{ status: number; server: string | undefined }> {
  return new Promise((resolve, reject) => {
    const request = http.get(
      { host: STACK_HOST, port: STACK_PORTS.nginx, path: urlPath, agent: false, timeout: timeoutMs },
      (response) => {
        response.resume();
        const server = response.headers['server'];
        resolve({
          status: response.statusCode ?? 0,
          server: typeof server === 'string' ? server : undefined,
        });
      },
    );
    request.once('timeout', () => request.destroy(new Error(`nginx: no answer within ${timeoutMs} ms`)));
    request.once('error', reject);
  });
}

export const nginx: ServerSpec = {
  name: 'nginx',
  ...paths,
  port: STACK_PORTS.nginx,
  ports: [STACK_PORTS.nginx],
  // The app nodes are not part of the stack: nginx starts without them and answers 502 until they run.
  dependsOn: [],
  startTimeoutMs: 15_000,
  stopTimeoutMs: 10_000,
  executable: 'nginx',
  // The master rewrites its argv to one string: `nginx: master process /usr/sbin/nginx -p … -c …`.
  owns: (argv) => {
    const line = argv.join(' ');
    const isMaster = line.startsWith('nginx: master process ') || path.basename(argv[0] ?? '') === 'nginx';
    return isMaster && line.includes(` -c ${CONFIG_LINK}`);
  },
  prepare: async () => {
    fs.mkdirSync(path.join(paths.dataDir, 'logs'), { recursive: true });
    fs.mkdirSync(LOG_DIR, { recursive: true });
    symlink(SOURCE_CONFIG, CONFIG_LINK);
    fs.writeFileSync(UPSTREAMS_FILE, localUpstreams(fs.readFileSync(SOURCE_UPSTREAMS, 'utf8')));
    fs.writeFileSync(
      LISTEN_FILE,
      `# Generated by scripts/stack/nginx.ts: loopback only.\nlisten ${STACK_HOST}:${STACK_PORTS.nginx};\n`,
    );
    // nginx opens these through the links (O_APPEND, created if missing): its logs sit with the others.
    symlink(paths.logFile, path.join(paths.dataDir, 'logs', 'error.log'));
    symlink(ACCESS_LOG, path.join(paths.dataDir, 'logs', 'access.log'));
    if (!fs.existsSync(NGINX))
      throw new StackError(`nginx: ${NGINX} is missing (node scripts/setup.mjs installs Debian's nginx)`);
    try {
      await execFileAsync(NGINX, ['-t', ...nginxArgs(false)]);
    } catch (error) {
      const { stderr, message } = error as { stderr?: string; message: string };
      throw new StackError(`nginx: the configuration does not pass nginx -t:\n${stderr?.trim() || message}`);
    }
  },
  // Started before docker/nginx/ changed (an edit, a pull): `up` restarts it with the files of now.
  stale: (pid) => {
    const changed = startedBeforeChangeOf(pid, [SOURCE_CONFIG, SOURCE_UPSTREAMS]);
    return Promise.resolve(changed && `started before ${path.relative(DOCKER_DIR, changed)} changed`);
  },
  command: () => ({ file: NGINX, args: nginxArgs(true), cwd: paths.dataDir }),
  // nginx itself answers on its own location; any status will do (an app node never sees this request).
  probe: async () => (await httpGet('/nginx-health')).server === 'nginx',
  details: async () => {
    const { stderr } = await execFileAsync(NGINX, ['-v']);
    const upstreams = await Promise.all(
      APP_NODES.map(async ({ id, port }) => ({
        node: id,
        address: `${STACK_HOST}:${port}`,
        listening: await portAnswers(port, 500),
      })),
    );
    return { version: stderr.trim().replace(/^nginx version: /, ''), upstreams, accessLog: ACCESS_LOG };
  },
};
