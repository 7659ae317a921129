/**
 * Hot SKU: every purchase to one product, actor vs baseline, open-loop step-up until a path breaks the SLO
 * (p99 > 100 ms or errors > 1%); `--mode closed`: closed-loop phases A B A B at `--connections` in flight.
 */
import type { Strategy } from '../load.js';
import { histogramMean, roundOrNull } from '../measure.js';
import { num } from '../report.js';
import { stepCharts } from '../chart.js';
import * as bench from '../scenario.js';

/** Far more than either path sells in a run, so no phase ends in OUT_OF_STOCK. */
const INITIAL_STOCK: Record<Strategy, number> = { actor: 10_000_000, baseline: 1_000_000 };
const PATHS: readonly Strategy[] = ['actor', 'baseline'];
type Capacity = ReturnType<typeof bench.capacity<bench.PathStep>>;

const capText = (c: Capacity) =>
  c.broke === undefined && c.best === undefined
    ? 'none: no step ran'
    : c.best === undefined
      ? `none: broke the SLO at every step, down to ${num(c.broke!.offered)}/s (lower --rate or more --param down-steps)`
      : `${num(c.best.result.okPerS)}/s (offered ${num(c.best.offered)}/s, p99 ${c.best.p99} ms)${c.capped ? ' or more: never broke the SLO within --param max-steps' : `; broke at ${num(c.broke!.offered)}/s (p99 ${c.broke!.p99} ms, errors ${(c.broke!.errorShare * 100).toFixed(2)}%)`}`;

export default bench.defineScenario({
  name: 'hot-sku',
  describe:
    'one hot product, actor vs baseline: open-loop step-up of the offered rate until p99 > 100 ms or errors > 1% (--mode closed: closed-loop phases A B A B)',
  params: [...bench.STEP_UP_PARAMS, 'down-steps', 'warm-up'],
  defaults: { durationS: 5, connections: 500, rate: 200 },
  modes: ['open', 'closed'],
  async run(run) {
    const { options } = run;
    const closed = options.mode === 'closed';
    const ladder = run.rates(200, 1.5, 14);
    const { rates, factor } = ladder;
    const down = run.downRates(ladder);
    const pause = run.pause();
    // A fresh node's first seconds are V8 compiling the purchase path: its p99 then, not the design's.
    const warmUpS = run.param('warm-up', 10, 1, 600);
    await run.setUp({ cluster: { nodes: 1, paymentLatencyMs: 5 }, connectionsTimeoutMs: 60_000 });
    const ids = await run.pathProducts(INITIAL_STOCK);
    const next = (path: Strategy) => run.purchases(ids[path]);
    const withBatch = <S extends bench.PathStep>(s: S) => ({
      ...s,
      meanBatch: histogramMean(s.metrics.before, s.metrics.after, 'product_batch_size'),
    });
    const steps = closed
      ? (await run.alternate([...PATHS, ...PATHS], next)).map(withBatch)
      : await run.stepUp({
          paths: PATHS,
          rates,
          down,
          pause,
          // Unmeasured: actor activation, JIT, connection and pool warm-up of both paths.
          warmUp: [warmUpS, next],
          step: async (path, rate, startS) =>
            withBatch(await run.step(path, `${path} @ ${num(rate)}/s`, rate, next(path), startS)),
          keep: (s) => s.pass,
          says: (s) =>
            `p99 ${s.p99} ms, errors ${(s.errorShare * 100).toFixed(2)}% → ${s.pass ? 'meets' : 'BREAKS'} the SLO`,
        });

    await run.check();
    const of = (path: Strategy) => steps.filter((s) => s.path === path);
    const [actor, baseline] = PATHS.map((p) => bench.capacity(of(p), (s) => s.pass)) as [Capacity, Capacity];
    const c = bench.compare(steps, ['actor', 'baseline'], run.restarted());
    const actorPerS = closed ? c.A.perS : (actor.best?.result.okPerS ?? 0);
    const baselinePerS = closed ? c.B.perS : (baseline.best?.result.okPerS ?? 0);
    const ratio = baselinePerS > 0 ? actorPerS / baselinePerS : null;
    const capacities = (path: Strategy, cap: Capacity) =>
      bench.keyed(path, {
        offered_per_s: cap.best?.offered ?? 0,
        capped: cap.capped,
        p99_ms: cap.best?.p99 ?? null,
        broke_at_per_s: cap.broke?.offered ?? null,
      });
    const openKeys = {
      slo_p99_ms: bench.SLO.p99Ms,
      slo_error_pct: bench.SLO.errorShare * 100,
      step_factor: factor,
    };
    return run.report({
      steps,
      summary: {
        mode: closed ? 'closed-loop' : 'open-loop',
        ...(closed ? c.keys : {}),
        actor_per_s: Math.round(actorPerS),
        baseline_per_s: Math.round(baselinePerS),
        ratio: roundOrNull(ratio, 2),
        ...(closed
          ? { ratio_undisturbed: roundOrNull(c.ratioUndisturbed, 2) }
          : { ...capacities('actor', actor), ...capacities('baseline', baseline), ...openKeys }),
        steps: steps.length,
        connections: options.connections,
        step_s: closed ? options.durationS / 2 : options.durationS,
      },
      notes: [
        closed
          ? `mode: CLOSED LOOP, ${num(options.connections)} purchases in flight, phases actor baseline actor baseline of ${options.durationS / 2} s after 1 s warm-up each; latency from the actual send (not corrected for coordinated omission): compare paths, not SLOs.`
          : `mode: OPEN LOOP, offered rate stepped ×${factor} from ${num(rates[0]!)}/s (${down.length === 0 ? 'no step-down' : `a path breaking the SLO there steps down ÷${factor}, to ${num(down.at(-1)!)}/s at the lowest`}) after ${warmUpS} s of unmeasured warm-up per path at that rate, ${options.durationS} s per step and path, actor then baseline at each rate; latency from each request's intended send time (coordinated omission corrected); ${num(options.connections)} connections.`,
        closed
          ? [`answers actor: ${JSON.stringify(c.A.answers)}  baseline: ${JSON.stringify(c.B.answers)}`]
          : [
              `SLO: p99 ≤ ${bench.SLO.p99Ms} ms and errors ≤ ${bench.SLO.errorShare * 100}% (an error = any answer but a fresh 201, or no answer). Capacity = confirmed purchases/s at the highest step meeting it (resolution: one step, ×${factor}).`,
              `actor capacity: ${capText(actor)}`,
              `baseline capacity: ${capText(baseline)}`,
            ],
        `ratio actor/baseline: ${ratio === null ? 'n/a' : `${ratio.toFixed(1)}x`}${closed ? ` (${num(actorPerS)}/s vs ${num(baselinePerS)}/s; undisturbed phases only: ${c.ratioUndisturbed?.toFixed(1) ?? 'n/a'})` : ''}`,
      ],
      table: bench.stepTable(
        closed ? 'phase' : 'path @ offered/s',
        steps,
        closed ? [['sent/s', (s) => s.offered]] : [],
        [['batch', (s) => (s.meanBatch === undefined ? '-' : s.meanBatch.toFixed(1))]],
      ),
      details: { products: ids },
      charts: closed
        ? []
        : stepCharts(
            [
              `hot-sku: purchase latency vs offered rate (open loop, SLO p99 ${bench.SLO.p99Ms} ms)`,
              'hot-sku: purchase latency at capacity and at the first broken step',
              'hot-sku: offered vs answered per second, steps in order',
            ],
            PATHS.map((path) => ({
              label: path,
              steps: of(path),
              marked: [actor.best, baseline.best, actor.broke, baseline.broke],
            })),
          ),
    });
  },
});
