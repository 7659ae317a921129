// Smoke test of the benchmark harness (many products and nodes: mix, sellout, reads, failover, scale): each scenario runs for a few seconds at a low rate
// against real servers, and its correctness checks (the summary's `ok` and invariants) are asserted. No
// timing is. The scenarios are split over two files so that tap runs the halves side by side.
import t from 'tap';
import { benchRunner, expectOk } from '../helpers/bench-run.js';
import { buildServiceOnce } from '../helpers/build.js';

const bench = benchRunner(t);
t.before(buildServiceOnce);

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
    '--param',
    'warm-up=1',
  ]);
  expectOk(t, run, 'mix', [
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
  t.equal(run.summary['warm_up_s'], 1);
  t.type(run.summary['node_cpu_wait_s_per_s'], 'number', "the nodes' wait for a core is read");
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
  expectOk(t, run, 'sellout', ['time_to_sell_out_s', 'selling_p99_ms']);
  t.equal(run.summary['oversold'], 0);
  t.equal(run.summary['undersold'], 0);
  t.equal(run.summary['answer_mismatches'], 0);
  for (const store of ['replica', 'actor', 'kafka', 'projection'])
    t.equal(run.summary[`${store}_agrees`], true, `${store} agrees`);
  t.not(run.summary['cache_agrees'], false, 'the cache agrees (or had expired)');
});

// Also the --repeat run (median and spread of each figure): reads is the cheapest scenario to run twice.
t.test('reads: a cached read on one node vs bare uWS hellos, same client, every answer a hit', async (t) => {
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
  expectOk(t, run, 'reads', [
    'node_reads_per_s',
    'hello_per_s',
    'peer_hello_per_s',
    'ratio',
    'peer_hello_ratio',
    'node_cache_hit_pct',
  ]);
  for (const key of ['node_reads_per_s', 'hello_per_s', 'peer_hello_per_s'])
    t.ok(Number(run.summary[key]) > 0, `${key}: answered`);
  t.equal(run.summary['node_errors'], 0);
  t.equal(run.summary['peer_errors'], 0);
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
    '6',
    '--rate',
    '30',
    '--connections',
    '30',
    '--param',
    'products=8',
    '--param',
    'kill-at=2',
  ]);
  expectOk(t, run, 'failover', ['recovery_s', 'errors_after_kill']);
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
  expectOk(t, run, 'scale', [
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
