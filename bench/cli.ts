/**
 * Benchmark runner: `npm run bench -- <scenario> [--duration s] [--rate r] [--connections c] [--out dir] ...`.
 * Scenarios are the modules in bench/scenarios/; each returns a result that is printed as a table, saved
 * as JSON (and SVG charts), and summarised as one JSON object on the LAST stdout line. Progress goes to stderr.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { renderCharts } from './chart.js';
import { combineRepeats, formatTable } from './report.js';
import { drainCleanups } from './scenario.js';
import type { BenchIO, BenchOptions, Scenario, ScenarioResult } from './types.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const SCENARIO_DIR = path.join(BENCH_DIR, 'scenarios');
const DEFAULT_DURATION_S = 10;
const DEFAULT_CONNECTIONS = 200;

class UsageError extends Error {}

async function scenarioNames(): Promise<string[]> {
  const files = await readdir(SCENARIO_DIR).catch(() => [] as string[]);
  return files
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => f.slice(0, -3))
    .sort();
}

async function loadScenario(name: string): Promise<Scenario> {
  const mod = (await import(new URL(`./scenarios/${name}.ts`, import.meta.url).href)) as {
    default?: Scenario;
  };
  if (mod.default === undefined) throw new Error(`bench/scenarios/${name}.ts must export defineScenario(…)`);
  return mod.default;
}

async function usage(): Promise<string> {
  const lines = [
    'usage: npm run bench -- <scenario> [--duration s] [--rate r] [--connections c] [--mode open|closed] [--repeat n] [--seed n]',
    '                    [--param key=value ...] [--out dir] [--url http://host:port] [--cpu-prof] [--service-env KEY=VALUE ...]',
    '',
    '  --duration s      load time in seconds (per step for step-up scenarios; scenario default)',
    '  --rate r          offered rate, requests/s (open loop; the first step of a step-up; scenario default)',
    '  --connections c   connections the generator holds (closed loop: requests in flight; scenario default)',
    '  --mode m          open (default: arrivals at the offered rate, latency from the intended send time) or closed',
    '  --repeat n        run the scenario n times; the summary gives the median and <key>_min/<key>_max',
    '  --seed n          seed of a randomized scenario (chaos: the fault schedule); default a random one, printed',
    '  --param k=v       a scenario knob (repeatable; see bench/README.md), e.g. --param stock=200',
    '  --out dir         folder for the result JSON (default bench/out)',
    '  --url u           benchmark a running service instead of starting one',
    '  --cpu-prof        start the service under node --cpu-prof (profiles in <out>/profiles)',
    '  --no-build        use dist/ as it is (default: tsc -p tsconfig.build.json first)',
    '  --service-env K=V extra environment of the service the bench starts (repeatable), e.g. MYSQL_POOL_SIZE=64',
    '',
    'scenarios:',
  ];
  for (const name of await scenarioNames()) {
    const describe = await loadScenario(name).then(
      (s) => s.describe,
      (err: unknown) => `(cannot load: ${String(err)})`,
    );
    lines.push(`  ${name.padEnd(12)} ${describe}`);
  }
  return lines.join('\n');
}

/** A number option: above 0 (0 allowed with `min0`), at most `max`, an integer if `integer`. */
function numberOption(raw: string | undefined, flag: string, integer: boolean, max: number, min0 = false) {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (
    raw.trim() === '' ||
    !Number.isFinite(n) ||
    (min0 ? n < 0 : n <= 0) ||
    n > max ||
    (integer && !Number.isInteger(n))
  )
    throw new UsageError(
      `${flag} ${JSON.stringify(raw)}: expected a${integer ? 'n integer' : ' number'} ${min0 ? 'from 0' : 'above 0'}, at most ${max}`,
    );
  return n;
}

function httpUrl(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  if (!URL.canParse(raw))
    throw new UsageError(`--url ${JSON.stringify(raw)} is not a URL (expected http://host:port)`);
  const url = new URL(raw);
  if (url.protocol !== 'http:' || url.pathname !== '/')
    throw new UsageError(`--url ${JSON.stringify(raw)}: expected http://host:port with no path`);
  return url.origin;
}

/** `KEY=VALUE` pairs of --service-env; HOST, PORT, REDIS_KEY_PREFIX and NODE_ID stay the bench's. */
function serviceEnv(pairs: readonly string[], external: boolean): Record<string, string> {
  if (pairs.length > 0 && external)
    throw new UsageError('--service-env applies to the service the bench starts, not to --url');
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const match = /^([A-Z][A-Z0-9_]*)=(.*)$/s.exec(pair);
    if (!match) throw new UsageError(`--service-env ${JSON.stringify(pair)}: expected KEY=VALUE`);
    if (['HOST', 'PORT', 'REDIS_KEY_PREFIX', 'NODE_ID'].includes(match[1]!))
      throw new UsageError(`--service-env: ${match[1]} is set by the bench`);
    env[match[1]!] = match[2]!;
  }
  return env;
}

const timestamp = (date: Date): string =>
  date
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');

async function parse(argv: string[]): Promise<{ scenario: Scenario; options: BenchOptions; repeat: number }> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        duration: { type: 'string' },
        rate: { type: 'string' },
        connections: { type: 'string' },
        mode: { type: 'string' },
        repeat: { type: 'string' },
        seed: { type: 'string' },
        param: { type: 'string', multiple: true },
        out: { type: 'string' },
        url: { type: 'string' },
        'cpu-prof': { type: 'boolean', default: false },
        'no-build': { type: 'boolean', default: false },
        'service-env': { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${await usage()}\n`);
    process.exit(0);
  }
  if (positionals.length !== 1)
    throw new UsageError(
      positionals.length === 0 ? 'missing <scenario>' : `one scenario expected, got ${positionals.join(' ')}`,
    );
  const name = positionals[0]!;
  if (!(await scenarioNames()).includes(name))
    throw new UsageError(`unknown scenario ${JSON.stringify(name)}`);
  const scenario = await loadScenario(name);
  const modes = scenario.modes ?? ['open'];
  const mode = values.mode ?? modes[0]!;
  if (mode !== 'open' && mode !== 'closed')
    throw new UsageError(`--mode ${JSON.stringify(mode)}: open or closed`);
  if (!modes.includes(mode))
    throw new UsageError(`${name} has no ${mode}-loop mode (it has: ${modes.join(', ')})`);
  const params: Record<string, string> = {};
  for (const pair of values.param ?? []) {
    const match = /^([a-z][a-z0-9-]*)=(.+)$/s.exec(pair);
    if (!match) throw new UsageError(`--param ${JSON.stringify(pair)}: expected key=value`);
    params[match[1]!] = match[2]!;
  }
  const repeat = numberOption(values.repeat, '--repeat', true, 100) ?? 1;
  const options: BenchOptions = {
    durationS:
      numberOption(values.duration, '--duration', false, 24 * 3600) ??
      scenario.defaults?.durationS ??
      DEFAULT_DURATION_S,
    connections:
      numberOption(values.connections, '--connections', true, 20_000) ??
      scenario.defaults?.connections ??
      DEFAULT_CONNECTIONS,
    rate: numberOption(values.rate, '--rate', false, 1_000_000) ?? scenario.defaults?.rate,
    mode,
    params,
    outDir: path.resolve(values.out ?? path.join(BENCH_DIR, 'out')),
    url: httpUrl(values.url),
    cpuProf: values['cpu-prof'],
    build: !values['no-build'],
    serviceEnv: serviceEnv(values['service-env'] ?? [], values.url !== undefined),
    seed: numberOption(values.seed, '--seed', true, 0xffff_ffff, true),
    runTag: timestamp(new Date()),
  };
  return { scenario, options, repeat };
}

function machine() {
  return {
    nproc: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    loadAverage1mAtStart: Math.round(loadavg()[0]! * 100) / 100,
  };
}

/** The commit and the files that differed from it when the run started (the build is of the working tree). */
function source(): { head: string | null; changed: string[] } {
  const git = (...args: string[]): string | null => {
    try {
      return execFileSync('git', args, { cwd: path.dirname(BENCH_DIR), encoding: 'utf8' }).trimEnd();
    } catch {
      return null;
    }
  };
  const status = git('status', '--porcelain', '--untracked-files=all', '--', '.', ':!bench/out');
  return {
    head: git('rev-parse', '--short', 'HEAD'),
    changed: status === null || status === '' ? [] : status.split('\n'),
  };
}

async function main(): Promise<number> {
  let scenario: Scenario;
  let options: BenchOptions;
  let repeat: number;
  try {
    ({ scenario, options, repeat } = await parse(process.argv.slice(2)));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`bench: ${err.message}\n\n${await usage()}\n`);
    return 2;
  }

  const cleanups: (() => Promise<void> | void)[] = [];
  const abort = new AbortController();
  const progress = (line: string) => void process.stderr.write(`${line}\n`);
  const runCleanups = () => drainCleanups(cleanups, progress);
  let interrupted = false;
  const onSignal = (): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write('bench: interrupted; stopping the service (Ctrl-C again to exit now)\n');
    abort.abort();
    void runCleanups().then(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const io: BenchIO = {
    progress,
    onCleanup: (fn) => cleanups.push(fn),
    signal: abort.signal,
  };

  const summaries: Record<string, unknown>[] = [];
  for (let run = 1; run <= repeat; run += 1) {
    const runOptions: BenchOptions =
      repeat === 1 ? options : { ...options, runTag: `${options.runTag}-r${run}` };
    if (repeat > 1) io.progress(`bench: run ${run} of ${repeat}`);
    const summary = await runOnce(scenario, runOptions, io, runCleanups, () => interrupted);
    if (summary === 'interrupted') return 130;
    summaries.push(summary);
    if (summary['ok'] !== true) break; // a broken invariant ends the series: it is the finding
  }
  let last = summaries[summaries.length - 1]!;
  if (repeat > 1) {
    last = combineRepeats(scenario.name, summaries, repeat);
    const file = path.join(options.outDir, `${scenario.name}-${options.runTag}-repeat.json`);
    await writeFile(
      file,
      `${JSON.stringify({ argv: process.argv.slice(2), runs: summaries, summary: last }, null, 2)}\n`,
    );
    last = { ...last, result_file: path.relative(process.cwd(), file) };
    process.stdout.write(
      `\n${scenario.name}: ${summaries.length} runs; median (min-max) of each figure in ${last['result_file'] as string}\n`,
    );
  }
  process.stdout.write(`${JSON.stringify(last)}\n`);
  return last['ok'] === true ? 0 : 1;
}

/** One run of the scenario: table, notes, JSON file and charts; returns its summary (printed last by main). */
async function runOnce(
  scenario: Scenario,
  options: BenchOptions,
  io: BenchIO,
  runCleanups: () => Promise<void>,
  interrupted: () => boolean,
): Promise<Record<string, unknown> | 'interrupted'> {
  const startedAt = new Date();
  const host = machine();
  const tree = source();
  let result: ScenarioResult;
  try {
    result = await scenario.run(options, io);
  } catch (err) {
    await runCleanups();
    if (interrupted()) return 'interrupted';
    process.stderr.write(
      `bench: ${scenario.name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    return { scenario: scenario.name, ok: false, error: err instanceof Error ? err.message : String(err) };
  }
  await runCleanups();
  if (interrupted()) return 'interrupted';

  await mkdir(options.outDir, { recursive: true });
  const file = path.join(options.outDir, `${scenario.name}-${options.runTag}.json`);
  const charts = await renderCharts(
    result.charts ?? [],
    path.join(options.outDir, `${scenario.name}-${options.runTag}`),
  ).catch((err: unknown) => {
    process.stderr.write(`bench: charts not written: ${String(err)}\n`);
    return [] as string[];
  });
  const summary = {
    scenario: scenario.name,
    ok: result.ok,
    ...result.summary,
    machine: `${host.nproc} x ${host.cpuModel}, ${host.memoryGiB} GiB`,
    result_file: path.relative(process.cwd(), file),
    ...(charts.length > 0 ? { charts: charts.map((c) => path.relative(process.cwd(), c)) } : {}),
  };
  const record = {
    scenario: scenario.name,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    argv: process.argv.slice(2),
    options,
    machine: host,
    source: tree,
    summary,
    table: result.table,
    notes: result.notes,
    details: result.details,
  };
  await writeFile(file, `${JSON.stringify(record, null, 2)}\n`);

  process.stdout.write(`\n${scenario.name}: ${scenario.describe}\n\n${formatTable(result.table)}\n\n`);
  for (const note of result.notes) process.stdout.write(`${note}\n`);
  process.stdout.write(
    `source: ${tree.head ?? 'unknown commit'}${tree.changed.length > 0 ? ` + working-tree changes: ${tree.changed.join(', ')}` : ' (clean tree)'}\n`,
  );
  process.stdout.write(`result file: ${summary.result_file}\n`);
  for (const chart of charts) process.stdout.write(`chart: ${path.relative(process.cwd(), chart)}\n`);
  if (!result.ok)
    process.stdout.write(`FAILED: ${scenario.name}: an invariant is broken (see the notes above)\n`);
  return summary;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
