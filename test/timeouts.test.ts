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
  await sleep(420);
  t.ok(runs.base >= 10, `the 20 ms job ran (${runs.base} times)`);
  t.ok(runs.double >= 5, `the 40 ms job ran (${runs.double} times)`);
  t.ok(runs.quadruple >= 2, `the 80 ms job ran (${runs.quadruple} times)`);
  t.ok(runs.double < runs.base && runs.quadruple < runs.double, 'each on its own period');
  t.same(alone, [], 'never in a wake-up of its own');
});

t.test('a job held up by a busy loop is told how late it runs; a stopped job runs no more', async (t) => {
  const late: number[] = [];
  const job = every(30, (lateMs) => late.push(lateMs));
  t.teardown(() => job.stop());
  const until = performance.now() + 100;
  while (performance.now() < until); // the loop is held past the job's due time
  await sleep(5);
  t.ok(late.length >= 1, 'it ran once the loop was free');
  // Due within one period (and the few ms of slack) of its start; run 100 ms after it.
  t.ok(late[0]! >= 100 - 30 - 5, `told it ran late (${late[0]?.toFixed(1)} ms)`);
  t.equal(late.length, 1, 'once for the periods it missed, not once per period');
  job.stop();
  const before = late.length;
  await sleep(100);
  t.equal(late.length, before, 'no run after stop()');
});

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
