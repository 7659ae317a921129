// The benchmark harness run as a test does it (test/bench/scenarios-*.test.ts): `tsx bench/cli.ts <args>
// --no-build` into a folder of the file's own, the service built once per tap run for all such files.
import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { buildService } from '../../scripts/cluster.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const STAMP_PREFIX = '.built-for-run-';
/** A build lock older than this was left by a killed run. */
const STALE_LOCK_MS = 120_000;

export interface BenchRun {
  readonly code: number | null;
  readonly summary: Record<string, unknown>;
  readonly stdout: string;
  /** Stdout and the last lines of stderr, for a failure's diagnostics. */
  readonly output: string;
}

/**
 * Builds the service (`dist/`) once for the files of one tap run (tap is their parent process): the first
 * file to get here builds, under a lock; the others wait and reuse that build. A second build while another
 * file's bench nodes start from `dist/` could hand one of them a half-written module.
 */
export async function buildServiceOnce(): Promise<void> {
  // The parent's pid and start time name the run (a pid alone can come back in a later run).
  const parentStat = readFileSync(`/proc/${process.ppid}/stat`, 'utf8');
  const parentStart = parentStat.slice(parentStat.lastIndexOf(')') + 2).split(' ')[19];
  const stamp = path.join(ROOT, 'dist', `${STAMP_PREFIX}${process.ppid}-${parentStart}`);
  const lock = path.join(ROOT, 'dist.build-lock');
  for (const deadline = Date.now() + 180_000; ;) {
    if (existsSync(stamp)) return;
    try {
      mkdirSync(lock);
      break;
    } catch {
      // Left by a run killed while it built (a build takes ~15 s): taken over.
      const held = statSync(lock, { throwIfNoEntry: false });
      if (held !== undefined && Date.now() - held.mtimeMs > STALE_LOCK_MS) {
        rmSync(lock, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`the service build did not finish (${lock} held for 3 min)`);
      await sleep(250);
    }
  }
  try {
    if (existsSync(stamp)) return;
    await buildService(ROOT);
    for (const old of readdirSync(path.dirname(stamp)))
      if (old.startsWith(STAMP_PREFIX)) rmSync(path.join(ROOT, 'dist', old));
    writeFileSync(stamp, '');
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** A runner of `tsx bench/cli.ts <args> --no-build --out <a temporary folder>`; the folder goes at `t`'s end. */
export function benchRunner(t: Test): (args: readonly string[]) => Promise<BenchRun> {
  const out = mkdtempSync(path.join(tmpdir(), 'bench-smoke-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  return (args) =>
    new Promise((resolve, reject) => {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', 'bench/cli.ts', ...args, '--no-build', '--out', out],
        { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
      );
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
          output: `${stdout}\n--- stderr ---\n${stderr.split('\n').slice(-60).join('\n')}`,
        });
      });
    });
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
