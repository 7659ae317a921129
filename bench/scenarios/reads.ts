/**
 * Reads: a cached `GET /products/:id` on one node vs a bare uWebSockets.js hello answering the same bytes,
 * one wrk client, phases node, hello × rounds: requests/s, latency, errors, bytes, CPU of each process, and
 * the node's own count of cache hits (≥ 99% needed).
 */
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { createProducts } from '../api.js';
import { freePort } from '../../scripts/node-launcher.js';
import { startProcess } from '../cluster.js';
import { backgroundBusy, cores, cpuShares, cpuSnapshot, type CpuShares } from '../cpu.js';
import { round, roundOrNull } from '../measure.js';
import { scrape, type Samples } from '../prom.js';
import { fixed, num, tableOf } from '../report.js';
import { defineScenario, type Run } from '../scenario.js';
import type { BenchIO, BenchOptions, ScenarioResult } from '../types.js';

const BENCH_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ROOT = path.dirname(BENCH_DIR);
const HELLO = path.join(BENCH_DIR, 'uws-hello.ts');
const WRK_SCRIPT = path.join(BENCH_DIR, 'wrk-report.lua');
const TARGET_RATIO = 0.7;
const MOONSHOT_RATIO = 0.85;
/** `X-Cache` values that mean "answered from a cache" (HIT, or a more precise HIT-… of a later cache). */
const CACHE_HIT = /^HIT/i;
/** Headers of the node's answer the hello server does not copy: uWS writes them itself. */
const OWN_HEADERS = new Set(['date', 'content-length', 'uwebsockets', 'connection', 'keep-alive']);
const INSTALL_WRK = 'install it with `apt-get install -y wrk` (Debian package wrk) and run again';

type Target = 'node' | 'hello';

/** What `bench/wrk-report.lua` prints after a run (µs, exact counts). */
interface WrkReport {
  readonly requests: number;
  readonly bytes: number;
  readonly duration_us: number;
  readonly errors: Readonly<Record<'connect' | 'read' | 'write' | 'status' | 'timeout', number>>;
  readonly latency_us: Readonly<Record<'p50' | 'p90' | 'p99' | 'p999' | 'max' | 'mean', number>>;
  /** wrk's own CPU (user + system), s: the shell's `times` after wrk exited; undefined if not printed. */
  readonly cpuS: number | undefined;
}

/**
 * One phase's figures: cores of the node, the hello server and wrk (undefined without /proc), the rest of the
 * machine (interrupts, anyone else), and for node phases the node's `product_cache_reads_total` deltas.
 */
function phaseOf(
  target: Target,
  round: number,
  wrk: WrkReport,
  cpu: CpuShares,
  cacheReads?: Record<string, number>,
) {
  const nodeCores = cpu.processCores['node'];
  const helloCores = cpu.processCores['hello'];
  const wrkCores = wrk.cpuS === undefined ? undefined : wrk.cpuS / cpu.wallS;
  const known = (nodeCores ?? 0) + (helloCores ?? 0) + (wrkCores ?? 0);
  const restCores =
    cpu.machineBusy === undefined ? undefined : Math.max(0, cpu.machineBusy * cores() - known);
  return { target, round, wrk, wallS: cpu.wallS, nodeCores, helloCores, wrkCores, restCores, cacheReads };
}

type Phase = ReturnType<typeof phaseOf>;

/** `answers`: `status X-Cache[/X-Cache-Tier]` of each product's answer, e.g. `200 HIT/memory`. */
type CacheCheck = { readonly when: string; readonly answers: readonly string[] };

function requireWrk(): string {
  const probe = spawnSync('wrk', ['-v'], { encoding: 'utf8' });
  if (probe.error !== undefined) {
    const code = (probe.error as NodeJS.ErrnoException).code ?? probe.error.message;
    throw new Error(`the reads scenario needs wrk, which is not on PATH (${code}): ${INSTALL_WRK}`);
  }
  return /^wrk (\S+)/m.exec(`${probe.stdout}${probe.stderr}`)?.[1] ?? 'unknown';
}

/** Children's user + system CPU from the last line of a shell's `times` (`0m1.230s 0m0.450s`), s. */
function childrenCpuS(out: string): number | undefined {
  const m = /^(\d+)m([\d.]+)s (\d+)m([\d.]+)s\s*$/m.exec(out.trimEnd().split('\n').pop() ?? '');
  return m === null ? undefined : Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4]);
}

/** One wrk run cycling through `paths`, through `sh` so that `times` prints wrk's own CPU. */
function runWrk(
  url: string,
  paths: readonly string[],
  settings: { threads: number; connections: number; durationS: number },
  io: BenchIO,
): Promise<WrkReport> {
  const args = [
    `-t${settings.threads}`,
    `-c${settings.connections}`,
    `-d${settings.durationS}s`,
    '--timeout',
    '5s',
    '-s',
    WRK_SCRIPT,
    `${url}${paths[0]!}`,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', 'wrk "$@" && times', 'sh', ...args], {
      env: { ...process.env, READS_PATHS: paths.join(' ') },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // a process group of its own: Ctrl-C stops the shell and wrk together (below)
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const abort = () => {
      try {
        process.kill(-child.pid!, 'SIGTERM');
      } catch {
        // already gone
      }
    };
    io.signal.addEventListener('abort', abort, { once: true });
    child.once('error', (err) =>
      reject(new Error(`wrk did not start (${err.message}): ${INSTALL_WRK}`, { cause: err })),
    );
    child.once('exit', (code, signal) => {
      io.signal.removeEventListener('abort', abort);
      const line = /^WRK_JSON (.*)$/m.exec(out)?.[1];
      if (code !== 0 || line === undefined)
        reject(new Error(`wrk ${args.join(' ')} exited ${code ?? signal}:\n${out.slice(-2000)}`));
      else resolve({ ...(JSON.parse(line) as Omit<WrkReport, 'cpuS'>), cpuS: childrenCpuS(out) });
    });
  });
}

/** The bare uWS server, its own process, answering `body` with `headers`; stopped at cleanup. */
async function startHello(
  options: BenchOptions,
  io: BenchIO,
  body: string,
  headers: Record<string, string>,
): Promise<{ url: string; pid: number }> {
  const port = await freePort();
  const logFile = path.join(options.outDir, `uws-hello-${options.runTag}-${port}.log`);
  const args = ['--import', 'tsx', HELLO, String(port), body, JSON.stringify(headers)];
  const { url, pid } = await startProcess(io, process.execPath, args, { cwd: ROOT }, logFile, {
    url: `http://127.0.0.1:${port}`,
    probe: '/',
    timeoutMs: 15_000,
  }).catch((err: unknown) => {
    throw new Error(`the uWS hello server did not start: ${(err as Error).message}`, { cause: err });
  });
  io.progress(`bench: uWS hello on ${url} (pid ${pid}, log ${path.relative(process.cwd(), logFile)})`);
  return { url, pid };
}

/** One GET of each path: `status X-Cache[/X-Cache-Tier]` per answer, and the first answer's body and headers. */
async function readAll(url: string, paths: readonly string[]) {
  const answers: string[] = [];
  let first: { body: string; headers: Record<string, string> } | undefined;
  for (const p of paths) {
    const res = await request(`${url}${p}`, { headersTimeout: 5_000, bodyTimeout: 5_000 });
    const body = await res.body.text();
    const [cache, tier] = [res.headers['x-cache'], res.headers['x-cache-tier']];
    answers.push(
      `${res.statusCode} ${typeof cache === 'string' ? cache : '-'}${typeof tier === 'string' ? `/${tier}` : ''}`,
    );
    if (first === undefined) {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(res.headers))
        if (typeof v === 'string' && !OWN_HEADERS.has(k)) headers[k] = v;
      first = { body, headers };
    }
  }
  return { answers, first: first! };
}

const CACHE_READS = 'product_cache_reads_total';

/** The node's product reads over a phase by label set, from its `/metrics` (every answer, not a sample). */
function cacheReadDeltas(before: Samples, after: Samples): Record<string, number> {
  const reads: Record<string, number> = {};
  for (const [sample, value] of after) {
    if (!sample.startsWith(`${CACHE_READS}{`)) continue;
    const n = value - (before.get(sample) ?? 0);
    if (n > 0) reads[sample.slice(CACHE_READS.length)] = n;
  }
  return reads;
}

/** Hits and all reads of some phases' `cacheReads` (a label set with `result="hit"` is a hit). */
function cacheTotals(phases: readonly Phase[]): { hits: number; reads: number } {
  let hits = 0;
  let reads = 0;
  for (const p of phases)
    for (const [labels, n] of Object.entries(p.cacheReads ?? {})) {
      reads += n;
      if (labels.includes('result="hit"')) hits += n;
    }
  return { hits, reads };
}

const isHit = (answer: string): boolean => {
  const [status, cache = ''] = answer.split(' ');
  return status === '200' && CACHE_HIT.test(cache);
};

const errorCount = (w: WrkReport): number => Object.values(w.errors).reduce((s, n) => s + n, 0);

async function run(run: Run): Promise<ScenarioResult> {
  const { options, io } = run;
  const wrkVersion = requireWrk();
  const threads = run.param('threads', 2, 1, 64);
  const productCount = run.param('products', 4, 1, 100);
  const rounds = run.param('rounds', 2, 1, 20);
  const warmupS = run.param('warmup', 1, 0, 60);
  const minHitPct = run.param('min-hit-pct', 99, 0, 100);
  if (options.connections < threads) throw new Error(`--connections must be at least threads (${threads})`);
  // wrk takes whole seconds (-d2s; no fractions, no ms).
  if (!Number.isInteger(options.durationS) || !Number.isInteger(warmupS))
    throw new Error('reads: --duration and --param warmup must be whole seconds (wrk -d takes no fractions)');

  const { cluster, admin, tokens } = await run.setUp({
    cluster: { nodes: 1, nginx: false },
    users: [],
    backgroundMs: 0,
  });
  const nodeUrl = cluster.url;
  const tag = run.tag('reads');
  const products = await createProducts(admin, tokens, tag, productCount, 1_000);
  const paths = products.map((p) => `/products/${p.id}`);

  // Each product read once (a miss fills the cache), then until every answer is a 200 from the cache.
  const cacheChecks: CacheCheck[] = [];
  let warm = await readAll(nodeUrl, paths);
  for (let i = 0; i < 20 && !warm.answers.every(isHit); i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    warm = await readAll(nodeUrl, paths);
  }
  cacheChecks.push({ when: 'before the load', answers: warm.answers });
  const hello = await startHello(options, io, warm.first.body, warm.first.headers);
  const urls: Record<Target, string> = { node: nodeUrl, hello: hello.url };
  const pids = { hello: hello.pid, node: cluster.nodes[0]?.pid };
  const background = await backgroundBusy(1_000);
  const wrkSettings = { threads, connections: options.connections };

  if (warmupS > 0)
    for (const target of ['node', 'hello'] as const) {
      io.progress(`bench: warm-up ${target}, ${warmupS} s`);
      await runWrk(urls[target], paths, { ...wrkSettings, durationS: warmupS }, io);
    }

  const phases: Phase[] = [];
  for (let r = 1; r <= rounds && !io.signal.aborted; r += 1) {
    for (const target of ['node', 'hello'] as const) {
      io.progress(
        `bench: ${target} #${r}: wrk -t${threads} -c${options.connections} -d${options.durationS}s ${urls[target]}${paths.length > 1 ? ` (${paths.length} paths)` : paths[0]!}`,
      );
      const metricsBefore = target === 'node' ? await scrape(nodeUrl) : undefined;
      const before = cpuSnapshot(pids);
      const wrk = await runWrk(urls[target], paths, { ...wrkSettings, durationS: options.durationS }, io);
      const cpu = cpuShares(before, cpuSnapshot(pids));
      const cacheReads =
        metricsBefore === undefined ? undefined : cacheReadDeltas(metricsBefore, await scrape(nodeUrl));
      phases.push(phaseOf(target, r, wrk, cpu, cacheReads));
      io.progress(
        `bench: ${target} #${r}: ${num(wrk.requests / (wrk.duration_us / 1e6))} requests/s, p99 ${round(wrk.latency_us.p99 / 1000, 2)} ms, errors ${errorCount(wrk)}`,
      );
      if (target === 'node')
        cacheChecks.push({ when: `after node #${r}`, answers: (await readAll(nodeUrl, paths)).answers });
    }
  }

  const of = (target: Target) => phases.filter((p) => p.target === target);
  const perS = (target: Target) => {
    const ps = of(target);
    const us = ps.reduce((s, p) => s + p.wrk.duration_us, 0);
    return us > 0 ? ps.reduce((s, p) => s + p.wrk.requests, 0) / (us / 1e6) : NaN;
  };
  /** The highest of the target's phases (wrk gives percentiles per run, not histograms to merge). */
  const worstMs = (target: Target, key: keyof WrkReport['latency_us']) =>
    round(Math.max(...of(target).map((p) => p.wrk.latency_us[key])) / 1000, 2);
  /** Cores of a process over its own target's phases, time-weighted; undefined when unknown. */
  const meanCores = (target: Target, get: (p: Phase) => number | undefined) => {
    const ps = of(target);
    if (ps.some((p) => get(p) === undefined)) return undefined;
    return ps.reduce((s, p) => s + get(p)! * p.wallS, 0) / ps.reduce((s, p) => s + p.wallS, 0);
  };
  const cpuUsPer = (target: Target, coresOf: number | undefined) =>
    coresOf === undefined ? null : round((coresOf * 1e6) / perS(target), 1);
  const bytesPer = (target: Target) => {
    const ps = of(target);
    return round(ps.reduce((s, p) => s + p.wrk.bytes, 0) / ps.reduce((s, p) => s + p.wrk.requests, 0), 0);
  };

  const nodePerS = perS('node');
  const helloPerS = perS('hello');
  const ratio = round(nodePerS / helloPerS, 3);
  const nodeCores = meanCores('node', (p) => p.nodeCores);
  const helloCores = meanCores('hello', (p) => p.helloCores);
  const errorsOf = (target: Target) => of(target).reduce((s, p) => s + errorCount(p.wrk), 0);
  const errors = { node: errorsOf('node'), hello: errorsOf('hello') };
  const cacheValues = [...new Set(cacheChecks.flatMap((c) => c.answers.map((a) => a.split(' ')[1]!)))];
  // Every answer of the node phases by the node's own count; the check reads only say which tier a read
  // takes at a given moment (a reload of an unconfirmed stock is a miss by design).
  const cache = cacheTotals(of('node'));
  const hitPct = cache.reads > 0 ? round((cache.hits / cache.reads) * 100, 3) : NaN;
  const cacheOk = cacheChecks[0]!.answers.every(isHit) && hitPct >= minHitPct;
  const complete = phases.length === rounds * 2;
  const ok = complete && errors.node === 0 && errors.hello === 0 && cacheOk;
  const restMax = Math.max(...phases.map((p) => p.restCores ?? NaN));
  const coresOrNull = (n: number | undefined) => roundOrNull(n, 2);

  const summary = {
    mode: 'closed-loop',
    client: `wrk ${wrkVersion}`,
    node_reads_per_s: round(nodePerS, 0),
    hello_per_s: round(helloPerS, 0),
    ratio,
    target_ratio: TARGET_RATIO,
    moonshot_ratio: MOONSHOT_RATIO,
    target_met: ratio >= TARGET_RATIO,
    node_p50_ms: worstMs('node', 'p50'),
    node_p99_ms: worstMs('node', 'p99'),
    hello_p50_ms: worstMs('hello', 'p50'),
    hello_p99_ms: worstMs('hello', 'p99'),
    node_errors: errors.node,
    hello_errors: errors.hello,
    x_cache: cacheValues.join(','),
    node_cache_hit_pct: hitPct,
    node_reads_counted: cache.reads,
    min_hit_pct: minHitPct,
    cache_ok: cacheOk,
    node_cpu_cores: coresOrNull(nodeCores),
    hello_cpu_cores: coresOrNull(helloCores),
    node_cpu_us_per_read: cpuUsPer('node', nodeCores),
    hello_cpu_us_per_request: cpuUsPer('hello', helloCores),
    wrk_cores_node: coresOrNull(meanCores('node', (p) => p.wrkCores)),
    wrk_cores_hello: coresOrNull(meanCores('hello', (p) => p.wrkCores)),
    rest_cores_max: Number.isFinite(restMax) ? round(restMax, 2) : null,
    node_bytes_per_response: bytesPer('node'),
    hello_bytes_per_response: bytesPer('hello'),
    products: productCount,
    connections: options.connections,
    threads,
    rounds,
    duration_s: options.durationS,
    background_busy: roundOrNull(background, 2),
  };

  const cell = (n: number | undefined, digits = 2) => fixed(n, digits);
  const pct = (t: { hits: number; reads: number }) =>
    t.reads === 0 ? '-' : `${((t.hits / t.reads) * 100).toFixed(2)}%`;
  return {
    ok,
    summary,
    table: tableOf<Phase>(
      [
        ['phase', (p) => `${p.target} #${p.round}`],
        ['requests/s', (p) => Math.round(p.wrk.requests / (p.wrk.duration_us / 1e6))],
        ['p50 ms', (p) => cell(p.wrk.latency_us.p50 / 1000)],
        ['p90 ms', (p) => cell(p.wrk.latency_us.p90 / 1000)],
        ['p99 ms', (p) => cell(p.wrk.latency_us.p99 / 1000)],
        ['max ms', (p) => cell(p.wrk.latency_us.max / 1000, 1)],
        ['errors', (p) => errorCount(p.wrk)],
        ['cache hit %', (p) => (p.cacheReads === undefined ? '-' : pct(cacheTotals([p])))],
        ['bytes/answer', (p) => Math.round(p.wrk.bytes / Math.max(1, p.wrk.requests))],
        ['node cores', (p) => cell(p.nodeCores)],
        ['hello cores', (p) => cell(p.helloCores)],
        ['wrk cores', (p) => cell(p.wrkCores)],
        ['rest cores', (p) => cell(p.restCores)],
      ],
      phases,
    ),
    notes: [
      `mode: CLOSED LOOP (wrk ${wrkVersion}, ${threads} threads, ${options.connections} connections, ${options.durationS} s per phase, ${warmupS} s warm-up of each), phases node, hello × ${rounds}; ${productCount} product(s), each request the next of ${paths.join(' ')} (the same paths to both servers). wrk's latencies are from each request's send on its connection (not corrected for coordinated omission).`,
      `node: GET /products/:id straight to one app node (no nginx, security on: the bench's limits, anonymous read); hello: bench/uws-hello.ts, a bare uWebSockets.js app (its own process, native binary required) answering the node's body and headers (${bytesPer('hello')} vs ${bytesPer('node')} bytes per answer with headers).`,
      `node/hello = ${num(nodePerS)} / ${num(helloPerS)} = ${ratio} (target ≥ ${TARGET_RATIO}, moonshot ${MOONSHOT_RATIO}): ${ratio >= TARGET_RATIO ? 'target met' : 'below target'}.`,
      `CPU per answer: node ${summary.node_cpu_us_per_read ?? '-'} µs, hello ${summary.hello_cpu_us_per_request ?? '-'} µs (process CPU from /proc ÷ answers); wrk took ${cell(meanCores('node', (p) => p.wrkCores))} cores in the node phases and ${cell(meanCores('hello', (p) => p.wrkCores))} in the hello phases, interrupts and everyone else up to ${cell(Number.isFinite(restMax) ? restMax : undefined)} of the machine's ${cores()} cores: on a 2-core box the client and the server share the cores, so both rates are capped by the box, not only by the server.`,
      `cache: the node counted ${num(cache.reads)} product reads in its phases (wrk: ${num(of('node').reduce((s, p) => s + p.wrk.requests, 0))} answers), ${pct(cache)} of them hits (${CACHE_READS} by label: ${JSON.stringify(
        of('node').map((p) => p.cacheReads),
      )}); the run needs ≥ ${minHitPct}% (--param min-hit-pct).`,
      ...cacheChecks.map(
        (c) =>
          `X-Cache ${c.when}: ${c.answers.join(', ')}${c.answers.every(isHit) ? '' : '  <- not a 200 cache hit at that moment'}`,
      ),
      ...(errors.node + errors.hello > 0
        ? [
            `ERRORS: ${phases
              .filter((p) => errorCount(p.wrk) > 0)
              .map((p) => `${p.target} #${p.round} ${JSON.stringify(p.wrk.errors)}`)
              .join('; ')} (status = non-2xx/3xx answers)`,
          ]
        : []),
      ...(complete ? [] : ['INCOMPLETE: interrupted before every phase ran']),
      `checks: ${ok ? 'OK' : 'FAILED'} (every answer 2xx, no socket errors, every product a 200 X-Cache HIT before the load, ≥ ${minHitPct}% of the node phases' reads cache hits by the node's count)`,
    ],
    details: { phases, cacheChecks, paths, helloHeaders: warm.first.headers },
  };
}

export default defineScenario({
  name: 'reads',
  describe:
    'cached GET /products/:id on one node vs a bare uWebSockets.js hello, same client (wrk -c100), same run: requests/s, ratio, p50/p99, CPU',
  defaults: { durationS: 10, connections: 100 },
  run,
});
