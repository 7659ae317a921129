/**
 * Benchmark runner: `npm run bench -- <scenario> [--duration s] [--connections c] [--out dir] [--url u] [--cpu-prof]`.
 * Scenarios are the modules in bench/scenarios/; each returns a result that is printed as a table, saved
 * as JSON, and summarised as one JSON object on the LAST stdout line. Progress goes to stderr.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatTable } from './report.js';
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
  const mod = (await import(new URL(`./scenarios/${name}.ts`, import.meta.url).href)) as Partial<Scenario>;
  if (typeof mod.name !== 'string' || typeof mod.describe !== 'string' || typeof mod.run !== 'function') {
    throw new Error(`bench/scenarios/${name}.ts must export name, describe and run(options, io)`);
  }
  return mod as Scenario;
}

async function usage(): Promise<string> {
  const lines = [
    'usage: npm run bench -- <scenario> [--duration s] [--connections c] [--out dir] [--url http://host:port] [--cpu-prof] [--service-env KEY=VALUE ...]',
    '',
    '  --duration s      load time in seconds (scenario default, usually 10)',
    '  --connections c   concurrent connections / requests in flight (scenario default, usually 200)',
    '  --out dir         folder for the result JSON (default bench/out)',
    '  --url u           benchmark a running service instead of starting one',
    '  --cpu-prof        start the service under node --cpu-prof (profiles in <out>/profiles)',
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

function positiveNumber(
  raw: string | undefined,
  flag: string,
  integer: boolean,
  max: number,
): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n <= 0 || n > max || (integer && !Number.isInteger(n))) {
    throw new UsageError(
      `${flag} ${JSON.stringify(raw)}: expected a${integer ? 'n integer' : ' number'} above 0, at most ${max}`,
    );
  }
  return n;
}

function httpUrl(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`--url ${JSON.stringify(raw)} is not a URL (expected http://host:port)`);
  }
  if (url.protocol !== 'http:' || url.pathname !== '/') {
    throw new UsageError(`--url ${JSON.stringify(raw)}: expected http://host:port with no path`);
  }
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

function timestamp(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

async function parse(argv: string[]): Promise<{ scenario: Scenario; options: BenchOptions }> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        duration: { type: 'string' },
        connections: { type: 'string' },
        out: { type: 'string' },
        url: { type: 'string' },
        'cpu-prof': { type: 'boolean', default: false },
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
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0 ? 'missing <scenario>' : `one scenario expected, got ${positionals.join(' ')}`,
    );
  }
  const name = positionals[0]!;
  if (!(await scenarioNames()).includes(name))
    throw new UsageError(`unknown scenario ${JSON.stringify(name)}`);
  const scenario = await loadScenario(name);
  const options: BenchOptions = {
    durationS:
      positiveNumber(values.duration, '--duration', false, 24 * 3600) ??
      scenario.defaults?.durationS ??
      DEFAULT_DURATION_S,
    connections:
      positiveNumber(values.connections, '--connections', true, 20_000) ??
      scenario.defaults?.connections ??
      DEFAULT_CONNECTIONS,
    outDir: path.resolve(values.out ?? path.join(BENCH_DIR, 'out')),
    url: httpUrl(values.url),
    cpuProf: values['cpu-prof'],
    serviceEnv: serviceEnv(values['service-env'] ?? [], values.url !== undefined),
    runTag: timestamp(new Date()),
  };
  return { scenario, options };
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
  try {
    ({ scenario, options } = await parse(process.argv.slice(2)));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`bench: ${err.message}\n\n${await usage()}\n`);
    return 2;
  }

  const cleanups: (() => Promise<void> | void)[] = [];
  const abort = new AbortController();
  const runCleanups = async (): Promise<void> => {
    while (cleanups.length > 0) {
      const fn = cleanups.pop()!;
      await Promise.resolve()
        .then(fn)
        .catch((err: unknown) => process.stderr.write(`bench: cleanup failed: ${String(err)}\n`));
    }
  };
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
    progress: (line) => process.stderr.write(`${line}\n`),
    onCleanup: (fn) => cleanups.push(fn),
    signal: abort.signal,
  };

  const startedAt = new Date();
  const host = machine();
  const tree = source();
  let result: ScenarioResult;
  try {
    result = await scenario.run(options, io);
  } catch (err) {
    await runCleanups();
    if (interrupted) return 130;
    process.stderr.write(
      `bench: ${scenario.name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.stdout.write(
      `${JSON.stringify({ scenario: scenario.name, ok: false, error: err instanceof Error ? err.message : String(err) })}\n`,
    );
    return 1;
  }
  await runCleanups();
  if (interrupted) return 130;

  await mkdir(options.outDir, { recursive: true });
  const file = path.join(options.outDir, `${scenario.name}-${options.runTag}.json`);
  const summary = {
    scenario: scenario.name,
    ok: result.ok,
    ...result.summary,
    result_file: path.relative(process.cwd(), file),
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
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  return result.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
