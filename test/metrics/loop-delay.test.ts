// The event-loop delay gauges: a sampler of their own only while the loop is busy, else the once-a-second
// check's lateness; prom-client's names are kept.
import t from 'tap';
import { Registry } from 'prom-client';
import { createMetrics } from '../../src/metrics.js';
import { LOOP_DELAY_METRICS, LoopDelayMonitor, loopDelayDefaults } from '../../src/loop-delay.js';

t.test('the service registry has every event-loop delay gauge once', async (t) => {
  const metrics = createMetrics();
  t.teardown(() => metrics.loopDelay.stop());
  const text = await metrics.registry.metrics();
  for (const name of LOOP_DELAY_METRICS)
    t.equal(text.match(new RegExp(`^# TYPE ${name} gauge$`, 'gm'))?.length, 1, name);
});

t.test('sampling starts on a busy check and stops after enough quiet ones', async (t) => {
  const monitor = new LoopDelayMonitor(new Registry());
  t.teardown(() => monitor.stop());
  t.equal(monitor.sampling, false, 'idle at start');
  monitor.check(0.5);
  t.equal(monitor.sampling, true, 'busy: sampling');
  for (let i = 1; i < loopDelayDefaults.idleChecks; i += 1) monitor.check(0);
  t.equal(monitor.sampling, true, 'still sampling before the last quiet check');
  monitor.check(partlyBusy);
  for (let i = 1; i < loopDelayDefaults.idleChecks; i += 1) monitor.check(0);
  t.equal(monitor.sampling, true, 'a busy check restarts the count');
  monitor.check(0);
  t.equal(monitor.sampling, false, 'quiet long enough: stopped');
  monitor.check(loopDelayDefaults.busyUtilization / 2);
  t.equal(monitor.sampling, false, 'under the busy share: no sampler (no wake-ups of its own)');
});

/** A utilization between busy and saturated. */
const partlyBusy = (loopDelayDefaults.busyUtilization + loopDelayDefaults.saturatedUtilization) / 2;

t.test('without a sampler, the lateness of the check itself reaches the gauges', async (t) => {
  const registry = new Registry();
  const monitor = new LoopDelayMonitor(registry);
  t.teardown(() => monitor.stop());
  // The loop held 100 ms past the check's due time: that check comes at least 100 ms late.
  const until = performance.now() + loopDelayDefaults.checkEveryMs + 100;
  while (performance.now() < until);
  await new Promise((resolve) => setTimeout(resolve, 20));
  const text = await registry.metrics();
  const max = Number(/^nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(text)?.[1]);
  t.ok(max >= 0.1, `the stall is recorded (max ${max} s)`);
});

t.test('samples reach the gauges; an idle loop reads 0', async (t) => {
  const registry = new Registry();
  const monitor = new LoopDelayMonitor(registry);
  t.teardown(() => monitor.stop());
  const p99 = async () => {
    const text = await registry.metrics();
    return Number(/^nodejs_eventloop_lag_p99_seconds (\S+)$/m.exec(text)?.[1]);
  };
  t.equal(await p99(), 0, 'nothing sampled: 0');
  monitor.check(1);
  await new Promise((resolve) => setTimeout(resolve, 10 * loopDelayDefaults.resolutionMs));
  t.ok((await p99()) > 0, 'sampled while busy');
  monitor.stop();
  t.equal(await p99(), 0, 'each scrape starts a new interval');
});

t.test('a partly busy loop is sampled less often, with the same 10 ms base', async (t) => {
  const registry = new Registry();
  const monitor = new LoopDelayMonitor(registry);
  t.teardown(() => monitor.stop());
  monitor.check(partlyBusy);
  t.equal(monitor.periodMs, loopDelayDefaults.partlyBusyResolutionMs, 'partly busy: the longer period');
  monitor.check(0.9);
  t.equal(monitor.periodMs, loopDelayDefaults.resolutionMs, 'saturated: every 10 ms');
  monitor.check(partlyBusy);
  t.equal(monitor.periodMs, loopDelayDefaults.partlyBusyResolutionMs, 'back to the longer period');
  await registry.metrics(); // starts a new interval
  await new Promise((resolve) => setTimeout(resolve, 6 * loopDelayDefaults.partlyBusyResolutionMs));
  const text = await registry.metrics();
  const p50 = Number(/^nodejs_eventloop_lag_p50_seconds (\S+)$/m.exec(text)?.[1]);
  t.ok(p50 >= 0.009 && p50 < 0.04, `a free loop reads about 10 ms, not the period (p50 ${p50} s)`);
});
