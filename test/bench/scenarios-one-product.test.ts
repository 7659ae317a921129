// Smoke test of the benchmark harness (one hot product and its costs: hot-sku, saga, cost, auth): each scenario runs for a few seconds at a low rate
// against real servers, and its correctness checks (the summary's `ok` and invariants) are asserted. No
// timing is. The scenarios are split over two files so that tap runs the halves side by side.
import t from 'tap';
import { benchRunner, expectOk } from '../helpers/bench-run.js';
import { buildServiceOnce } from '../helpers/build.js';

const bench = benchRunner(t);
/** A second of load at 20/s over 10 connections: the open-loop scenarios' smoke setting. */
const LOW_RATE = ['--duration', '1', '--rate', '20', '--connections', '10'];
t.before(buildServiceOnce);

t.test('hot-sku: open-loop step-up, both paths, no oversell', async (t) => {
  const run = await bench([
    'hot-sku',
    ...LOW_RATE,
    '--param',
    'max-steps=2',
    '--param',
    'pause=0',
    '--param',
    'warm-up=1',
  ]);
  expectOk(t, run, 'hot-sku', ['actor_per_s', 'baseline_per_s', 'ratio', 'oversold', 'mode']);
  t.equal(run.summary['oversold'], 0);
  t.match(
    run.output,
    /purchase stages \(ms, mean \/ p50 \/ p95\): queue [\d.]+ \/ [\d.]+ \/ [\d.]+, reserve_commit /,
    "each step prints where its purchases' time went",
  );
  t.equal(run.summary['mode'], 'open-loop');
  t.ok(
    Array.isArray(run.summary['charts']) && (run.summary['charts'] as unknown[]).length === 3,
    'three charts',
  );
});

t.test('saga: closed loop, still runs under the new runner', async (t) => {
  const run = await bench(['saga', '--duration', '1', '--connections', '4']);
  expectOk(t, run, 'saga', ['hot_confirmed_per_s', 'oversold']);
  t.equal(run.summary['oversold'], 0);
});

t.test('cost: per-1,000 figures for both paths, purchases checked', async (t) => {
  const run = await bench([
    'cost',
    ...LOW_RATE,
    '--param',
    'warm-up=1',
    '--param',
    'settle=0',
    '--param',
    'idle=1',
  ]);
  expectOk(t, run, 'cost', [
    'actor_mysql_commits',
    'baseline_mysql_commits',
    'actor_redis_commands',
    'actor_kafka_produce_requests',
    'actor_app_cpu_ms',
    'actor_cpu_us_per_purchase',
    'actor_cpu_us_per_purchase_saturated',
    'idle_node_cpu_pct',
    'io_round_trip_cpu_us_busy',
    'io_round_trip_cpu_us_after_sleep',
  ]);
  t.equal(run.summary['oversold'], 0);
  t.ok(Number(run.summary['io_round_trip_cpu_us_busy']) > 0, 'the round-trip probe measured something');
  t.ok(
    Number(run.summary['actor_confirmed']) > 0 && Number(run.summary['baseline_confirmed']) > 0,
    'both paths confirmed purchases',
  );
});

t.test('auth: per-check CPU costs, hot-sku with security on vs limits off, nothing throttled', async (t) => {
  const run = await bench(['auth', '--duration', '1', '--connections', '10', '--param', 'micro-scale=0.02']);
  expectOk(t, run, 'auth', [
    'full_verify_cpu_us',
    'cached_verify_cpu_us',
    'ip_limit_cpu_us',
    'user_limit_cpu_us',
    'user_limit_wall_us',
    'user_limit_c100_cpu_us',
    'user_limit_c100_wall_us',
    'on_per_s',
    'off_per_s',
    'ratio',
    'target_met',
  ]);
  t.equal(run.summary['mode'], 'closed-loop');
  t.equal(run.summary['oversold'], 0);
  t.equal(run.summary['rate_limited'], 0, "the bench's limits never throttle its own load");
  for (const key of ['full_verify_cpu_us', 'cached_verify_cpu_us', 'ip_limit_cpu_us', 'user_limit_cpu_us'])
    t.ok(Number(run.summary[key]) > 0, `${key} measured`);
  t.ok(Number(run.summary['on_per_s']) > 0 && Number(run.summary['off_per_s']) > 0, 'both nodes sold');
  const evalsha = Number(run.summary['user_limit_evalsha_per_call']);
  t.ok(
    evalsha > 0 && evalsha <= 1,
    `at most one EVALSHA per per-user check: one per event-loop turn (${evalsha})`,
  );
});
