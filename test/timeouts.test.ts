// `every`: a node's periodic jobs on the multiples of their periods, sharing one timer, so that jobs whose
// periods are multiples of one another run in the same wake-up.
import t from 'tap';
import { every } from '../src/timeouts.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

t.test('jobs whose periods are multiples of one another run in the same wake-ups', async (t) => {
  // The job of the shortest period runs first in a wake-up; what it marks is cleared once the wake-up's
  // synchronous work has ended, so a job that sees the mark ran in the same wake-up.
  let mark = false;
  const runs = { base: 0, double: 0, quadruple: 0 };
  const alone: string[] = [];
  const base = every(20, () => {
    runs.base += 1;
    mark = true;
    queueMicrotask(() => (mark = false));
  });
  await sleep(7); // the others start at another phase: setInterval would run them in wake-ups of their own
  const others = (['double', 'quadruple'] as const).map((name, i) =>
    every(40 * 2 ** i, () => {
      runs[name] += 1;
      if (!mark) alone.push(name);
    }),
  );
  t.teardown(() => [base, ...others].forEach((job) => job.stop()));
  await sleep(600);
  t.ok(runs.quadruple >= 2, `the 80 ms job ran (${runs.quadruple} times)`);
  t.ok(
    runs.quadruple <= runs.double && runs.double <= runs.base && runs.quadruple < runs.base,
    `each on its own period (${runs.base} / ${runs.double} / ${runs.quadruple} runs)`,
  );
  t.same(alone, [], 'never in a wake-up of its own');
});

t.test(
  'a job held up by a busy loop is told how late it runs, runs once for the periods it missed, and stops',
  async (t) => {
    const runs: { at: number; late: number }[] = [];
    const job = every(30, (late) => runs.push({ at: performance.now(), late }));
    t.teardown(() => job.stop());
    const until = performance.now() + 100;
    while (performance.now() < until); // the loop is held past the job's due time (three periods)
    await sleep(80);
    t.ok(runs.length >= 1, 'it ran once the loop was free');
    // Due within one period (and the few ms of slack) of its start; run 100 ms after it.
    t.ok(runs[0]!.late >= 100 - 30 - 5, `told it ran late (${runs[0]?.late.toFixed(1)} ms)`);
    // Then back on its grid (the next multiple of 30 ms: the first gap may be shorter than a period), not
    // a burst of runs for the periods it missed.
    const gaps = runs.slice(1).map((run, i) => run.at - runs[i]!.at);
    t.ok(
      gaps.every((gap) => gap > 3),
      `never twice in one wake-up: gaps ${gaps.map((g) => g.toFixed(1)).join(', ')} ms`,
    );
    t.ok(runs.length <= 2 + 80 / 30, `at most one run per period since (${runs.length} runs)`);
    job.stop();
    const before = runs.length;
    await sleep(100);
    t.equal(runs.length, before, 'no run after stop()');
  },
);

t.test('a job stopped by another in the same wake-up does not run in it', async (t) => {
  let ran = false;
  // Both due at the same multiple of 25 ms; the first registered runs first and stops the second.
  let second: ReturnType<typeof every> | undefined;
  const first = every(25, () => second?.stop());
  second = every(25, () => (ran = true));
  t.teardown(() => [first, second].forEach((job) => job?.stop()));
  await sleep(80);
  t.equal(ran, false, 'never ran');
});

t.test('a period under 1 ms is refused', async (t) => {
  t.throws(() => every(0, () => undefined), { code: 'INTERNAL' });
  t.throws(() => every(Number.NaN, () => undefined), { code: 'INTERNAL' });
});
