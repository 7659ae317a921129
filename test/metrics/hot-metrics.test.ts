// The hot children of src/hot-metrics.ts against prom-client's own inc/observe: after the same
// observations a scrape shows the same text, also past the last bucket, after a reset and across scrapes.
import fc from 'fast-check';
import { Counter, Histogram, Registry } from 'prom-client';
import t from 'tap';
import { hotCounter, hotHistogram } from '../../src/hot-metrics.js';

const BUCKETS = [0.001, 0.01, 0.1, 1];

function pair() {
  const own = new Registry();
  const hot = new Registry();
  const make = (registry: Registry) => ({
    histogram: new Histogram({
      name: 'h_seconds',
      help: 'h',
      labelNames: ['route', 'status'] as const,
      buckets: BUCKETS,
      registers: [registry],
    }),
    counter: new Counter({
      name: 'c_total',
      help: 'c',
      labelNames: ['tier'] as const,
      registers: [registry],
    }),
  });
  return { own, hot, ownMetrics: make(own), hotMetrics: make(hot) };
}

type Step =
  | { kind: 'observe'; route: string; value: number; times: number }
  | { kind: 'inc'; tier: string; by: number }
  | { kind: 'scrape' };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant('observe' as const),
    route: fc.constantFrom('/a', '/b'),
    // Exact binary fractions, so that a sum is the same in either order of addition.
    value: fc.integer({ min: 0, max: 4096 }).map((n) => n / 1024),
    times: fc.integer({ min: 1, max: 4 }),
  }),
  fc.record({ kind: fc.constant('inc' as const), tier: fc.constantFrom('memory', 'redis'), by: fc.nat(5) }),
  fc.record({ kind: fc.constant('scrape' as const) }),
);

t.test('a scrape shows the same as prom-client after any sequence of observations', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.array(step, { maxLength: 60 }), async (steps) => {
      const { own, hot, ownMetrics, hotMetrics } = pair();
      const timer = hotHistogram(hotMetrics.histogram);
      const counted = hotCounter(hotMetrics.counter);
      const timers = { '/a': timer({ route: '/a', status: 200 }), '/b': timer({ route: '/b', status: 200 }) };
      const tiers = { memory: counted({ tier: 'memory' }), redis: counted({ tier: 'redis' }) };
      // A hot child's series is listed at 0 from its making.
      for (const route of ['/a', '/b']) ownMetrics.histogram.zero({ route, status: 200 });
      for (const tier of ['memory', 'redis']) ownMetrics.counter.inc({ tier }, 0);
      for (const s of steps) {
        if (s.kind === 'observe') {
          for (let i = 0; i < s.times; i += 1)
            ownMetrics.histogram.observe({ route: s.route, status: 200 }, s.value);
          timers[s.route as '/a' | '/b'].observe(s.value, s.times);
        } else if (s.kind === 'inc') {
          ownMetrics.counter.inc({ tier: s.tier }, s.by);
          tiers[s.tier as 'memory' | 'redis'].inc(s.by);
        } else {
          if ((await hot.metrics()) !== (await own.metrics())) return false;
        }
      }
      return (await hot.metrics()) === (await own.metrics());
    }),
    { numRuns: 200 },
  );
  t.pass('200 random sequences scraped alike');
});

t.test('past the last bucket, after a reset, and an observation that is not a number', async (t) => {
  const { own, hot, ownMetrics, hotMetrics } = pair();
  const child = hotHistogram(hotMetrics.histogram)({ route: '/a', status: 500 });
  ownMetrics.histogram.zero({ route: '/a', status: 500 });
  child.observe(7);
  ownMetrics.histogram.observe({ route: '/a', status: 500 }, 7);
  const text = await hot.metrics();
  t.match(text, /h_seconds_bucket\{le="1",route="\/a",status="500"\} 0\n/, 'not in the last bucket');
  t.match(text, /h_seconds_bucket\{le="\+Inf",route="\/a",status="500"\} 1\n/, 'in +Inf');
  t.equal(text, await own.metrics());
  hotMetrics.histogram.reset();
  child.observe(0.005);
  t.match(
    await hot.metrics(),
    /h_seconds_count\{route="\/a",status="500"\} 1\n/,
    'a reset forgets what was scraped before it, not what came after',
  );
  t.throws(() => child.observe(Number.NaN), { name: 'InvariantError' });
});
