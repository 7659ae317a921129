// The bench's reading of the purchase stage histogram: counts, means and bucket-interpolated percentiles
// from two scrapes of /metrics, as Prometheus' histogram_quantile computes them; and a phase's CPU by process.
import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  background,
  cores as machineCores,
  cpuShares,
  cpuSnapshot,
  procStatJiffies,
  type CpuShares,
} from '../../bench/cpu.js';
import { formatStages, phaseCores, stageFigures } from '../../bench/measure.js';
import { parseSamples } from '../../bench/measure.js';

/** A /metrics text with one stage's cumulative buckets (le → count), its sum (s) and count. */
function scrape(stage: string, buckets: Record<string, number>, sum: number): string {
  const lines = Object.entries(buckets).map(
    ([le, n]) => `purchase_stage_duration_seconds_bucket{le="${le}",stage="${stage}"} ${n}`,
  );
  const count = buckets['+Inf'] ?? 0;
  lines.push(`purchase_stage_duration_seconds_sum{stage="${stage}"} ${sum}`);
  lines.push(`purchase_stage_duration_seconds_count{stage="${stage}"} ${count}`);
  return lines.join('\n');
}

t.test('stages over a phase: deltas, mean and interpolated p50/p95', async (t) => {
  const before = parseSamples(
    [
      scrape('queue', { '0.001': 10, '0.01': 10, '0.1': 10, '+Inf': 10 }, 0.005),
      scrape('payment', { '0.001': 0, '0.01': 0, '0.1': 0, '+Inf': 0 }, 0),
    ].join('\n'),
  );
  // Over the phase: 100 queue waits, 60 under 1 ms and 40 between 1 and 10 ms; payments all 10–100 ms.
  const after = parseSamples(
    [
      scrape('queue', { '0.001': 70, '0.01': 110, '0.1': 110, '+Inf': 110 }, 0.105),
      scrape('payment', { '0.001': 0, '0.01': 0, '0.1': 20, '+Inf': 20 }, 1),
    ].join('\n'),
  );
  const stages = stageFigures(before, after);
  t.same(stages['queue'], { count: 100, mean: 1, p50: 0.83, p95: 8.88 });
  t.same(stages['payment'], { count: 20, mean: 50, p50: 55, p95: 95.5 });
  t.equal(
    formatStages(stages),
    'purchase stages (ms, mean / p50 / p95): queue 1 / 0.83 / 8.88, payment 50 / 55 / 95.5',
  );
});

t.test(
  'a percentile beyond the last finite bucket is unknown; a phase without purchases prints nothing',
  async (t) => {
    const before = parseSamples(scrape('reply', { '1': 0, '+Inf': 0 }, 0));
    const after = parseSamples(scrape('reply', { '1': 1, '+Inf': 10 }, 30));
    t.same(stageFigures(before, after)['reply'], { count: 10, mean: 3000, p50: undefined, p95: undefined });
    t.same(stageFigures(after, after), {});
    t.equal(formatStages({}), '');
  },
);

t.test("a phase's other cores count the nodes once, named or as the service", async (t) => {
  // Half the machine busy: its cores minus the bench and the known processes is what others took.
  const busyCores = machineCores() * 0.5;
  const shares = (processCores: CpuShares['processCores']): CpuShares => ({
    wallS: 10,
    benchCores: 0.1,
    machineBusy: 0.5,
    irqCores: 0,
    stealCores: 0,
    processCores,
    runQueue: {},
  });
  const named = phaseCores(shares({ 'node-1': 0.2, 'node-2': 0.1, mariadb_primary: 0.2 }), 0.3);
  t.equal(
    named.other?.toFixed(3),
    (busyCores - 0.1 - 0.5).toFixed(3),
    'nodes by name, not again as the service',
  );
  t.same(Object.keys(named.cores), ['node-1', 'node-2', 'mariadb_primary', 'bench']);
  const unnamed = phaseCores(shares({ mariadb_primary: 0.2 }), 0.3);
  t.equal(unnamed.other?.toFixed(3), (busyCores - 0.1 - 0.5).toFixed(3), 'the nodes as the service');
  t.same(unnamed.cores, { service: 0.3, mariadb_primary: 0.2, bench: 0.1 });
});

t.test("the host's steal is not this machine's work: busy leaves it out, steal counts it", (t) => {
  // user nice system idle iowait irq softirq steal guest guest_nice (guest is already inside user)
  const at = procStatJiffies('cpu  600 0 200 900 100 20 30 150 50 0');
  t.same(at, { busy: 850, irq: 50, steal: 150, total: 2000 });
  t.same(
    procStatJiffies('cpu  10 0 10 80'),
    { busy: 20, irq: 0, steal: 0, total: 100 },
    'an old kernel: no steal',
  );
  t.end();
});

t.test(
  "the background leaves out the processes it is given: they are the benchmark's, not others'",
  async (t) => {
    const spinner = spawn(process.execPath, ['-e', 'for (;;);'], { stdio: 'ignore' });
    t.teardown(() => void spinner.kill('SIGKILL'));
    await sleep(200);
    // Both over the same second, so everything but the spinner is the same in the two (the suite's other
    // tests may be busy meanwhile): the difference is the spinner's share, even when it got less than a core.
    const [unnamed, named] = await Promise.all([
      background(1_000),
      background(1_000, { spinner: spinner.pid }),
    ]);
    t.ok(
      unnamed.busy! - named.busy! > 0.1 / machineCores(),
      `unnamed ${unnamed.busy!.toFixed(2)}, named ${named.busy!.toFixed(2)}: the spinner counted only unnamed`,
    );
    t.type(named.stealCores, 'number');
  },
);

const noSchedstat =
  !existsSync('/proc/self/schedstat') && 'no /proc/<pid>/schedstat here (CONFIG_SCHED_INFO)';
t.test('time waiting for a CPU: more spinners than cores wait', { skip: noSchedstat }, async (t) => {
  // One spinner more than there are cores: together they wait at least (n − cores) s per s, whoever runs.
  const spinners = Array.from({ length: machineCores() + 1 }, () =>
    spawn(process.execPath, ['-e', 'for (;;);'], { stdio: 'ignore' }),
  );
  t.teardown(() => spinners.forEach((p) => p.kill('SIGKILL')));
  await sleep(200);
  const pids = Object.fromEntries(spinners.map((p, i) => [`spin-${i}`, p.pid]));
  const before = cpuSnapshot(pids);
  await sleep(1_000);
  const shares = cpuShares(before, cpuSnapshot(pids));
  const waited = Object.keys(pids).reduce((sum, name) => sum + shares.runQueue[name]!, 0);
  const ran = Object.keys(pids).reduce((sum, name) => sum + shares.processCores[name]!, 0);
  t.ok(waited > 0.5, `spinners waited ${waited.toFixed(2)} s per s (ran ${ran.toFixed(2)} cores)`);
  t.type(shares.runQueue['bench'], 'number', "the bench's own wait is read too");
  await Promise.all(spinners.map((p) => (p.kill('SIGKILL'), once(p, 'exit'))));
  t.equal(cpuSnapshot(pids).waits['spin-0'], undefined, 'a process gone reads as unknown');
});
