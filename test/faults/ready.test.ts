// Liveness and readiness of the whole service against the real stack, in-process, through a Redis outage. The
// service as a process (ready, SIGTERM, bad settings) is in test/service-process.test.ts.
//
// WARNING: this file STOPS THE STACK'S OWN REDIS (both data nodes) for a few seconds. Test files
// running in parallel share that Redis and see connection errors in that window: run this file
// serially (not alongside other files). Redis is restarted in a `finally` and again in a teardown.
import t from 'tap';
import { REDIS_DATA_NODES, startServers, stopServers } from '../../scripts/stack/stack.js';
import { DEPENDENCIES } from '../../src/readiness.js';
import { startApp, type Answer } from '../helpers/app.js';
import { waitReady } from '../../scripts/node-launcher.js';

// A Redis-down /ready answers within the check timeout; the slack covers the other checks and HTTP.
const READY_SLACK_MS = 750;
// ioredis reconnects with backoff up to 2 s.
const RECOVERY_MS = 10_000;

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

  const restarted = performance.now();
  await waitReady(running.base, RECOVERY_MS);
  const recoveredMs = Math.round(performance.now() - restarted);
  t.ok(recoveredMs < RECOVERY_MS, `ready again ${recoveredMs} ms after Redis restarted`);
});
