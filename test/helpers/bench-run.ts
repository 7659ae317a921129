// The benchmark harness run as a test does it (test/bench/scenarios-*.test.ts): `tsx bench/cli.ts <args>
// --no-build` into a folder of the file's own, the service built by build.ts (`buildServiceOnce`).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { QUICK_STOP_ENV } from './node-process.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface BenchRun {
  readonly code: number | null;
  readonly summary: Record<string, unknown>;
  readonly stdout: string;
  /** Stdout and the last lines of stderr, for a failure's diagnostics. */
  readonly output: string;
}

/** The bench's nodes stop as the tests' do (QUICK_STOP_ENV): the smoke runs measure nothing at idle. */
const quickStop = Object.entries(QUICK_STOP_ENV).flatMap(([key, value]) => [
  '--service-env',
  `${key}=${value}`,
]);

/** A runner of `tsx bench/cli.ts <args> --no-build --out <a temporary folder> --service-env <QUICK_STOP_ENV>`;
 * the folder goes at `t`'s end. */
export function benchRunner(t: Test): (args: readonly string[]) => Promise<BenchRun> {
  const out = mkdtempSync(path.join(tmpdir(), 'bench-smoke-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  return (args) =>
    new Promise((resolve, reject) => {
      const argv = ['--import', 'tsx/esm', 'bench/cli.ts', ...args, '--no-build', '--out', out, ...quickStop];
      const child = spawn(process.execPath, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.once('error', reject);
      child.once('exit', (code) => {
        const last = stdout.trimEnd().split('\n').pop() ?? '';
        let summary: Record<string, unknown> = {};
        try {
          summary = JSON.parse(last) as Record<string, unknown>;
        } catch {
          // expectOk reports it
        }
        resolve({
          code,
          summary,
          stdout,
          output: `${stdout}\n--- stderr ---\n${diagnostics(stderr)}`,
        });
      });
    });
}

/** A phase's once-a-second line: `[label]  12s  offered …`. */
const TICK = /^\[[^\]]+\]\s+\d+s\s/;

/**
 * Stderr's last 100 lines that say what happened (a fault injected, a heal, a cleanup), and its last 5 of the
 * once-a-second progress lines: a long run's ticks would otherwise push out the lines that explain a failure.
 */
function diagnostics(stderr: string): string {
  const lines = stderr.split('\n').filter((line) => line.trim() !== '');
  const ticks = lines.filter((line) => TICK.test(line)).slice(-5);
  return lines
    .filter((line) => !TICK.test(line) || ticks.includes(line))
    .slice(-100)
    .join('\n');
}

/** Exit 0, the JSON summary last, every invariant held, `keys` in it, its result file (and charts) written. */
export function expectOk(t: Test, run: BenchRun, scenario: string, keys: readonly string[]): void {
  t.equal(run.code, 0, `${scenario} exits 0`, { output: run.output.slice(-6000) });
  t.equal(run.summary['scenario'], scenario, 'the last stdout line is the JSON summary');
  t.equal(run.summary['ok'], true, 'every invariant held');
  for (const key of keys) t.ok(key in run.summary, `summary has ${key}`);
  const file = run.summary['result_file'];
  t.ok(typeof file === 'string' && existsSync(path.resolve(ROOT, file)), 'result JSON written');
  const charts = run.summary['charts'];
  if (charts !== undefined)
    t.ok(
      Array.isArray(charts) && charts.every((c) => existsSync(path.resolve(ROOT, String(c)))),
      'charts written',
    );
}
