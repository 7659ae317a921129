/**
 * The launcher of app nodes and what runs beside them, shared by the bench (bench/cluster.ts: the service
 * built into dist/, the bench's env) and the tests (test/helpers/node-process.ts: src/ through tsx). One node
 * (`startNode`, on scripts/node-launcher.ts), or a cluster (`startCluster`): `nodes` nodes sharing one Redis
 * key prefix (a cluster of their own whatever else uses the Redis; its keys deleted at the end), optionally
 * behind an nginx of its own (the production docker/nginx/nginx.conf on a free port) and a payment provider
 * process of its own; a killed node is restarted in its place.
 */
import { execFile, spawn, type SpawnOptions } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { freePort, launchNode } from './node-launcher.js';
import { REPO_ROOT } from './stack/layout.js';
import { connectStoreRedis } from './stores.js';
import { until } from './until.js';

/** Teardown and progress of whoever starts the processes (the bench's run, a test). */
export interface Lifecycle {
  /** Teardown, run in reverse order of registration. */
  onCleanup(fn: () => Promise<void> | void): void;
  progress: (line: string) => void;
}

/**
 * The service into `<root>/dist`: the TypeBox bundle first (`scripts/bundle-vendor.mjs`, where the checkout has
 * one; the bundle is not in git, so a checkout of its own, BENCH_SERVICE_ROOT, has none yet), then `tsc -p
 * <root>/tsconfig.build.json`; throws with the failing step's output.
 */
export async function buildService(root: string): Promise<void> {
  const bundler = path.join(root, 'scripts', 'bundle-vendor.mjs');
  if (existsSync(bundler)) await buildStep('the TypeBox bundle', [bundler]);
  const tsc = path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  await buildStep('tsc', [tsc, '-p', path.join(root, 'tsconfig.build.json')]);
}

async function buildStep(what: string, args: readonly string[]): Promise<void> {
  await promisify(execFile)(process.execPath, args, { cwd: REPO_ROOT, maxBuffer: 1 << 26 }).catch(
    (err: { code?: number; stdout?: string; stderr?: string }) => {
      const output = `${err.stdout ?? ''}${err.stderr ?? ''}`;
      throw new Error(`the service does not build (${what} exited ${err.code}):\n${output.slice(-4000)}`);
    },
  );
}

export interface NodeSpec {
  /** Node's arguments (flags, then the entry file). */
  readonly args: readonly string[];
  readonly cwd: string;
  /** The whole environment (PORT and NODE_ID included). */
  readonly env: NodeJS.ProcessEnv;
  readonly port: number;
  readonly nodeId: string;
  /** Where its output is appended (a restarted node keeps its earlier life's log); else kept in memory. */
  readonly logFile?: string;
  /** A process group of its own (Ctrl-C reaches only the caller, which stops it), stopped at exit too. */
  readonly detached?: boolean;
  /** At cleanup, a node still running is stopped (SIGTERM, its drain) or killed (SIGKILL, at once). */
  readonly atCleanup: 'stop' | 'kill';
  /** How often the stack's Prometheus scrapes it; default the local stack's 2 s (LaunchSettings). */
  readonly scrapeInterval?: string;
}

/** A started node: `kill` signals now, `stop` drains and waits for the exit, `ready` ends it and rejects with its output's tail. */
export type NodeProcess = Awaited<ReturnType<typeof startNode>>;

/** Starts one app node; its cleanup is registered. Not ready yet: await `ready()`. */
export async function startNode(life: Lifecycle, spec: NodeSpec) {
  const { logFile } = spec;
  if (logFile !== undefined) await mkdir(path.dirname(logFile), { recursive: true });
  const log = logFile === undefined ? undefined : createWriteStream(logFile, { flags: 'a' });
  let output = '';
  const node = launchNode({
    ...spec,
    onOutput: (chunk) => {
      output += chunk.toString();
      // With a log file only the tail stays in memory (for a failed start's message).
      if (log !== undefined) {
        log.write(chunk);
        output = output.slice(-16_000);
      }
    },
  });
  const lastResort = (): void => node.kill('SIGTERM');
  if (spec.detached === true) process.once('exit', lastResort);
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= node.stop().finally(() => {
      process.removeListener('exit', lastResort);
      log?.end();
    }));
  const kill = async (): Promise<void> => {
    node.kill('SIGKILL');
    await node.exited;
    log?.end();
  };
  const finish = spec.atCleanup === 'stop' ? stop : kill;
  life.onCleanup(finish);
  return {
    id: spec.nodeId,
    url: node.url,
    port: spec.port,
    pid: node.child.pid!,
    child: node.child,
    logFile,
    /** stdout + stderr so far (the tail only, with a log file). */
    output: () => output,
    /** Resolves with the exit code or signal. */
    exited: node.exited,
    kill: node.kill,
    stop,
    ready: async (timeoutMs = 60_000) => {
      try {
        await node.ready(timeoutMs);
      } catch (err) {
        await finish();
        const tail = output.split('\n').slice(-30).join('\n');
        throw new Error(`${(err as Error).message}\nservice log (last lines):\n${tail}`, { cause: err });
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
  /** Put an nginx of its own in front; default true when nodes > 1. */
  readonly nginx?: boolean;
  /** Start a payment provider of its own with this latency (ms); undefined = the stack's. */
  readonly paymentLatencyMs?: number;
  /** Extra env of every node. */
  readonly env?: Record<string, string>;
  /** Extra env of the i-th node (0-based; also when it is restarted), over `env`. */
  readonly nodeEnv?: (i: number) => Record<string, string>;
}

/** Where and how a cluster's processes run. */
export interface Launch extends Lifecycle {
  /** The checkout whose `dist/` runs (built already). */
  readonly root: string;
  /** Folder of the logs (and nginx's files). */
  readonly outDir: string;
  /** Names the log files (`service-<tag>-<port>.log`), and with `owner` the node ids (`<owner>-<tag>-n<i>`) and the Redis prefix. */
  readonly tag: string;
  readonly owner: string;
  /** Every node's env, under the settings' (`HOST`, `PORT`, `REDIS_KEY_PREFIX`, `NODE_ID` are the launcher's). */
  readonly env: Record<string, string>;
  /** The env given last, over everything but the launcher's own keys (`--service-env`). */
  readonly overrides?: Record<string, string>;
  /** Each node writes a CPU profile into this folder (`service-<tag>-<port>.cpuprofile`). */
  readonly cpuProfileDir?: string;
  /** How often the stack's Prometheus scrapes and probes the nodes; default the local stack's 2 s. */
  readonly scrapeInterval?: string;
}

export interface Cluster {
  /** Where clients go: nginx, else the only node. */
  readonly url: string;
  /** Where `/metrics` is read: each node directly (nginx answers 404 for it). */
  readonly metricsUrls: readonly string[];
  /** The live nodes; a restarted node takes the killed one's place. */
  readonly nodes: readonly NodeProcess[];
  readonly nginx: { readonly pid: number; readonly port: number } | undefined;
  /** REDIS_KEY_PREFIX of the nodes (undefined for a service started elsewhere). */
  readonly redisPrefix: string | undefined;
  /** Every process started for this cluster, by name. */
  pids(): Record<string, number>;
  /** Restarts a killed node (same port, id and prefix); resolves when it is ready. */
  restart(node: NodeProcess): Promise<NodeProcess>;
}

/** A service started elsewhere (`--url`), once its `/ready` answers 200: nothing to restart, its `/metrics` its own. */
export async function runningService(url: string): Promise<Cluster> {
  const res = await request(`${url}/ready`).catch((err: unknown) => {
    throw new Error(`${url}: /ready did not answer (${String(err)})`);
  });
  await res.body.dump();
  if (res.statusCode !== 200) throw new Error(`${url}: /ready answered ${res.statusCode}`);
  const restart = () => Promise.reject(new Error('cannot restart a node of a service started elsewhere'));
  return {
    url,
    metricsUrls: [url],
    nodes: [],
    nginx: undefined,
    redisPrefix: undefined,
    pids: () => ({}),
    restart,
  };
}

/** Starts what the settings ask for; every part is stopped by the cleanup (reverse order). */
export async function startCluster(launch: Launch, settings: ClusterSettings = {}): Promise<Cluster> {
  const count = settings.nodes ?? 2;
  const provider =
    settings.paymentLatencyMs === undefined
      ? undefined
      : await startProvider(launch, settings.paymentLatencyMs);
  const env = { ...settings.env, ...(provider === undefined ? {} : { PAYMENT_URL: provider.url }) };
  const ports: number[] = [];
  for (let i = 0; i < count; i += 1) ports.push(await freePort());
  const name = `${launch.owner}-${launch.tag}`;
  const redisPrefix = `${name}-${ports[0]}:`;
  launch.onCleanup(() => deleteRedisKeys(redisPrefix)); // runs after every node stopped
  const dir = launch.cpuProfileDir;
  if (dir !== undefined) await mkdir(dir, { recursive: true });
  const profile = (port: number) =>
    dir === undefined
      ? []
      : ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=service-${launch.tag}-${port}.cpuprofile`];
  const start = async (port: number, i: number) => {
    const nodeId = `${name}-n${i + 1}`;
    const logFile = path.join(launch.outDir, `service-${launch.tag}-${port}.log`);
    const node = await startNode(launch, {
      args: [...profile(port), path.join(launch.root, 'dist', 'src', 'main.js')],
      cwd: launch.root,
      env: {
        ...process.env,
        ...launch.env,
        ...env,
        ...settings.nodeEnv?.(i),
        ...launch.overrides,
        HOST: '127.0.0.1',
        PORT: String(port),
        REDIS_KEY_PREFIX: redisPrefix,
        NODE_ID: nodeId,
      },
      port,
      nodeId,
      logFile,
      detached: true,
      atCleanup: 'stop',
      scrapeInterval: launch.scrapeInterval,
    });
    launch.progress(
      `${launch.owner}: starting ${nodeId} on ${node.url} (pid ${node.pid}, log ${path.relative(process.cwd(), logFile)})`,
    );
    return node;
  };
  const nodes = await Promise.all(ports.map(start));
  await Promise.all(nodes.map((n) => n.ready(90_000)));
  const nginx = (settings.nginx ?? count > 1) ? await startNginx(launch, ports) : undefined;
  if (count > 1) {
    launch.progress(`${launch.owner}: ${nodes.length} nodes ready; 2 s for the shards to spread`);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
  }
  return {
    url: nginx === undefined ? nodes[0]!.url : `http://127.0.0.1:${nginx.port}`,
    metricsUrls: nodes.map((n) => n.url),
    nodes,
    nginx,
    redisPrefix,
    pids: () => ({
      ...Object.fromEntries(nodes.map((node, i) => [`node-${i + 1}`, node.pid])),
      ...(provider === undefined ? {} : { [`${launch.owner}-payment`]: provider.pid }),
      ...(nginx === undefined ? {} : { [`${launch.owner}-nginx`]: nginx.pid }),
    }),
    restart: async (node) => {
      const i = nodes.indexOf(node);
      if (i < 0) throw new Error(`${node.id} is not a current node of this cluster (restarted already?)`);
      const again = await start(node.port, i);
      await again.ready();
      nodes[i] = again; // `nodes` lists the live processes: a node can be killed and restarted again
      return again;
    },
  };
}

/** A payment provider (`dist/src/payment-provider/main.js`) with this latency and no declines, errors or timeouts. */
async function startProvider(launch: Launch, latencyMs: number) {
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
  const main = path.join(launch.root, 'dist', 'src', 'payment-provider', 'main.js');
  const logFile = path.join(launch.outDir, `payment-${launch.tag}-${port}.log`);
  const started = await startProcess(launch, process.execPath, [main], { cwd: launch.root, env }, logFile, {
    url: `http://127.0.0.1:${port}`,
    probe: '/',
  });
  launch.progress(
    `${launch.owner}: payment provider on ${started.url} (pid ${started.pid}, ${latencyMs} ms, no declines)`,
  );
  return started;
}

/** An nginx from the production nginx.conf, with the production upstream parameters on these ports. */
async function startNginx(launch: Launch, upstreamPorts: readonly number[]) {
  const port = await freePort();
  const dir = path.join(launch.outDir, `nginx-${launch.tag}-${port}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(path.join(dir, 'logs'), { recursive: true });
  const production = await readFile(path.join(REPO_ROOT, 'docker', 'nginx', 'upstreams.conf'), 'utf8');
  // The production file's passive health-check parameters (max_fails, fail_timeout) on these nodes.
  const parameters = /^\s*server\s+\S+([^;]*);/m.exec(production)?.[1]?.trim() ?? '';
  const upstreams = upstreamPorts.map((p) => `server 127.0.0.1:${p} ${parameters};\n`).join('');
  await writeFile(path.join(dir, 'upstreams.conf'), upstreams);
  await writeFile(path.join(dir, 'listen.conf'), `listen 127.0.0.1:${port} backlog=4096;\n`);
  await symlink(path.join(REPO_ROOT, 'docker', 'nginx', 'nginx.conf'), path.join(dir, 'nginx.conf'));
  const args = ['-p', `${dir}/`, '-c', path.join(dir, 'nginx.conf'), '-e', 'stderr'];
  args.push('-g', `daemon off; pid ${path.join(dir, 'nginx.pid')};`);
  const url = `http://127.0.0.1:${port}`;
  const logFile = path.join(dir, 'logs', 'startup.log');
  const { pid } = await startProcess(launch, '/usr/sbin/nginx', args, { cwd: dir }, logFile, {
    url,
    probe: '/nginx-health',
  });
  launch.progress(
    `${launch.owner}: nginx on ${url} (pid ${pid}) → ${upstreamPorts.map((p) => `:${p}`).join(', ')}`,
  );
  return { pid, port };
}

/** A helper process (own group, log file), stopped at cleanup; resolves once `url + probe` answers anything. */
export async function startProcess(
  life: Pick<Lifecycle, 'onCleanup'>,
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
  life.onCleanup(async () => {
    child.kill('SIGTERM');
    await exited;
  });
  const timeoutMs = listen.timeoutMs ?? 10_000;
  const probe = async (): Promise<'up' | 'gone' | 'no'> => {
    if (gone) return 'gone';
    try {
      const res = await request(`${listen.url}${listen.probe}`, {
        headersTimeout: 1_000,
        bodyTimeout: 1_000,
      });
      await res.body.dump();
      return 'up';
    } catch {
      return 'no';
    }
  };
  const { value } = await until(probe, (v) => v !== 'no', timeoutMs, 100);
  if (value === 'up') return { url: listen.url, pid: child.pid! };
  const tail = (await readFile(logFile, 'utf8').catch(() => '')).slice(-2000);
  const why =
    value === 'gone' ? 'the process exited before it listened' : `did not listen within ${timeoutMs} ms`;
  throw new Error(`${path.basename(file)} on ${listen.url}: ${why}\n${tail}`);
}
