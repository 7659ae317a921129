/**
 * What a scenario runs against, the service the bench builds (`tsc`) and starts: `nodes` app nodes
 * (`node dist/src/main.js`, scripts/node-launcher.ts) sharing one Redis key prefix (one cluster of their own,
 * whatever else uses the Redis), optionally behind an nginx of the bench's own (the production
 * docker/nginx/nginx.conf, started the way the local stack starts it, on a free port), and optionally a
 * payment provider of the bench's own (`dist/src/payment-provider/main.js`, its own process). With --url the
 * scenario uses that service instead and none of this starts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { freePort, launchNode } from '../scripts/node-launcher.js';
import { childPids } from './cpu.js';
import { connectStoreRedis } from './stores.js';
import type { BenchIO, BenchOptions } from './types.js';

export { freePort };

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/**
 * The checkout whose service the bench builds and runs (`dist/`, started with that folder as its cwd):
 * this one, or `BENCH_SERVICE_ROOT` (e.g. a `git worktree` of a commit, with `node_modules` and `.stack`
 * linked to this checkout's), to measure a commit while others edit this working tree.
 */
export const SERVICE_ROOT = path.resolve(process.env['BENCH_SERVICE_ROOT'] ?? ROOT);

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

export interface NodeSettings {
  readonly port: number;
  /** REDIS_KEY_PREFIX: nodes sharing one form one cluster. */
  readonly redisPrefix: string;
  readonly nodeId: string;
  /** Extra env of the child, over the bench's own (benchServiceEnv), under --service-env. */
  readonly env?: Record<string, string>;
}

export interface NodeProcess {
  readonly id: string;
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  /** Where the child's stdout/stderr go. */
  readonly logFile: string;
  /** Resolves with the exit code or signal when the process has exited. */
  readonly exited: Promise<number | string>;
  /** Sends a signal now (failover: SIGKILL); `stop` still waits for the exit. */
  kill(signal: NodeJS.Signals): void;
  /** Resolves when /ready answers 200 (rejects, with the log's tail, if the process exits first). */
  ready(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Starts one app node `node dist/src/main.js` with the bench env (scripts/node-launcher.ts); registers its stop. */
export async function startNode(
  options: BenchOptions,
  io: BenchIO,
  settings: NodeSettings,
): Promise<NodeProcess> {
  const { port } = settings;
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
  const node = launchNode({
    args: [...nodeArgs, path.join(SERVICE_ROOT, 'dist', 'src', 'main.js')],
    cwd: SERVICE_ROOT,
    env: {
      ...process.env,
      ...benchServiceEnv(options.connections),
      ...settings.env,
      ...options.serviceEnv,
      HOST: '127.0.0.1',
      PORT: String(port),
      REDIS_KEY_PREFIX: settings.redisPrefix,
      NODE_ID: settings.nodeId,
    },
    port,
    nodeId: settings.nodeId,
    onOutput: (chunk) => log.write(chunk),
    // Own process group: Ctrl-C reaches only the bench, which then stops the service with one SIGTERM.
    detached: true,
  });
  const lastResort = (): void => node.kill('SIGTERM');
  process.once('exit', lastResort);
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= node.stop().finally(() => {
      process.removeListener('exit', lastResort);
      log.end();
    }));
  io.onCleanup(stop);
  io.progress(
    `bench: starting ${settings.nodeId} on ${node.url} (pid ${node.child.pid}, log ${path.relative(process.cwd(), logFile)})`,
  );
  return {
    id: settings.nodeId,
    url: node.url,
    port,
    pid: node.child.pid!,
    logFile,
    exited: node.exited,
    kill: node.kill,
    stop,
    ready: async (timeoutMs = 60_000) => {
      try {
        await node.ready(timeoutMs);
      } catch (err) {
        await stop();
        const tail = await readFile(logFile, 'utf8').catch(() => '');
        throw new Error(
          `${(err as Error).message}\nservice log (last lines):\n${tail.split('\n').slice(-30).join('\n')}`,
          { cause: err },
        );
      }
    },
  };
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

const NGINX = '/usr/sbin/nginx';

export interface ClusterSettings {
  /** App nodes; default 2. */
  readonly nodes?: number;
  /** Put the bench's own nginx in front (the url is nginx's); default true when nodes > 1. */
  readonly nginx?: boolean;
  /** Start a payment provider of the bench's own with this latency (ms) and no declines; undefined = the stack's. */
  readonly paymentLatencyMs?: number;
  /** Extra env of every node. */
  readonly env?: Record<string, string>;
  /** Extra env of the i-th node (0-based; also when it is restarted), over `env`. */
  readonly nodeEnv?: (i: number) => Record<string, string>;
}

export interface Cluster {
  /** Where clients go: nginx, else the only node, else --url. */
  readonly url: string;
  /**
   * Where `/metrics` is read: each node directly (nginx answers 404 for it); [--url] with --url, which
   * must then be a node.
   */
  readonly metricsUrls: readonly string[];
  /** The nodes the bench started (empty with --url). */
  readonly nodes: readonly NodeProcess[];
  /** nginx's pid and access log, if the bench started one. */
  readonly nginx: { readonly pid: number; readonly port: number; readonly accessLog: string } | undefined;
  /** REDIS_KEY_PREFIX of the nodes (undefined with --url: the running service's, unknown here). */
  readonly redisPrefix: string | undefined;
  /** PAYMENT_URL given to the nodes, when the bench started its own provider. */
  readonly paymentUrl: string | undefined;
  /**
   * Every process the bench started for this cluster, by name, for CPU accounting: `node-<i>`, the
   * provider, nginx's master and each of its workers (read now: workers are found by parent pid).
   */
  pids(): Record<string, number>;
  /**
   * Restarts a node that was killed (same port, id and prefix); resolves when it is ready. The new process
   * takes the old one's place in `nodes`.
   */
  restart(node: NodeProcess): Promise<NodeProcess>;
}

/** Starts what the settings ask for; every part is stopped by the runner's cleanup (reverse order). */
export async function startCluster(
  options: BenchOptions,
  io: BenchIO,
  settings: ClusterSettings = {},
): Promise<Cluster> {
  if (options.url !== undefined) {
    const res = await request(`${options.url}/ready`).catch((err: unknown) => {
      throw new Error(`--url ${options.url}: /ready did not answer (${String(err)})`);
    });
    await res.body.dump();
    if (res.statusCode !== 200) throw new Error(`--url ${options.url}: /ready answered ${res.statusCode}`);
    return {
      url: options.url,
      metricsUrls: [options.url],
      nodes: [],
      nginx: undefined,
      redisPrefix: undefined,
      paymentUrl: undefined,
      pids: () => ({}),
      restart: () => Promise.reject(new Error('cannot restart a node of a --url service')),
    };
  }
  await buildService(io, options);
  const count = settings.nodes ?? 2;
  const provider =
    settings.paymentLatencyMs === undefined
      ? undefined
      : await startProvider(options, io, settings.paymentLatencyMs);
  const paymentUrl = provider?.url;
  const env = { ...settings.env, ...(paymentUrl === undefined ? {} : { PAYMENT_URL: paymentUrl }) };
  const ports: number[] = [];
  for (let i = 0; i < count; i += 1) ports.push(await freePort());
  // A prefix of its own: a cluster of its own, whatever else (another of the bench's clusters) uses the Redis.
  const redisPrefix = `bench-${options.runTag}-${ports[0]}:`;
  io.onCleanup(() => deleteRedisKeys(redisPrefix)); // runs after every node stopped
  const nodeSettings = (port: number, i: number) => ({
    port,
    redisPrefix,
    nodeId: `bench-${options.runTag}-n${i + 1}`,
    env: { ...env, ...settings.nodeEnv?.(i) },
  });
  const nodes = await Promise.all(ports.map((port, i) => startNode(options, io, nodeSettings(port, i))));
  await Promise.all(nodes.map((n) => n.ready(90_000)));
  const nginx = (settings.nginx ?? count > 1) ? await startNginx(options, io, ports) : undefined;
  if (count > 1) await waitShardsSpread(nodes, io);
  return {
    url: nginx === undefined ? nodes[0]!.url : `http://127.0.0.1:${nginx.port}`,
    metricsUrls: nodes.map((n) => n.url),
    nodes,
    nginx,
    redisPrefix,
    paymentUrl,
    pids: () => {
      const pids: Record<string, number> = {};
      nodes.forEach((node, i) => (pids[`node-${i + 1}`] = node.pid));
      if (provider !== undefined) pids['bench-payment'] = provider.pid;
      if (nginx !== undefined) {
        pids['bench-nginx'] = nginx.pid;
        for (const worker of childPids(nginx.pid)) pids[`bench-nginx-${worker}`] = worker;
      }
      return pids;
    },
    restart: async (node) => {
      const i = nodes.indexOf(node);
      if (i < 0) throw new Error(`${node.id} is not a current node of this cluster (restarted already?)`);
      const again = await startNode(options, io, nodeSettings(node.port, i));
      await again.ready();
      nodes[i] = again; // `nodes` lists the live processes: a node can be killed and restarted again
      return again;
    },
  };
}

/** Ready nodes have joined; give the rebalance a moment so the shards are spread before the load. */
async function waitShardsSpread(nodes: readonly NodeProcess[], io: BenchIO): Promise<void> {
  io.progress(`bench: ${nodes.length} nodes ready; 2 s for the shards to spread`);
  await new Promise((resolve) => setTimeout(resolve, 2_000));
}

async function startProvider(
  options: BenchOptions,
  io: BenchIO,
  latencyMs: number,
): Promise<{ url: string; pid: number }> {
  const port = await freePort();
  const logFile = path.join(options.outDir, `payment-${options.runTag}-${port}.log`);
  await mkdir(options.outDir, { recursive: true });
  const log = createWriteStream(logFile);
  const child = spawn(
    process.execPath,
    [path.join(SERVICE_ROOT, 'dist', 'src', 'payment-provider', 'main.js')],
    {
      cwd: SERVICE_ROOT,
      env: {
        ...process.env,
        PAYMENT_HOST: '127.0.0.1',
        PAYMENT_PORT: String(port),
        PAYMENT_LATENCY_MS: String(latencyMs),
        PAYMENT_DECLINE_RATE: '0',
        PAYMENT_ERROR_RATE: '0',
        PAYMENT_TIMEOUT_RATE: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    },
  );
  const exited = supervise(child, log, io);
  const url = `http://127.0.0.1:${port}`;
  await waitListening(url, '/', 10_000, exited);
  io.progress(`bench: payment provider on ${url} (pid ${child.pid}, ${latencyMs} ms, no declines)`);
  return { url, pid: child.pid! };
}

async function startNginx(
  options: BenchOptions,
  io: BenchIO,
  upstreamPorts: readonly number[],
): Promise<{ pid: number; port: number; accessLog: string }> {
  const port = await freePort();
  const dir = path.join(options.outDir, `nginx-${options.runTag}-${port}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(path.join(dir, 'logs'), { recursive: true });
  const production = await readFile(path.join(ROOT, 'docker', 'nginx', 'upstreams.conf'), 'utf8');
  // The production file's passive health-check parameters (max_fails, fail_timeout) on the bench's nodes.
  const parameters = /^\s*server\s+\S+([^;]*);/m.exec(production)?.[1]?.trim() ?? '';
  await writeFile(
    path.join(dir, 'upstreams.conf'),
    upstreamPorts.map((p) => `server 127.0.0.1:${p} ${parameters};`).join('\n') + '\n',
  );
  await writeFile(path.join(dir, 'listen.conf'), `listen 127.0.0.1:${port} backlog=4096;\n`);
  await symlink(path.join(ROOT, 'docker', 'nginx', 'nginx.conf'), path.join(dir, 'nginx.conf'));
  const pidFile = path.join(dir, 'nginx.pid');
  const child = spawn(
    NGINX,
    [
      '-p',
      `${dir}/`,
      '-c',
      path.join(dir, 'nginx.conf'),
      '-e',
      'stderr',
      '-g',
      `daemon off; pid ${pidFile};`,
    ],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  const exited = supervise(child, createWriteStream(path.join(dir, 'logs', 'startup.log')), io);
  await waitListening(`http://127.0.0.1:${port}`, '/nginx-health', 10_000, exited);
  io.progress(
    `bench: nginx on 127.0.0.1:${port} (pid ${child.pid}) → ${upstreamPorts.map((p) => `:${p}`).join(', ')}`,
  );
  return { pid: child.pid!, port, accessLog: path.join(dir, 'logs', 'access.log') };
}

/** Sends the child's output to `log` and stops it (SIGTERM, then waits for its exit) at cleanup. */
export function supervise(child: ChildProcess, log: NodeJS.WritableStream, io: BenchIO): Promise<void> {
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  io.onCleanup(async () => {
    child.kill('SIGTERM');
    await exited;
  });
  return exited;
}

/** Resolves once `url + urlPath` answers anything; rejects if `exited` resolves first or after `timeoutMs`. */
export async function waitListening(
  url: string,
  urlPath: string,
  timeoutMs: number,
  exited: Promise<void>,
): Promise<void> {
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (gone) throw new Error(`${url}: the process exited before it listened`);
    try {
      const res = await request(`${url}${urlPath}`, { headersTimeout: 1_000, bodyTimeout: 1_000 });
      await res.body.dump();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`${url} did not listen within ${timeoutMs} ms`);
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
