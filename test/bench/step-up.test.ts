// The step-up loop and the capacity read from its steps, on scripted step outcomes (no load, no servers): a
// path that breaks at its first rate steps down until it meets the rule, so both paths get a capacity.
import t from 'tap';
import { capacity, Run, type BenchOptions } from '../../bench/scenario.js';
import type { OpenLoopResult } from '../../bench/open-loop.js';

const options: BenchOptions = {
  durationS: 1,
  connections: 1,
  rate: 100,
  mode: 'open',
  params: { step: '1.5', 'max-steps': '4', 'down-steps': '3' },
  outDir: '/tmp',
  url: undefined,
  cpuProf: false,
  serviceEnv: {},
  build: false,
  seed: undefined,
  runTag: 'test',
};

/** A run whose steps pass while `rate <= limits[path]`, recording the order in which they ran; the first
 * `disturbed[path@rate]` measurements of a step fail, the host taking 0.5 cores meanwhile. */
async function stepUp(
  limits: Record<string, number>,
  disturbed: Record<string, number> = {},
  declared = ['step', 'max-steps', 'down-steps'],
) {
  const progress: string[] = [];
  const io = {
    progress: (l: string) => progress.push(l),
    onCleanup: () => {},
    signal: new AbortController().signal,
  };
  const run = new Run('unit', options, io, declared);
  const ladder = run.rates(100, 1.5, 4);
  const ran: string[] = [];
  const steps = await run.stepUp({
    paths: Object.keys(limits),
    rates: ladder.rates,
    down: run.downRates(ladder),
    pause: 0,
    step: async (path, rate) => {
      const at = `${path}@${rate}`;
      ran.push(at);
      const result = {
        label: `${path} @ ${rate}/s`,
        wallS: 1,
        ops: new Map(),
        schedulerLag: { percentile: () => 0 },
        warnings: [],
        generatorCores: 0,
      } as unknown as OpenLoopResult;
      const stolen = (disturbed[at] ?? 0) > 0;
      if (stolen) disturbed[at]! -= 1;
      const pass = rate <= limits[path]! && !stolen;
      return { path, offered: rate, pass, result, otherCores: 0, cpu: { stealCores: stolen ? 0.5 : 0 } };
    },
    keep: (s) => s.pass,
    says: (s) => (s.pass ? 'meets' : 'BREAKS'),
  });
  const of = (path: string) =>
    capacity(
      steps.filter((s) => s.path === path),
      (s) => s.pass,
    );
  const report = await run.report({ steps, notes: [], summary: {}, table: { columns: [], rows: [] } });
  return { ran, of, progress, ladder, down: run.downRates(ladder), report };
}

t.test('a path that breaks at its first rate steps down until it meets the rule', async (t) => {
  const { ran, of, ladder, down } = await stepUp({ actor: 300, baseline: 50 });
  t.same(ladder.rates, [100, 150, 225, 338]);
  t.same(down, [67, 44, 30], 'each ÷ the step factor, rounded');
  t.same(ran, [
    'actor@100',
    'baseline@100',
    'baseline@67',
    'baseline@44',
    'actor@150',
    'actor@225',
    'actor@338',
  ]);
  const [actor, baseline] = [of('actor'), of('baseline')];
  t.equal(actor.best?.offered, 225);
  t.equal(actor.broke?.offered, 338);
  t.equal(baseline.best?.offered, 44, 'the first rate met on the way down');
  t.equal(baseline.broke?.offered, 67, 'the lowest rate that broke it');
  t.equal(baseline.capped, false);
});

t.test('no rate met down to the last: no capacity, broke at the lowest tried', async (t) => {
  const { ran, of } = await stepUp({ baseline: 10 });
  t.same(ran, ['baseline@100', 'baseline@67', 'baseline@44', 'baseline@30']);
  t.equal(of('baseline').best, undefined);
  t.equal(of('baseline').broke?.offered, 30);
});

t.test('a path that never breaks is capped; one that breaks later never steps down', async (t) => {
  const { ran, of } = await stepUp({ actor: 1_000, baseline: 150 });
  t.same(ran, [
    'actor@100',
    'baseline@100',
    'actor@150',
    'baseline@150',
    'actor@225',
    'baseline@225',
    'actor@338',
  ]);
  t.equal(of('actor').capped, true);
  t.equal(of('actor').best?.offered, 338);
  t.equal(of('baseline').best?.offered, 150);
  t.equal(of('baseline').broke?.offered, 225);
});

t.test(
  'a step that failed while disturbed is measured again, once; the first stays in the details',
  async (t) => {
    const { ran, of, progress, report } = await stepUp(
      { actor: 150, baseline: 1_000 },
      { 'actor@100': 1, 'baseline@150': 2 },
    );
    t.same(ran, [
      'actor@100',
      'actor@100',
      'baseline@100',
      'actor@150',
      'baseline@150',
      'baseline@150',
      'actor@225',
    ]);
    t.equal(of('actor').best?.offered, 150, 'the second measurement counts');
    t.equal(of('baseline').broke?.offered, 150, 'disturbed twice: broken at the second measurement');
    t.match(progress.join('\n'), /actor @ 100\/s: BREAKS; DISTURBED, measuring it again/);
    t.equal(report.summary['remeasured_steps'], 2);
    t.equal((report.details as { remeasured: unknown[] }).remeasured.length, 2);
    t.equal((report.details as { steps: unknown[] }).steps.length, 5, 'the report keeps the second of each');
  },
);

t.test('--param down-steps=0 turns the step-down off; an undeclared one is an error', async (t) => {
  const run = new Run('unit', { ...options, params: { 'down-steps': '0' } }, undefined as never, [
    'down-steps',
  ]);
  t.same(run.downRates({ rates: [100], factor: 1.5 }), []);
  const undeclared = new Run('unit', options, undefined as never, ['step', 'max-steps']);
  t.throws(() => undeclared.downRates({ rates: [100], factor: 1.5 }), /does not declare it/);
});

t.test('capacity: a rate met above one that broke does not count', async (t) => {
  const steps = [
    { offered: 100, ok: true },
    { offered: 150, ok: false },
    { offered: 225, ok: true },
  ];
  const c = capacity(steps, (s) => s.ok);
  t.equal(c.best?.offered, 100);
  t.equal(c.broke?.offered, 150);
  t.same(
    capacity([], () => true),
    { best: undefined, capped: false, broke: undefined },
  );
});
