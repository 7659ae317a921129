// The chaos run's pure parts: the seeded schedule (same seed, same faults; every kind in each round) and
// the recovery time of a fault from the purchases' answers.
import t from 'tap';
import { FAULT_KINDS, faultSchedule, recoveryOf, seededRandom } from '../../scripts/chaos/schedule.js';

const take = <T>(gen: Iterable<T>, n: number): T[] => {
  const out: T[] = [];
  for (const x of gen) {
    if (out.length === n) break;
    out.push(x);
  }
  return out;
};

t.test('the same seed draws the same schedule; another seed another', async (t) => {
  const a = take(faultSchedule({ seed: 1, intervalMs: 10_000, profile: 'long' }), 24);
  const b = take(faultSchedule({ seed: 1, intervalMs: 10_000, profile: 'long' }), 24);
  const c = take(faultSchedule({ seed: 2, intervalMs: 10_000, profile: 'long' }), 24);
  t.same(a, b);
  t.notSame(a, c);
  t.ok(seededRandom(7)() >= 0 && seededRandom(7)() < 1);
});

t.test('each round holds every kind once; gaps within 0.8-1.2 of the interval', async (t) => {
  const faults = take(
    faultSchedule({ seed: 42, intervalMs: 10_000, profile: 'long' }),
    4 * FAULT_KINDS.length,
  );
  for (let round = 0; round < 4; round += 1) {
    const kinds = faults
      .slice(round * FAULT_KINDS.length, (round + 1) * FAULT_KINDS.length)
      .map((f) => f.kind);
    t.same([...kinds].sort(), [...FAULT_KINDS].sort(), `round ${round + 1} has every kind`);
  }
  t.ok(faults.every((f) => f.gapMs >= 8_000 && f.gapMs <= 12_000));
});

t.test('the short profile is one of each kind', async (t) => {
  const faults = [...faultSchedule({ seed: 3, intervalMs: 10_000, profile: 'short' })];
  t.same(faults.map((f) => f.kind).sort(), [...FAULT_KINDS].sort());
});

t.test('recovery: from the fault to the first success sent after its last failure', async (t) => {
  const window = { atMs: 1_000, untilMs: 5_000 };
  t.same(recoveryOf(window, [{ sentMs: 1_500, doneMs: 1_510, ok: true }]), { failed: 0, recoveryS: 0 });
  const outcomes = [
    { sentMs: 900, doneMs: 1_200, ok: false }, // sent before, failed after: the fault's
    { sentMs: 1_100, doneMs: 1_150, ok: true }, // a success before the last failure
    { sentMs: 2_000, doneMs: 2_400, ok: false },
    { sentMs: 2_010, doneMs: 3_500, ok: true }, // the first success sent after the last failure
    { sentMs: 2_100, doneMs: 2_900, ok: true }, // sent later, answered sooner: this one counts
    { sentMs: 6_000, doneMs: 6_100, ok: false }, // the next fault's
  ];
  t.same(recoveryOf(window, outcomes), { failed: 2, recoveryS: 1.9 });
  t.same(recoveryOf({ atMs: 5_000, untilMs: Infinity }, outcomes), { failed: 1, recoveryS: null });
});

t.test(
  'recovery is never dated before the fault: a failure sent long before it, answered in its window',
  async (t) => {
    // A purchase held up by the fault before (nginx's 10 s timeout) is answered in this fault's window;
    // the success sent after it but answered before this fault struck does not count.
    const window = { atMs: 23_700, untilMs: 28_200 };
    const outcomes = [
      { sentMs: 15_500, doneMs: 25_500, ok: false },
      { sentMs: 16_000, doneMs: 17_900, ok: true },
      { sentMs: 24_000, doneMs: 24_100, ok: true },
    ];
    t.same(recoveryOf(window, outcomes), { failed: 1, recoveryS: 0.4 });
  },
);
