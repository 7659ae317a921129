/**
 * What a scenario runs against, the service the bench builds (`tsc`) and starts: `nodes` app nodes
 * (`node dist/src/main.js`, scripts/node-launcher.ts) sharing one Redis key prefix (a cluster of their own),
 * optionally behind an nginx of the bench's own (the production docker/nginx/nginx.conf, on a free port) and
 * a payment provider of the bench's own. With --url the scenario uses that service instead.
 */
import { execFile, spawn, type SpawnOptions } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { request } from 'undici';
import { freePort, launchNode } from '../scripts/node-launcher.js';
import { childPids } from './cpu.js';
import { connectStoreRedis } from './stores.js';
import type { BenchIO, BenchOptions } from './types.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The checkout whose service the bench builds and runs: this one, or BENCH_SERVICE_ROOT (a worktree of a commit). */
const SERVICE_ROOT = path.resolve(process.env['BENCH_SERVICE_ROOT'] ?? ROOT);

/** Rate limits of the bench's nodes: on, but at the service's maximum, far above any load offered. */
export const BENCH_RATE_LIMITS = {
  RATE_LIMIT_IP_PER_S: '100000000',
  RATE_LIMIT_USER_PURCHASES_PER_S: '1000000',
} as const;

let built = false;

/** `tsc -p tsconfig.build.json`, once per bench process. */
async function buildService(io: BenchIO, options: BenchOptions): Promise<void> {
  if (built || !options.build) return;
  const config = path.join(SERVICE_ROOT, 'tsconfig.build.json');
  io.progress(`bench: building the service (tsc -p ${path.relative(ROOT, config)})`);
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  await promisify(execFile)(process.execPath, [tsc, '-p', config], { cwd: ROOT, maxBuffer: 1 << 26 }).catch(
    (err: { code?: number; stdout?: string; stderr?: string }) => {
      const output = `${err.stdout ?? ''}${err.stderr ?? ''}`;
      throw new Error(`the service does not build (tsc exited ${err.code}):\n${output.slice(-4000)}`);
    },
  );
  built = true;
}

/** A started node: `kill` signals now (failover: SIGKILL), `stop` waits for the exit, `ready` rejects with the log's tail. */
export type NodeProcess = Awaited<ReturnType<typeof startNode>>;

/** Starts one app node with the bench env (bench/README.md); registers its stop. */
async function startNode(
  options: BenchOptions,
  io: BenchIO,
  settings: { port: number; redisPrefix: string; nodeId: string; env: Record<string, string> },
) {
  const { port, nodeId } = settings;
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
      LOG_LEVEL: 'warn',
      PURCHASE_DEADLINE_MS: '10000',
      PURCHASE_TIMEOUT_MS: '15000',
      MAILBOX_LIMIT: String(Math.max(5_000, options.connections * 4)),
      PURCHASE_WAIT_BUDGET_MS: '10000',
      ...BENCH_RATE_LIMITS,
      ...settings.env,
      ...options.serviceEnv,
      HOST: '127.0.0.1',
      PORT: String(port),
      REDIS_KEY_PREFIX: settings.redisPrefix,
      NODE_ID: nodeId,
    },
    port,
    nodeId,
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
  const pid = node.child.pid!;
  io.progress(
    `bench: starting ${nodeId} on ${node.url} (pid ${pid}, log ${path.relative(process.cwd(), logFile)})`,
  );
  return {
    id: nodeId,
    url: node.url,
    port,
    pid,
    logFile,
    /** Resolves with the exit code or signal. */
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

/** Deletes the keys left under a prefix (shard epochs, membership, catalog cache, locks). */
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

export interface ClusterSettings {
  /** App nodes; default 2. */
  readonly nodes?: number;
  /** Put the bench's own nginx in front; default true when nodes > 1. */
  readonly nginx?: boolean;
  /** Start a payment provider of the bench's own with this latency (ms); undefined = the stack's. */
  readonly paymentLatencyMs?: number;
  /** Extra env of every node. */
  readonly env?: Record<string, string>;
  /** Extra env of the i-th node (0-based; also when it is restarted), over `env`. */
  readonly nodeEnv?: (i: number) => Record<string, string>;
}

export interface Cluster {
  /** Where clients go: nginx, else the only node, else --url. */
  readonly url: string;
  /** Where `/metrics` is read: each node directly (nginx answers 404 for it); [--url] with --url. */
  readonly metricsUrls: readonly string[];
  /** The nodes the bench started (empty with --url); a restarted node takes the killed one's place. */
  readonly nodes: readonly NodeProcess[];
  readonly nginx: { readonly pid: number; readonly port: number } | undefined;
  /** REDIS_KEY_PREFIX of the nodes (undefined with --url). */
  readonly redisPrefix: string | undefined;
  /** Every process the bench started for this cluster, by name (nginx's workers read now). */
  pids(): Record<string, number>;
  /** Restarts a killed node (same port, id and prefix); resolves when it is ready. */
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
  const env = { ...settings.env, ...(provider === undefined ? {} : { PAYMENT_URL: provider.url }) };
  const ports: number[] = [];
  for (let i = 0; i < count; i += 1) ports.push(await freePort());
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
  if (count > 1) {
    io.progress(`bench: ${nodes.length} nodes ready; 2 s for the shards to spread`);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
  }
  return {
    url: nginx === undefined ? nodes[0]!.url : `http://127.0.0.1:${nginx.port}`,
    metricsUrls: nodes.map((n) => n.url),
    nodes,
    nginx,
    redisPrefix,
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

async function startProvider(options: BenchOptions, io: BenchIO, latencyMs: number) {
  const port = await freePort();
  const env = {
    ...process.env,
    PAYMENT_HOST: '127.0.0.1',
    PAYMENT_PORT: String(port),
    PAYMENT_LATENCY_MS: String(latencyMs),
    PAYMENT_DECLINE_RATE: '0',
    PAYMENT_ERROR_RATE: '0',
    PAYMENT_TIMEOUT_RATE: '0',
  };
  const main = path.join(SERVICE_ROOT, 'dist', 'src', 'payment-provider', 'main.js');
  const logFile = path.join(options.outDir, `payment-${options.runTag}-${port}.log`);
  const started = await startProcess(io, process.execPath, [main], { cwd: SERVICE_ROOT, env }, logFile, {
    url: `http://127.0.0.1:${port}`,
    probe: '/',
  });
  io.progress(`bench: payment provider on ${started.url} (pid ${started.pid}, ${latencyMs} ms, no declines)`);
  return started;
}

async function startNginx(options: BenchOptions, io: BenchIO, upstreamPorts: readonly number[]) {
  const port = await freePort();
  const dir = path.join(options.outDir, `nginx-${options.runTag}-${port}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(path.join(dir, 'logs'), { recursive: true });
  const production = await readFile(path.join(ROOT, 'docker', 'nginx', 'upstreams.conf'), 'utf8');
  // The production file's passive health-check parameters (max_fails, fail_timeout) on the bench's nodes.
  const parameters = /^\s*server\s+\S+([^;]*);/m.exec(production)?.[1]?.trim() ?? '';
  const upstreams = upstreamPorts.map((p) => `server 127.0.0.1:${p} ${parameters};\n`).join('');
  await writeFile(path.join(dir, 'upstreams.conf'), upstreams);
  await writeFile(path.join(dir, 'listen.conf'), `listen 127.0.0.1:${port} backlog=4096;\n`);
  await symlink(path.join(ROOT, 'docker', 'nginx', 'nginx.conf'), path.join(dir, 'nginx.conf'));
  const args = ['-p', `${dir}/`, '-c', path.join(dir, 'nginx.conf'), '-e', 'stderr'];
  args.push('-g', `daemon off; pid ${path.join(dir, 'nginx.pid')};`);
  const { pid } = await startProcess(
    io,
    '/usr/sbin/nginx',
    args,
    { cwd: dir },
    path.join(dir, 'logs', 'startup.log'),
    {
      url: `http://127.0.0.1:${port}`,
      probe: '/nginx-health',
    },
  );
  io.progress(
    `bench: nginx on 127.0.0.1:${port} (pid ${pid}) → ${upstreamPorts.map((p) => `:${p}`).join(', ')}`,
  );
  return { pid, port };
}

/** A helper process (own group, log file), stopped at cleanup; resolves once `url + probe` answers anything. */
export async function startProcess(
  io: BenchIO,
  file: string,
  args: readonly string[],
  spawnOptions: Pick<SpawnOptions, 'cwd' | 'env'>,
  logFile: string,
  listen: { url: string; probe: string; timeoutMs?: number },
): Promise<{ url: string; pid: number }> {
  await mkdir(path.dirname(logFile), { recursive: true });
  const child = spawn(file, args, { ...spawnOptions, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const log = createWriteStream(logFile);
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  let gone = false;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => (gone = true));
  io.onCleanup(async () => {
    child.kill('SIGTERM');
    await exited;
  });
  const deadline = Date.now() + (listen.timeoutMs ?? 10_000);
  while (Date.now() < deadline && !gone) {
    try {
      const res = await request(`${listen.url}${listen.probe}`, {
        headersTimeout: 1_000,
        bodyTimeout: 1_000,
      });
      await res.body.dump();
      return { url: listen.url, pid: child.pid! };
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  const tail = (await readFile(logFile, 'utf8').catch(() => '')).slice(-2000);
  const why = gone
    ? 'the process exited before it listened'
    : `did not listen within ${listen.timeoutMs ?? 10_000} ms`;
  throw new Error(`${path.basename(file)} on ${listen.url}: ${why}\n${tail}`);
}
