// Liveness and readiness of the whole service against the real stack, in-process and as a real process.
//
// WARNING: this file STOPS THE STACK'S OWN REDIS (both data nodes) for a few seconds. Test files
// running in parallel share that Redis and see connection errors in that window: run this file
// serially (not alongside other files). Redis is restarted in a `finally` and again in a teardown.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { REPO_ROOT } from '../../scripts/stack/layout.js';
import { REDIS_DATA_NODES, startServers, stopServers } from '../../scripts/stack/stack.js';
import { DEPENDENCIES } from '../../src/readiness.js';
import { startApp, uniq, type Answer, type RunningApp } from '../helpers/app.js';
import { throwawayDatabase } from '../helpers/database.js';

// A Redis-down /ready answers within the check timeout; the slack covers the other checks and HTTP.
const READY_SLACK_MS = 750;
// ioredis reconnects with backoff up to 2 s.
const RECOVERY_MS = 10_000;
const PROCESS_READY_MS = 60_000;
const PROCESS_EXIT_MS = 5_000;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** GETs `path` until it answers `status` or `timeoutMs` passes; returns the milliseconds it took. */
async function waitForStatus(get: () => Promise<number>, status: number, timeoutMs: number): Promise<number> {
  const started = performance.now();
  let last: number | string = 'no answer';
  while (performance.now() - started < timeoutMs) {
    last = await get().catch((err: Error) => err.message);
    if (last === status) return Math.round(performance.now() - started);
    await sleep(100);
  }
  throw new Error(`expected ${status} within ${timeoutMs} ms; last answer ${last}`);
}

const readyStatus = (running: RunningApp) => async () => (await running.get('/ready')).status;

void t.test('in-process: /health, /ready, and /ready while Redis is down and after it returns', async (t) => {
  const running = await startApp(t);

  const health = await running.get('/health');
  t.equal(health.status, 200, '/health answers 200');
  t.match(health.body, { status: 'ok', node: running.config.nodeId, uptimeSeconds: Number });

  const ready = await running.get('/ready');
  t.equal(ready.status, 200, '/ready answers 200 with the stack up');
  t.equal(ready.body.status, 'ready');
  t.same(
    Object.keys(ready.body.dependencies).sort(),
    [...DEPENDENCIES].sort(),
    'all four dependencies listed',
  );
  for (const name of DEPENDENCIES)
    t.match(ready.body.dependencies[name], { status: 'up', latencyMs: Number }, `${name} up`);

  // From here the shared Redis is stopped: keep the window short and always start it again.
  t.teardown(() => startServers(REDIS_DATA_NODES));
  const windowStarted = performance.now();
  const stoppedPids = await stopServers(REDIS_DATA_NODES);
  t.ok(
    stoppedPids.every((pid) => typeof pid === 'number'),
    "the stack's Redis (both data nodes) was running and is stopped",
  );
  let down: Answer;
  let downMs: number;
  try {
    const asked = performance.now();
    down = await running.get('/ready');
    downMs = Math.round(performance.now() - asked);
  } finally {
    await startServers(REDIS_DATA_NODES);
  }
  t.comment(`the stack's Redis was down for ${Math.round(performance.now() - windowStarted)} ms`);
  t.equal(down.status, 503, '/ready answers 503 with Redis down');
  t.same(down.body.down, ['redis'], 'only redis is down');
  t.match(down.body, {
    status: 'not_ready',
    error: { code: 'DEPENDENCY_UNAVAILABLE', retryable: true },
    dependencies: { redis: { status: 'down', error: String } },
  });
  for (const name of DEPENDENCIES.filter((d) => d !== 'redis'))
    t.equal(down.body.dependencies[name].status, 'up', `${name} still up`);
  t.match(down.headers['retry-after'], /^[1-9]\d*$/, 'Retry-After header sent, in whole seconds');
  const limitMs = running.config.readyCheckTimeoutMs + READY_SLACK_MS;
  t.ok(downMs < limitMs, `answered in ${downMs} ms (limit ${limitMs} ms)`);

  const recoveredMs = await waitForStatus(readyStatus(running), 200, RECOVERY_MS);
  t.ok(recoveredMs < RECOVERY_MS, `ready again ${recoveredMs} ms after Redis restarted`);
});

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
  return { child, exit, output: () => ({ stdout, stderr }) };
}

void t.test('process: main.ts becomes ready, and SIGTERM stops it with exit code 0', async (t) => {
  const port = await freePort();
  const db = await throwawayDatabase(t, 'ready');
  const service = spawnService(t, { PORT: String(port), LOG_LEVEL: 'warn', ...db.env });
  const getReady = async () => {
    const res = await request(`http://127.0.0.1:${port}/ready`, {
      headersTimeout: 5_000,
      bodyTimeout: 5_000,
    });
    await res.body.dump();
    return res.statusCode;
  };
  const readyMs = await Promise.race([
    waitForStatus(getReady, 200, PROCESS_READY_MS),
    service.exit(PROCESS_READY_MS).then((how) => {
      throw new Error(`exited before ready: ${JSON.stringify(how)}\n${service.output().stderr}`);
    }),
  ]);
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
