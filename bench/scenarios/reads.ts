/**
 * Reads: a cached `GET /products/:id` on one node vs a bare uWebSockets.js hello answering the same bytes,
 * and vs the same hello reading each request's peer address (what the node's per-IP limit needs), one wrk
 * client, phases node, hello, peer × rounds: requests/s, latency, errors, CPU per answer, and the node's own
 * count of cache hits (≥ 99% needed).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { freePort } from '../../scripts/node-launcher.js';
import { startProcess } from '../cluster.js';
import { background as sampleBackground, cpuShares, cpuSnapshot, stackPids } from '../cpu.js';
import { familyDelta, round, roundOrNull, scrape } from '../measure.js';
import { fixed, msColumns, num, sum, tableOf } from '../report.js';
import { defineScenario, keyed, UsageError, type BenchIO } from '../scenario.js';

const BENCH_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ROOT = path.dirname(BENCH_DIR);
const TARGET_RATIO = 0.7;
const MOONSHOT_RATIO = 0.85;
/** Headers of the node's answer the hello server does not copy: uWS writes them itself. */
const OWN_HEADERS = new Set(['date', 'content-length', 'uwebsockets', 'connection', 'keep-alive']);
const INSTALL_WRK = 'install it with `apt-get install -y wrk` (Debian package wrk) and run again';
const CACHE_READS = 'product_cache_reads_total';

/** What `bench/wrk-report.lua` prints after a run: µs, exact counts. */
type WrkReport = Readonly<{
  requests: number;
  bytes: number;
  duration_us: number;
  errors: Readonly<Record<string, number>>;
  latency_us: Readonly<Record<'p50' | 'p90' | 'p99' | 'max', number>>;
}>;

/** The node, the bare hello, the hello that reads each request's peer address. */
const TARGETS = ['node', 'hello', 'peer'] as const;
type Target = (typeof TARGETS)[number];

/** A phase: wrk's report, the target's cores (/proc), and for the node its reads and cache hits (/metrics). */
type Phase = Readonly<{ target: Target; round: number; wrk: WrkReport; wallS: number }> & {
  readonly cores: number | undefined;
  /** Cores the host took from this guest during the phase (steal). */
  readonly steal: number | undefined;
  readonly reads?: number;
  readonly hits?: number;
};

/** One wrk run cycling through `paths` (`bench/wrk-report.lua`), in a process group Ctrl-C stops. */
function runWrk(url: string, paths: readonly string[], t: number, c: number, durationS: number, io: BenchIO) {
  const script = path.join(BENCH_DIR, 'wrk-report.lua');
  const args = [`-t${t}`, `-c${c}`, `-d${durationS}s`, '--timeout', '5s', '-s', script, `${url}${paths[0]!}`];
  return new Promise<WrkReport>((resolve, reject) => {
    const child = spawn('wrk', args, {
      env: { ...process.env, READS_PATHS: paths.join(' ') },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const abort = () => child.kill('SIGTERM');
    io.signal.addEventListener('abort', abort, { once: true });
    child.once('error', (err) => reject(new Error(`wrk did not start (${err.message}): ${INSTALL_WRK}`)));
    child.once('exit', (code, signal) => {
      io.signal.removeEventListener('abort', abort);
      const line = /^WRK_JSON (.*)$/m.exec(out)?.[1];
      if (code === 0 && line !== undefined) resolve(JSON.parse(line) as WrkReport);
      else reject(new Error(`wrk ${args.join(' ')} exited ${code ?? signal}:\n${out.slice(-2000)}`));
    });
  });
}

/** One GET of each path: `status X-Cache[/X-Cache-Tier]` per answer, and the first answer's body and headers. */
async function readAll(url: string, paths: readonly string[]) {
  const answers = await Promise.all(
    paths.map(async (p) => {
      const res = await request(`${url}${p}`, { headersTimeout: 5_000, bodyTimeout: 5_000 });
      const { 'x-cache': cache = '-', 'x-cache-tier': tier } = res.headers;
      const headers = Object.entries(res.headers).filter(
        ([k, v]) => typeof v === 'string' && !OWN_HEADERS.has(k),
      );
      const answer = `${res.statusCode} ${String(cache)}${tier === undefined ? '' : `/${String(tier)}`}`;
      return { answer, body: await res.body.text(), headers };
    }),
  );
  const [{ body, headers }] = answers as [(typeof answers)[0]];
  return { answers: answers.map((a) => a.answer), body, headers: Object.fromEntries(headers) };
}

/** A 200 answered from a cache: `X-Cache` HIT, or a more precise HIT-… of a later cache. */
const isHit = (answer: string) => /^200 HIT/i.test(answer);
const errorCount = (w: WrkReport) => Object.values(w.errors).reduce((s, n) => s + n, 0);
const perS = (w: WrkReport) => w.requests / (w.duration_us / 1e6);

/** A target's figures over its phases: answers/s, the highest p50/p99 (wrk gives no histograms to merge), CPU,
 * as `<target>_…` summary keys but for answers/s and CPU. */
function figures(target: Phase['target'], all: readonly Phase[]) {
  const phases = all.filter((p) => p.target === target);
  const rate = sum(phases, (p) => p.wrk.requests) / (sum(phases, (p) => p.wrk.duration_us) / 1e6);
  const worstMs = (key: 'p50' | 'p99') =>
    round(Math.max(...phases.map((p) => p.wrk.latency_us[key])) / 1000, 2);
  const known = phases.every((p) => p.cores !== undefined);
  const cores = known ? sum(phases, (p) => p.cores! * p.wallS) / sum(phases, (p) => p.wallS) : undefined;
  const errors = sum(phases, (p) => errorCount(p.wrk));
  const keys = keyed(target, { p50_ms: worstMs('p50'), p99_ms: worstMs('p99'), errors });
  return { phases, rate, errors, cpuUs: roundOrNull(cores && (cores * 1e6) / rate, 1), keys };
}

const columns: Parameters<typeof tableOf<Phase>>[0] = [
  ['phase', (p) => `${p.target} #${p.round}`],
  ['requests/s', (p) => Math.round(perS(p.wrk))],
  ...msColumns(['p50', 'p90', 'p99', 'max'] as const, (p: Phase, k) => fixed(p.wrk.latency_us[k] / 1000, 2)),
  ['errors', (p) => errorCount(p.wrk)],
  ['cache hit %', (p) => (p.reads ? fixed(((p.hits ?? 0) / p.reads) * 100, 2) : '-')],
  ['bytes/answer', (p) => Math.round(p.wrk.bytes / Math.max(1, p.wrk.requests))],
  ['cores', (p) => fixed(p.cores, 2)],
  ['host steal', (p) => fixed(p.steal, 2)],
];

export default defineScenario({
  name: 'reads',
  describe:
    'cached GET /products/:id on one node vs a bare uWebSockets.js hello (and one reading peer addresses), same client (wrk -c100), same run: requests/s, ratio, p50/p99, CPU',
  params: ['threads', 'rounds', 'warmup', 'min-hit-pct', 'products'],
  defaults: { durationS: 10, connections: 100 },
  async run(run) {
    const { options, io } = run;
    const probe = spawnSync('wrk', ['-v'], { encoding: 'utf8' });
    if (probe.error !== undefined)
      throw new Error(`reads needs wrk, not on PATH (${probe.error.message}): ${INSTALL_WRK}`);
    const client = `wrk ${/^wrk (\S+)/m.exec(`${probe.stdout}${probe.stderr}`)?.[1] ?? 'unknown'}`;
    const threads = run.param('threads', 2, 1, 64);
    const rounds = run.param('rounds', 2, 1, 20);
    const warmupS = run.param('warmup', 1, 0, 60);
    const minHitPct = run.param('min-hit-pct', 99, 0, 100);
    const count = run.param('products', 4, 1, 100);
    const { connections, durationS } = options;
    if (connections < threads) throw new UsageError(`--connections must be at least threads (${threads})`);
    if (!Number.isInteger(durationS) || !Number.isInteger(warmupS))
      throw new UsageError('reads: --duration and --param warmup must be whole seconds (as wrk -d)');

    const { cluster } = await run.setUp({ cluster: { nodes: 1 }, users: [], backgroundMs: 0 });
    const node = cluster.url;
    const paths = (await run.productSeries(count, 1_000)).map((id) => `/products/${id}`);
    // Each product read once (a miss fills the cache), then until every answer is a 200 from the cache.
    let warm = await readAll(node, paths);
    for (let i = 0; i < 20 && !warm.answers.every(isHit); i += 1) {
      await sleep(100);
      warm = await readAll(node, paths);
    }
    // The reference servers answer the node's first answer: its body and its headers.
    const startHello = async (mode: '' | 'peer') => {
      const port = await freePort();
      const script = path.join(BENCH_DIR, 'uws-hello.ts');
      const args = ['--import', 'tsx', script, String(port), warm.body, JSON.stringify(warm.headers), mode];
      const log = path.join(options.outDir, `uws-hello-${options.runTag}-${port}.log`);
      const ready = { url: `http://127.0.0.1:${port}`, probe: '/', timeoutMs: 15_000 };
      return startProcess(io, process.execPath, args, { cwd: ROOT }, log, ready);
    };
    const [hello, peer] = [await startHello(''), await startHello('peer')];
    const urls = { node, hello: hello.url, peer: peer.url };
    const pids = { hello: hello.pid, peer: peer.pid, node: cluster.nodes[0]?.pid };
    const background = await sampleBackground(1_000, { ...stackPids(), ...pids });
    for (const target of warmupS > 0 ? TARGETS : []) {
      io.progress(`bench: warm-up ${target}, ${warmupS} s`);
      await runWrk(urls[target], paths, threads, connections, warmupS, io);
    }

    const phases: Phase[] = [];
    for (let r = 1; r <= rounds && !io.signal.aborted; r += 1)
      for (const target of TARGETS) {
        io.progress(
          `bench: ${target} #${r}: wrk -t${threads} -c${connections} -d${durationS}s ${urls[target]}`,
        );
        // The node idled through the hello's phase, longer than its memory tier trusts a stock (1 s), and
        // Redis's stock key lives 5 s: one read of each product first, so the phase measures cached reads
        // (a product read all the time is then reloaded ahead of its trust's end), not a burst of misses.
        if (target === 'node') await readAll(node, paths);
        const metrics = target === 'node' ? await scrape(node) : undefined;
        const before = cpuSnapshot(pids);
        const wrk = await runWrk(urls[target], paths, threads, connections, durationS, io);
        const cpu = cpuShares(before, cpuSnapshot(pids));
        // Every read of the node's phase by its own count (result="hit": memory or Redis).
        const after = metrics && (await scrape(node));
        const reads = (...labels: string[]) => after && familyDelta(metrics, after, CACHE_READS, ...labels);
        const [wallS, cores] = [cpu.wallS, cpu.processCores[target]];
        const [steal, hits] = [cpu.stealCores, reads('result="hit"')];
        phases.push({ target, round: r, wrk, wallS, cores, steal, reads: reads(), hits });
        io.progress(`bench: ${target} #${r}: ${num(perS(wrk))} requests/s, errors ${errorCount(wrk)}`);
      }

    const [n, h, hp] = [figures('node', phases), figures('hello', phases), figures('peer', phases)];
    const ratio = round(n.rate / h.rate, 3);
    const [peerRatio, helloPeerRatio] = [round(n.rate / hp.rate, 3), round(hp.rate / h.rate, 3)];
    const reads = sum(n.phases, (p) => p.reads ?? 0);
    const hitPct = reads > 0 ? round((sum(n.phases, (p) => p.hits ?? 0) / reads) * 100, 3) : NaN;
    const cacheOk = warm.answers.every(isHit) && hitPct >= minHitPct;
    const complete = phases.length === rounds * TARGETS.length;
    const ok = complete && [n, h, hp].every((f) => f.errors === 0) && cacheOk;
    return {
      ok,
      summary: {
        mode: 'closed-loop',
        client,
        node_reads_per_s: round(n.rate, 0),
        hello_per_s: round(h.rate, 0),
        ratio,
        target_ratio: TARGET_RATIO,
        target_met: ratio >= TARGET_RATIO,
        peer_hello_per_s: round(hp.rate, 0),
        ratio_to_peer_hello: peerRatio,
        peer_hello_ratio: helloPeerRatio,
        ...n.keys,
        ...h.keys,
        ...hp.keys,
        node_cache_hit_pct: hitPct,
        cache_ok: cacheOk,
        node_cpu_us_per_read: n.cpuUs,
        hello_cpu_us_per_request: h.cpuUs,
        peer_hello_cpu_us_per_request: hp.cpuUs,
        background_busy: roundOrNull(background.busy, 2),
        host_steal_cores: roundOrNull(
          Math.max(background.stealCores ?? 0, ...phases.map((p) => p.steal ?? 0)),
          2,
        ),
      },
      table: tableOf(columns, phases),
      notes: [
        `mode: CLOSED LOOP (${client}, ${threads} threads, ${connections} connections, ${durationS} s per phase, ${warmupS} s warm-up of each), node, hello, peer × ${rounds}, every server the same ${paths.length} path(s); wrk's latencies are not corrected for coordinated omission.`,
        `node: GET /products/:id straight to one app node; hello: bench/uws-hello.ts, a bare uWebSockets.js app answering the node's body and headers; peer: the same hello reading each request's peer address as the node must for its per-IP limit (one getpeername system call).`,
        `node/hello = ${num(n.rate)} / ${num(h.rate)} = ${ratio} (target ≥ ${TARGET_RATIO}, moonshot ${MOONSHOT_RATIO}): ${ratio >= TARGET_RATIO ? 'target met' : 'below target'}.`,
        `the peer address's price: peer/hello = ${num(hp.rate)} / ${num(h.rate)} = ${helloPeerRatio} (${num(hp.cpuUs ?? NaN, 1)} against ${num(h.cpuUs ?? NaN, 1)} CPU-µs per answer); node/peer = ${peerRatio}.`,
        `cache: X-Cache before the load ${warm.answers.join(', ')}; the node counted ${num(reads)} product reads in its phases, ${hitPct}% hits (${CACHE_READS}; needed ≥ ${minHitPct}%, --param min-hit-pct).`,
        ...phases
          .filter((p) => errorCount(p.wrk) > 0)
          .map((p) => `ERRORS ${p.target} #${p.round}: ${JSON.stringify(p.wrk.errors)}`),
        ...(complete ? [] : ['INCOMPLETE: interrupted before every phase ran']),
        `checks: ${ok ? 'OK' : 'FAILED'} (every answer 2xx, no socket errors, every product a 200 X-Cache HIT before the load, ≥ ${minHitPct}% of the node's reads cache hits)`,
      ],
      details: { phases, paths, helloHeaders: warm.headers },
    };
  },
});
