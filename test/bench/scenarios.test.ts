// Smoke test of the benchmark harness: every scenario runs for a few seconds at a low rate against real
// servers, and its correctness checks (the summary's `ok` and invariants) are asserted. No timing is.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const OUT = mkdtempSync(path.join(tmpdir(), 'bench-smoke-'));
t.teardown(() => rmSync(OUT, { recursive: true, force: true }));

interface BenchRun {
  readonly code: number | null;
  readonly summary: Record<string, unknown>;
  readonly output: string;
}

/** `tsx bench/cli.ts <args> --no-build --out <tmp>`; the summary is the last stdout line. */
function bench(args: readonly string[]): Promise<BenchRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'bench/cli.ts', ...args, '--no-build', '--out', OUT],
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
        // asserted below
      }
      resolve({
        code,
        summary,
        output: `${stdout}\n--- stderr ---\n${stderr.split('\n').slice(-40).join('\n')}`,
      });
    });
  });
}

t.before(() => {
  const tsc = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  if (tsc.status !== 0) throw new Error(`the service does not build:\n${tsc.stdout}${tsc.stderr}`);
});

async function expectOk(t: Test, run: BenchRun, scenario: string, keys: readonly string[]): Promise<void> {
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

t.test('hot-sku: open-loop step-up, both paths, no oversell', async (t) => {
  const run = await bench([
    'hot-sku',
    '--duration',
    '1',
    '--rate',
    '20',
    '--connections',
    '10',
    '--param',
    'max-steps=2',
    '--param',
    'pause=0',
  ]);
  await expectOk(t, run, 'hot-sku', ['actor_per_s', 'baseline_per_s', 'ratio', 'oversold', 'mode']);
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
  await expectOk(t, run, 'saga', ['hot_confirmed_per_s', 'oversold']);
  t.equal(run.summary['oversold'], 0);
});

t.test('mix: through the bench nginx to two nodes, purchases checked', async (t) => {
  const run = await bench([
    'mix',
    '--duration',
    '2',
    '--rate',
    '30',
    '--connections',
    '200',
    '--param',
    'max-steps=1',
  ]);
  await expectOk(t, run, 'mix', [
    'rate_meeting_targets_per_s',
    'hit_p95_ms',
    'miss_p95_ms',
    'purchase_p95_ms',
    'hit_rate',
  ]);
  t.equal(run.summary['oversold'], 0);
  t.equal(run.summary['via_nginx'], true);
  t.equal(run.summary['nodes'], 2);
  t.equal(run.summary['connections_open'], 200, 'every connection opened');
});

t.test('sellout: no oversell or undersell, every store agrees', async (t) => {
  const run = await bench([
    'sellout',
    '--rate',
    '150',
    '--connections',
    '50',
    '--param',
    'stock=60',
    '--param',
    'attempts=300',
    '--param',
    'users=80',
  ]);
  await expectOk(t, run, 'sellout', ['time_to_sell_out_s', 'selling_p99_ms']);
  t.equal(run.summary['oversold'], 0);
  t.equal(run.summary['undersold'], 0);
  t.equal(run.summary['answer_mismatches'], 0);
  for (const store of ['replica', 'actor', 'kafka', 'projection'])
    t.equal(run.summary[`${store}_agrees`], true, `${store} agrees`);
  t.not(run.summary['cache_agrees'], false, 'the cache agrees (or had expired)');
});

t.test('cost: per-1,000 figures for both paths, purchases checked', async (t) => {
  const run = await bench([
    'cost',
    '--duration',
    '1',
    '--rate',
    '20',
    '--connections',
    '10',
    '--param',
    'warm-up=1',
    '--param',
    'settle=5',
    '--param',
    'idle=1',
  ]);
  await expectOk(t, run, 'cost', [
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

// Also the --repeat run (median and spread of each figure): reads is the cheapest scenario to run twice.
t.test('reads: a cached read on one node vs a bare uWS hello, same client, every answer a hit', async (t) => {
  const run = await bench([
    'reads',
    '--duration',
    '1',
    '--param',
    'rounds=1',
    '--param',
    'warmup=1',
    '--repeat',
    '2',
  ]);
  await expectOk(t, run, 'reads', ['node_reads_per_s', 'hello_per_s', 'ratio', 'node_cache_hit_pct']);
  t.ok(
    Number(run.summary['node_reads_per_s']) > 0 && Number(run.summary['hello_per_s']) > 0,
    'both answered',
  );
  t.equal(run.summary['node_errors'], 0);
  t.equal(run.summary['repeat'], 2, '--repeat 2: two runs');
  t.ok(
    'node_reads_per_s_min' in run.summary && 'node_reads_per_s_max' in run.summary,
    'the spread of each figure',
  );
});

t.test('failover: kill -9 of one node, no acknowledged order lost', async (t) => {
  const run = await bench([
    'failover',
    '--duration',
    '8',
    '--rate',
    '30',
    '--connections',
    '30',
    '--param',
    'products=8',
    '--param',
    'kill-at=2',
  ]);
  await expectOk(t, run, 'failover', ['recovery_s', 'errors_after_kill']);
  t.equal(run.summary['acknowledged_lost'], 0, 'every 201 has its CONFIRMED order');
  t.equal(run.summary['oversold'], 0);
  t.equal(run.summary['still_pending'], 0);
});

t.test('scale: one node then two behind nginx, purchases checked, forwarded share', async (t) => {
  const run = await bench([
    'scale',
    '--duration',
    '1',
    '--rate',
    '20',
    '--connections',
    '20',
    '--param',
    'products=4',
    '--param',
    'max-steps=1',
    '--param',
    'warm-up=1',
    '--param',
    'pause=0',
  ]);
  await expectOk(t, run, 'scale', [
    'one_node_per_s',
    'two_nodes_per_s',
    'ratio',
    'forwarded_share',
    'one_node_p99_ms',
    'two_nodes_p99_ms',
  ]);
  t.equal(run.summary['oversold'], 0);
  t.equal(run.summary['still_pending'], 0);
  t.equal(run.summary['via_nginx'], true);
  const oneNodeForwarded = run.summary['forwarded_share_one_node'];
  t.ok(oneNodeForwarded === 0 || oneNodeForwarded === null, 'one node forwards nothing (null: no metric)');
});

t.test('auth: per-check CPU costs, hot-sku with security on vs limits off, nothing throttled', async (t) => {
  const run = await bench(['auth', '--duration', '2', '--connections', '10', '--param', 'micro-scale=0.02']);
  await expectOk(t, run, 'auth', [
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
