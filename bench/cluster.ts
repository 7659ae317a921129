/**
 * What a scenario runs against: `nodes` app nodes sharing one Redis key prefix (one cluster of their own,
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
import { childPids } from './cpu.js';
import {
  buildService,
  deleteRedisKeys,
  freePort,
  SERVICE_ROOT,
  startNode,
  type NodeProcess,
} from './service.js';
import type { BenchIO, BenchOptions } from './types.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
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
    deleteKeysOnStop: false,
    noWait: true,
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
      const again = await startNode(options, io, { ...nodeSettings(node.port, i), noWait: false });
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
