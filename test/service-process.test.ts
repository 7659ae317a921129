// The service as a real process (`node --import tsx src/main.ts`) against the real stack: it becomes ready and
// stops cleanly on SIGTERM, and bad settings stop it at once with every bad variable named. Stops nothing
// shared, so it runs beside other files; readiness through a Redis outage is in test/faults/ready.test.ts. And
// the processes tests start run without tap's processinfo hook (test/helpers/untracked-children.mjs).
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { REPO_ROOT } from '../scripts/stack/layout.js';
import { uniq } from './helpers/isolation.js';
import { throwawayDatabase } from './helpers/database.js';
import { freePort, waitReady } from '../scripts/node-launcher.js';

const PROCESS_READY_MS = 60_000;
const PROCESS_EXIT_MS = 5_000;

interface Exited {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Runs `node --import tsx src/main.ts` with extra env; kills it at teardown if it is still running. */
function spawnService(t: Test, env: Record<string, string>) {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: REPO_ROOT,
    env: { ...process.env, NODE_ID: uniq('ready-test-'), REDIS_KEY_PREFIX: `${uniq('test')}:`, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<Exited>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  /** Resolves with how it exited, or rejects after `ms` with its output. */
  const exit = async (ms: number): Promise<Exited> => {
    const timeout = sleep(ms, undefined, { ref: false }).then(() => {
      throw new Error(`still running after ${ms} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    });
    return Promise.race([exited, timeout]);
  };
  /** Its exit code or signal, for the launcher's waitReady. */
  const exitCode = exited.then((how) => how.code ?? how.signal ?? 'unknown');
  return { child, exit, exitCode, output: () => ({ stdout, stderr }) };
}

void t.test('process: main.ts becomes ready, and SIGTERM stops it with exit code 0', async (t) => {
  const port = await freePort();
  const db = await throwawayDatabase(t, 'ready');
  const service = spawnService(t, { PORT: String(port), LOG_LEVEL: 'warn', ...db.env });
  const spawned = performance.now();
  await waitReady(`http://127.0.0.1:${port}`, PROCESS_READY_MS, service.exitCode).catch((err: Error) => {
    throw new Error(`${err.message}\n${service.output().stderr}`);
  });
  const readyMs = Math.round(performance.now() - spawned);
  t.pass(`/ready answered 200 ${readyMs} ms after spawn`);

  const signalled = performance.now();
  service.child.kill('SIGTERM');
  const how = await service.exit(PROCESS_EXIT_MS);
  const exitMs = Math.round(performance.now() - signalled);
  t.same(how, { code: 0, signal: null }, 'exits with code 0');
  t.ok(exitMs < PROCESS_EXIT_MS, `exited ${exitMs} ms after SIGTERM`);
  t.notMatch(service.output().stdout, /"level":(50|60)/, 'no error or fatal log line');
});

void t.test('process: invalid settings exit with code 2 and name every bad variable', async (t) => {
  const service = spawnService(t, { PORT: 'abc', MYSQL_POOL_SIZE: '0' });
  const how = await service.exit(PROCESS_EXIT_MS * 2);
  t.same(how, { code: 2, signal: null }, 'exits with code 2');
  const { stderr } = service.output();
  t.match(stderr, /PORT="abc"/, 'stderr names PORT');
  t.match(stderr, /MYSQL_POOL_SIZE="0"/, 'stderr names MYSQL_POOL_SIZE');
  t.match(stderr, /invalid configuration \(2 problem\(s\)\)/, 'both problems in one error');
});

void t.test(
  "a process a test starts runs without tap's processinfo hook, with the rest of NODE_OPTIONS",
  async (t) => {
    const hook = /@tapjs[\\/]processinfo/;
    t.match(process.execArgv.join(' '), hook, 'this test process runs with the hook (tap put it there)');
    const print = 'process.stdout.write(JSON.stringify([process.env.NODE_OPTIONS ?? "", process.execArgv]))';
    const own = '--max-old-space-size=300';
    // Both ways a test starts a child: with the environment it inherits, and with an `env` of its own.
    for (const [how, env, expected] of [
      ['inherited environment', undefined, process.env['NODE_OPTIONS'] ?? ''],
      ['own env, no option of its own', { ...process.env, NODE_OPTIONS: undefined }, ''],
      [`own env, ${own}`, { ...process.env, NODE_OPTIONS: own }, own],
    ] as const) {
      const child = spawn(process.execPath, ['-e', print], { env, stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      await new Promise((resolve) => child.once('close', resolve));
      const [options, execArgv] = JSON.parse(out) as [string, string[]];
      t.notMatch(options, hook, `${how}: no hook in NODE_OPTIONS`);
      t.equal(options, expected, `${how}: its own options kept`);
      t.same(execArgv, ['-e', print], `${how}: node saw only its arguments`);
    }
  },
);
