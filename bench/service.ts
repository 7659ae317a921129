/**
 * The service under test: either the one at --url, or a child process this module builds and starts
 * (`node dist/src/main.js` on a free port) and stops with SIGTERM at the end or on Ctrl-C.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { registerNodeTarget } from '../scripts/stack/scrape-targets.mjs';
import { connectStoreRedis } from './stores.js';
import type { BenchIO, BenchOptions } from './types.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/**
 * The checkout whose service the bench builds and runs (`dist/`, started with that folder as its cwd):
 * this one, or `BENCH_SERVICE_ROOT` (e.g. a `git worktree` of a commit, with `node_modules` and `.stack`
 * linked to this checkout's), to measure a commit while others edit this working tree.
 */
export const SERVICE_ROOT = path.resolve(process.env['BENCH_SERVICE_ROOT'] ?? ROOT);

export interface ServiceSettings {
  /** Extra env of the child (strings, as env is), on top of the bench defaults below. */
  env?: Record<string, string>;
  /** Longest wait for `/ready` 200, ms. Default 60000. */
  readyTimeoutMs?: number;
}

export interface Service {
  readonly url: string;
  /** The child's pid; undefined for --url. */
  readonly pid: number | undefined;
  /** Where the child's stdout/stderr go; undefined for --url. */
  readonly logFile: string | undefined;
  /** The child's REDIS_KEY_PREFIX (a cluster of its own); undefined for --url. */
  readonly redisPrefix: string | undefined;
  stop(): Promise<void>;
  /** Log lines (pino JSON) whose `msg` is one of these, counted by msg; {} for --url. */
  countLogMessages(messages: readonly string[]): Promise<Record<string, number>>;
}

/**
 * Rate limits of every node the bench starts: ON, so each request pays its per-IP check and each purchase
 * its per-user EVALSHA, but far above anything a scenario offers (behind nginx every request comes from
 * 127.0.0.1; a closed loop at c = 200 gives one bench user a few purchases/s), so nothing is ever throttled.
 * The highest values the service accepts.
 */
export const BENCH_RATE_LIMITS = {
  RATE_LIMIT_IP_PER_S: '100000000',
  RATE_LIMIT_USER_PURCHASES_PER_S: '1000000',
} as const;

/** Env the bench gives its own service: quiet logs, deadlines and a saga wait a closed loop will not hit, a mailbox bound above the load, limits on but never reached. */
export function benchServiceEnv(connections: number): Record<string, string> {
  return {
    LOG_LEVEL: 'warn',
    PURCHASE_DEADLINE_MS: '10000', // 10 s
    PURCHASE_TIMEOUT_MS: '15000', // 15 s
    MAILBOX_LIMIT: String(Math.max(5_000, connections * 4)),
    PURCHASE_WAIT_BUDGET_MS: '10000', // 10 s: how long a purchase waits for its saga before answering 202
    ...BENCH_RATE_LIMITS,
  };
}

/** Service log messages that mean the node lost (or failed to keep) shard leases during the run. */
export const OWNERSHIP_WARNINGS = [
  'lost shards',
  'ownership rebalance failed',
  'handoff incomplete; the leases will expire instead',
] as const;

let built = false;

/** `tsc -p tsconfig.build.json`, once per bench process. */
export async function buildService(io: BenchIO, options?: Pick<BenchOptions, 'build'>): Promise<void> {
  if (built || options?.build === false) return;
  io.progress(
    `bench: building the service (tsc -p ${path.relative(ROOT, path.join(SERVICE_ROOT, 'tsconfig.build.json'))})`,
  );
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const { code, output } = await run(process.execPath, [
    tsc,
    '-p',
    path.join(SERVICE_ROOT, 'tsconfig.build.json'),
  ]);
  if (code !== 0) throw new Error(`the service does not build (tsc exited ${code}):\n${output.slice(-4000)}`);
  built = true;
}

/** The service at options.url, or a fresh child process; registers its stop with io.onCleanup. */
export async function startService(
  options: BenchOptions,
  io: BenchIO,
  settings: ServiceSettings = {},
): Promise<Service> {
  if (options.url !== undefined) {
    await waitReady(options.url, settings.readyTimeoutMs ?? 60_000, undefined);
    return {
      url: options.url,
      pid: undefined,
      logFile: undefined,
      redisPrefix: undefined,
      stop: () => Promise.resolve(),
      countLogMessages: () => Promise.resolve({}),
    };
  }
  await buildService(io, options);
  const port = await freePort();
  // A Redis key prefix and node id of its own: the child forms a one-node cluster that owns every shard,
  // whatever other nodes (npm start, tests) run against the same Redis. Its keys are deleted afterwards.
  const redisPrefix = `bench-${options.runTag}-${port}:`;
  const node = await startNode(options, io, {
    ...settings,
    port,
    redisPrefix,
    nodeId: `bench-${options.runTag}-${port}`,
    deleteKeysOnStop: true,
  });
  return node;
}

export interface NodeSettings extends ServiceSettings {
  readonly port: number;
  /** REDIS_KEY_PREFIX: nodes sharing one form one cluster. */
  readonly redisPrefix: string;
  readonly nodeId: string;
  /** Delete the Redis keys under the prefix once stopped (a one-node cluster's own prefix). */
  readonly deleteKeysOnStop: boolean;
  /** Do not wait for /ready (the caller waits for the whole cluster). */
  readonly noWait?: boolean;
}

export interface NodeProcess extends Service {
  readonly id: string;
  readonly port: number;
  readonly pid: number;
  /** Resolves with the exit code or signal when the process has exited. */
  readonly exited: Promise<number | string>;
  /** Sends a signal now (failover: SIGKILL); `stop` still waits for the exit. */
  kill(signal: NodeJS.Signals): void;
  /** Resolves when /ready answers 200 (rejects if the process exits first). */
  ready(timeoutMs?: number): Promise<void>;
}

/** Builds (once) and starts one app node `node dist/src/main.js` with the bench env; registers its stop. */
export async function startNode(
  options: BenchOptions,
  io: BenchIO,
  settings: NodeSettings,
): Promise<NodeProcess> {
  await buildService(io, options);
  const { port, redisPrefix } = settings;
  const url = `http://127.0.0.1:${port}`;
  await mkdir(options.outDir, { recursive: true });
  const logFile = path.join(options.outDir, `service-${options.runTag}-${port}.log`);
  // Appended to: a node restarted on the same port (chaos) keeps its earlier life's log in the same file.
  const log = createWriteStream(logFile, { flags: 'a' });
  const nodeArgs: string[] = [];
  if (options.cpuProf) {
    const dir = path.join(options.outDir, 'profiles');
    await mkdir(dir, { recursive: true });
    nodeArgs.push(
      '--cpu-prof',
      `--cpu-prof-dir=${dir}`,
      `--cpu-prof-name=service-${options.runTag}-${port}.cpuprofile`,
    );
  }
  const child = spawn(process.execPath, [...nodeArgs, path.join(SERVICE_ROOT, 'dist', 'src', 'main.js')], {
    cwd: SERVICE_ROOT,
    env: {
      ...process.env,
      ...benchServiceEnv(options.connections),
      ...settings.env,
      ...options.serviceEnv,
      HOST: '127.0.0.1',
      PORT: String(port),
      REDIS_KEY_PREFIX: redisPrefix,
      NODE_ID: settings.nodeId,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Own process group: Ctrl-C reaches only the bench, which then stops the service with one SIGTERM.
    detached: true,
  });
  const lastResort = (): void => void child.kill('SIGTERM');
  process.once('exit', lastResort);
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')),
  );
  // Scraped by the stack's Prometheus while it runs, as npm start's nodes (the dashboard during a bench).
  const unregister = registerNodeTarget({ port, node: settings.nodeId, pid: child.pid ?? 0 });
  void exited.then(unregister);
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= terminate(child, exited)
      .finally(() => {
        process.removeListener('exit', lastResort);
        log.end();
      })
      .then(() => (settings.deleteKeysOnStop ? deleteRedisKeys(redisPrefix) : undefined)));
  io.onCleanup(stop);
  io.progress(
    `bench: starting ${settings.nodeId} on ${url} (pid ${child.pid}, log ${path.relative(process.cwd(), logFile)})`,
  );
  const ready = async (timeoutMs = settings.readyTimeoutMs ?? 60_000): Promise<void> => {
    try {
      await waitReady(url, timeoutMs, exited);
    } catch (err) {
      await stop();
      const tail = await readFile(logFile, 'utf8').catch(() => '');
      throw new Error(
        `${(err as Error).message}\nservice log (last lines):\n${tail.split('\n').slice(-30).join('\n')}`,
        { cause: err },
      );
    }
  };
  if (settings.noWait !== true) await ready();
  return {
    id: settings.nodeId,
    url,
    port,
    pid: child.pid!,
    logFile,
    redisPrefix,
    exited,
    kill: (signal) => void child.kill(signal),
    ready,
    stop,
    countLogMessages: (messages) => countLogMessages(logFile, messages),
  };
}

async function countLogMessages(
  logFile: string,
  messages: readonly string[],
): Promise<Record<string, number>> {
  const counts: Record<string, number> = Object.fromEntries(messages.map((m) => [m, 0]));
  const text = await readFile(logFile, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const msg = (JSON.parse(line) as { msg?: unknown }).msg;
      if (typeof msg === 'string' && msg in counts) counts[msg]! += 1;
    } catch {
      // not a log record
    }
  }
  return counts;
}

/** Deletes the keys the child left under its prefix (shard epochs, membership, catalog cache, locks). */
export async function deleteRedisKeys(prefix: string): Promise<void> {
  const redis = await connectStoreRedis();
  try {
    const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/** SIGTERM, then SIGKILL if the service has not exited after its drain grace (10 s) plus margin. */
async function terminate(child: ChildProcess, exited: Promise<number | string>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(timer);
}

async function waitReady(
  url: string,
  timeoutMs: number,
  exited: Promise<number | string> | undefined,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let childExit: number | string | undefined;
  void exited?.then((code) => (childExit = code));
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (childExit !== undefined) throw new Error(`the service exited (${childExit}) before it was ready`);
    try {
      const res = await request(`${url}/ready`, { headersTimeout: 2_000, bodyTimeout: 2_000 });
      const body = await res.body.text();
      if (res.statusCode === 200) return;
      last = `${res.statusCode} ${body.slice(0, 300)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${url}/ready did not answer 200 within ${timeoutMs} ms (last: ${last})`);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function run(file: string, args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code: code ?? 1, output }));
  });
}
