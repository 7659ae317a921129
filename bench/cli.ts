/**
 * Benchmark runner: `npm run bench -- <scenario> [options]` (bench/README.md). Scenarios are the modules in
 * bench/scenarios/; each result is printed as a table and notes, saved as JSON (and SVG charts), and summarised
 * as one JSON object on the LAST stdout line. Progress goes to stderr. Exit 0 ok, 1 invariant broken, 2 usage,
 * 130 Ctrl-C.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { renderCharts } from './chart.js';
import { combineRepeats, formatTable } from './report.js';
import { drainCleanups, UsageError, type BenchIO, type BenchOptions, type Scenario } from './scenario.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);
const BENCH_SET = ['HOST', 'PORT', 'REDIS_KEY_PREFIX', 'NODE_ID'];

const scenarioNames = async (): Promise<string[]> =>
  (await readdir(path.join(BENCH_DIR, 'scenarios')).catch(() => [] as string[]))
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => f.slice(0, -3))
    .sort();

async function loadScenario(name: string): Promise<Scenario> {
  const url = new URL(`./scenarios/${name}.ts`, import.meta.url).href;
  const mod = (await import(url)) as { default?: Scenario };
  if (mod.default === undefined) throw new Error(`bench/scenarios/${name}.ts must export defineScenario(…)`);
  return mod.default;
}

async function usage(): Promise<string> {
  const lines = [
    'usage: npm run bench -- <scenario> [--duration s] [--rate r] [--connections c] [--mode open|closed] [--repeat n]',
    '         [--seed n] [--param key=value ...] [--out dir] [--url http://host:port] [--no-build] [--cpu-prof]',
    '         [--service-env KEY=VALUE ...]       (every option and each scenario’s --param: bench/README.md)',
    '',
    'scenarios:',
  ];
  for (const name of await scenarioNames()) {
    const failed = (err: unknown) => ({ describe: `(cannot load: ${String(err)})`, params: [] as const });
    const { describe, params } = await loadScenario(name).catch(failed);
    lines.push(`  ${name.padEnd(12)} ${describe}`);
    if (params.length > 0) lines.push(`  ${''.padEnd(12)} --param ${params.join(', ')}`);
  }
  return lines.join('\n');
}

/** A number option: above 0 (from 0 with `min0`), at most `max`, an integer if `integer`. */
function numeric(raw: string | undefined, flag: string, integer: boolean, max: number, min0 = false) {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  const low = min0 ? n < 0 : n <= 0;
  if (raw.trim() === '' || !Number.isFinite(n) || low || n > max || (integer && !Number.isInteger(n)))
    throw new UsageError(
      `${flag} ${JSON.stringify(raw)}: expected a${integer ? 'n integer' : ' number'} ${min0 ? 'from 0' : 'above 0'}, at most ${max}`,
    );
  return n;
}

function httpUrl(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  const url = URL.canParse(raw) ? new URL(raw) : undefined;
  if (url?.protocol !== 'http:' || url.pathname !== '/')
    throw new UsageError(`--url ${JSON.stringify(raw)}: expected http://host:port with no path`);
  return url.origin;
}

/** `key=value` pairs (`--param`, `--service-env`) as an object, each key matching `keyPattern`. */
function pairs(values: readonly string[], flag: string, keyPattern: RegExp): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of values) {
    const match = new RegExp(`^(${keyPattern.source})=(.*)$`, 's').exec(pair);
    if (!match || (flag === '--param' && match[2] === ''))
      throw new UsageError(
        `${flag} ${JSON.stringify(pair)}: expected ${flag === '--param' ? 'key=value' : 'KEY=VALUE'}`,
      );
    if (flag === '--service-env' && BENCH_SET.includes(match[1]!))
      throw new UsageError(`--service-env: ${match[1]} is set by the bench`);
    out[match[1]!] = match[2]!;
  }
  return out;
}

async function parse(argv: string[]): Promise<{ scenario: Scenario; options: BenchOptions; repeat: number }> {
  const str = { type: 'string' } as const;
  const strs = { type: 'string', multiple: true } as const;
  const bool = { type: 'boolean', default: false } as const;
  let parsed;
  try {
    const load = { duration: str, rate: str, connections: str, mode: str, repeat: str, seed: str };
    const run = { param: strs, out: str, url: str, 'service-env': strs, 'cpu-prof': bool, 'no-build': bool };
    const options = { ...load, ...run, help: { ...bool, short: 'h' } } as const;
    parsed = parseArgs({ args: argv, allowPositionals: true, options });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${await usage()}\n`);
    process.exit(0);
  }
  const name = positionals[0] ?? '';
  if (positionals.length !== 1)
    throw new UsageError(
      name === '' ? 'missing <scenario>' : `one scenario expected, got ${positionals.join(' ')}`,
    );
  if (!(await scenarioNames()).includes(name))
    throw new UsageError(`unknown scenario ${JSON.stringify(name)}`);
  const scenario = await loadScenario(name);
  const modes = scenario.modes ?? ['open'];
  const mode = values.mode ?? modes[0]!;
  if (mode !== 'open' && mode !== 'closed')
    throw new UsageError(`--mode ${JSON.stringify(mode)}: open or closed`);
  if (!modes.includes(mode))
    throw new UsageError(`${name} has no ${mode}-loop mode (it has: ${modes.join(', ')})`);
  const params = pairs(values.param ?? [], '--param', /[a-z][a-z0-9-]*/);
  const has = scenario.params.length === 0 ? 'it takes none' : `it has: ${scenario.params.join(', ')}`;
  for (const key of Object.keys(params).filter((k) => !scenario.params.includes(k)))
    throw new UsageError(`--param ${key}: ${name} has no such parameter (${has})`);
  if (scenario.ownNodes !== undefined && values.url !== undefined)
    throw new UsageError(`${name} ${scenario.ownNodes}: it cannot run with --url`);
  const serviceEnv = values['service-env'] ?? [];
  if (serviceEnv.length > 0 && values.url !== undefined)
    throw new UsageError('--service-env applies to the service the bench starts, not to --url');
  const defaults = scenario.defaults ?? {};
  const options: BenchOptions = {
    durationS: numeric(values.duration, '--duration', false, 24 * 3600) ?? defaults.durationS ?? 10,
    connections: numeric(values.connections, '--connections', true, 20_000) ?? defaults.connections ?? 200,
    rate: numeric(values.rate, '--rate', false, 1_000_000) ?? defaults.rate,
    mode,
    params,
    outDir: path.resolve(values.out ?? path.join(BENCH_DIR, 'out')),
    url: httpUrl(values.url),
    cpuProf: values['cpu-prof'],
    build: !values['no-build'],
    serviceEnv: pairs(serviceEnv, '--service-env', /[A-Z][A-Z0-9_]*/),
    seed: numeric(values.seed, '--seed', true, 0xffff_ffff, true),
    runTag: new Date().toISOString().replace(/[-:]|\.\d+/g, ''),
  };
  return { scenario, options, repeat: numeric(values.repeat, '--repeat', true, 100) ?? 1 };
}

/** The commit and the files that differed from it when the run started (the build is of the working tree). */
function source(): { head: string | null; changed: string[] } {
  const git = (...args: string[]): string | null => {
    try {
      return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trimEnd();
    } catch {
      return null;
    }
  };
  const status = git('status', '--porcelain', '--untracked-files=all', '--', '.', ':!bench/out');
  return { head: git('rev-parse', '--short', 'HEAD'), changed: status ? status.split('\n') : [] };
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = await parse(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`bench: ${err.message}\n\n${await usage()}\n`);
    return 2;
  }
  const { scenario, options, repeat } = parsed;
  const cleanups: (() => Promise<void> | void)[] = [];
  const abort = new AbortController();
  const progress = (line: string) => void process.stderr.write(`${line}\n`);
  const runCleanups = () => drainCleanups(cleanups, progress);
  const onSignal = (): void => {
    if (abort.signal.aborted) process.exit(130);
    process.stderr.write('bench: interrupted; stopping the service (Ctrl-C again to exit now)\n');
    abort.abort();
    void runCleanups().then(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const io: BenchIO = { progress, onCleanup: (fn) => cleanups.push(fn), signal: abort.signal };

  const summaries: Record<string, unknown>[] = [];
  for (let run = 1; run <= repeat; run += 1) {
    if (repeat > 1) progress(`bench: run ${run} of ${repeat}`);
    const runTag = repeat === 1 ? options.runTag : `${options.runTag}-r${run}`;
    const summary = await runOnce(scenario, { ...options, runTag }, io, runCleanups);
    if (abort.signal.aborted) return 130;
    summaries.push(summary);
    if (summary['ok'] !== true) break; // a broken invariant ends the series: it is the finding
  }
  let last = summaries[summaries.length - 1]!;
  if (repeat > 1) {
    last = combineRepeats(scenario.name, summaries, repeat);
    const file = path.join(options.outDir, `${scenario.name}-${options.runTag}-repeat.json`);
    const record = { argv: process.argv.slice(2), runs: summaries, summary: last };
    await writeFile(file, `${JSON.stringify(record, null, 2)}\n`);
    last = { ...last, result_file: path.relative(process.cwd(), file) };
    process.stdout.write(
      `\n${scenario.name}: ${summaries.length} runs; median (min-max) of each figure in ${last['result_file'] as string}\n`,
    );
  }
  process.stdout.write(`${JSON.stringify(last)}\n`);
  return last['usage'] === true ? 2 : last['ok'] === true ? 0 : 1;
}

/** The machine the run is on (each result file keeps it; the summary says it in one line). */
const machine = () => ({
  nproc: availableParallelism(),
  cpuModel: cpus()[0]?.model ?? 'unknown',
  memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
  node: process.version,
  platform: `${process.platform}-${process.arch}`,
  loadAverage1mAtStart: Math.round(loadavg()[0]! * 100) / 100,
});

/** One run of the scenario: table, notes, JSON file and charts; returns its summary (printed last by main). */
async function runOnce(scenario: Scenario, options: BenchOptions, io: BenchIO, cleanUp: () => Promise<void>) {
  const [startedAt, host, tree] = [new Date().toISOString(), machine(), source()];
  const result = await scenario.run(options, io).catch((err: unknown) => err as Error);
  await cleanUp();
  if (result instanceof UsageError) {
    io.progress(`bench: ${result.message} (README: bench/README.md)`);
    return { scenario: scenario.name, ok: false, error: result.message, usage: true };
  }
  if (result instanceof Error) {
    if (!io.signal.aborted) io.progress(`bench: ${scenario.name} failed: ${result.stack ?? result.message}`);
    return { scenario: scenario.name, ok: false, error: result.message };
  }
  if (io.signal.aborted) return {};

  await mkdir(options.outDir, { recursive: true });
  const base = path.join(options.outDir, `${scenario.name}-${options.runTag}`);
  const relative = (file: string) => path.relative(process.cwd(), file);
  const charts = await renderCharts(result.charts ?? [], base).catch((err: unknown) => {
    io.progress(`bench: charts not written: ${String(err)}`);
    return [] as string[];
  });
  const summary = {
    scenario: scenario.name,
    ok: result.ok,
    ...result.summary,
    machine: `${host.nproc} x ${host.cpuModel}, ${host.memoryGiB} GiB`,
    result_file: relative(`${base}.json`),
    ...(charts.length > 0 ? { charts: charts.map(relative) } : {}),
  };
  const { table, notes, details } = result;
  const record = { scenario: scenario.name, startedAt, finishedAt: new Date().toISOString() };
  const run = { argv: process.argv.slice(2), options, machine: host, source: tree };
  const json = JSON.stringify({ ...record, ...run, summary, table, notes, details }, null, 2);
  await writeFile(`${base}.json`, `${json}\n`);

  const changes =
    tree.changed.length > 0 ? ` + working-tree changes: ${tree.changed.join(', ')}` : ' (clean tree)';
  const lines = [`\n${scenario.name}: ${scenario.describe}\n`, formatTable(table), '', ...notes];
  lines.push(`source: ${tree.head ?? 'unknown commit'}${changes}`, `result file: ${summary.result_file}`);
  lines.push(...charts.map((c) => `chart: ${relative(c)}`));
  if (!result.ok) lines.push(`FAILED: ${scenario.name}: an invariant is broken (see the notes above)`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return summary;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
