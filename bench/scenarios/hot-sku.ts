/**
 * Hot SKU: every purchase to one product, actor vs baseline, open-loop step-up until a path breaks the SLO
 * (p99 > 100 ms or errors > 1%); `--mode closed`: the first, closed-loop version (bench/hot-sku-closed.ts).
 */
import type { Strategy } from '../api.js';
import { INITIAL_STOCK, PATHS, runClosedLoop } from '../hot-sku-closed.js';
import { roundOrNull } from '../measure.js';
import { histogramMean } from '../prom.js';
import { PurchaseLedger } from '../load.js';
import { num } from '../report.js';
import {
  capacity,
  defineScenario,
  healthOf,
  openStep,
  oversold,
  SLO,
  stepCharts,
  stepDetails,
  stepTable,
} from '../scenario.js';

export default defineScenario({
  name: 'hot-sku',
  describe:
    'one hot product, actor vs baseline: open-loop step-up of the offered rate until p99 > 100 ms or errors > 1% (--mode closed: the closed-loop A B A B version)',
  defaults: { durationS: 5, connections: 500, rate: 200 },
  modes: ['open', 'closed'],
  async run(run) {
    const { options, io } = run;
    if (options.mode === 'closed') return runClosedLoop(run);
    const factor = run.param('step', 1.5, 1.05, 10);
    const maxSteps = run.param('max-steps', 14, 1, 50);
    const pause = run.param('pause', 1, 0, 60);
    const firstRate = options.rate ?? 200;
    await run.setUp({ cluster: { nodes: 1, paymentLatencyMs: 5 }, connectionsTimeoutMs: 60_000 });
    const tag = run.tag('hs');
    const products = await run.pathProducts(tag, INITIAL_STOCK);
    const ledger = new PurchaseLedger(run.tokens);
    const purchase = ledger.stream(tag);
    // Unmeasured: actor activation, JIT, connection and pool warm-up of both paths.
    for (const path of PATHS)
      await run.openLoop(`warm-up ${path}`, firstRate, 1, purchase(products[path].id));

    const steps = await run.stepUp({
      paths: PATHS,
      rates: run.steppedRates(firstRate, factor, maxSteps),
      pause,
      step: async (path, rate, startS) => {
        const measured = await run.measure(`${path} @ ${num(rate)}/s`, rate, purchase(products[path].id));
        const s = openStep(measured, rate, startS);
        io.progress(
          `bench: ${path} @ ${num(rate)}/s: p99 ${s.p99} ms, errors ${(s.errorShare * 100).toFixed(2)}% → ${s.pass ? 'meets' : 'BREAKS'} the SLO`,
        );
        const { before, after } = measured.metrics;
        return { ...s, path, meanBatch: histogramMean(before, after, 'product_batch_size') };
      },
      keep: (s) => s.pass,
    });

    const all = PATHS.map((p) => ({ productId: products[p].id, label: p, initialStock: INITIAL_STOCK[p] }));
    const { checks, restarted, shardLosses, ok, notes: checkNotes } = await run.check(all, [ledger]);
    const runHealth = healthOf(
      { steps, background: run.background, restarted, shardLosses },
      'sharing them with the service, MariaDB, Redis, Kafka and the payment provider',
    );
    const of = (path: Strategy) =>
      capacity(
        steps.filter((s) => s.path === path),
        (s) => s.pass,
      );
    const actor = of('actor');
    const baseline = of('baseline');
    const actorPerS = actor.best?.result.okPerS ?? 0;
    const baselinePerS = baseline.best?.result.okPerS ?? 0;
    const ratio = baselinePerS > 0 ? actorPerS / baselinePerS : null;
    const capText = (c: ReturnType<typeof of>) =>
      c.best === undefined
        ? 'none (the first step already broke the SLO: lower --rate)'
        : `${num(c.best.result.okPerS)}/s (offered ${num(c.best.offered)}/s, p99 ${c.best.p99} ms)${c.capped ? ' or more: never broke the SLO within --param max-steps' : `; broke at ${num(c.broke!.offered)}/s (p99 ${c.broke!.p99} ms, errors ${(c.broke!.errorShare * 100).toFixed(2)}%)`}`;
    const notes = [
      `mode: OPEN LOOP, offered rate stepped ×${factor} from ${num(firstRate)}/s, ${options.durationS} s per step and path, actor then baseline at each rate; latency from each request's intended send time (coordinated omission corrected); ${num(options.connections)} connections.`,
      `SLO: p99 ≤ ${SLO.p99Ms} ms and errors ≤ ${SLO.errorShare * 100}% (an error = any answer but a fresh 201, or no answer). Capacity = confirmed purchases/s at the highest step meeting it (resolution: one step, ×${factor}).`,
      `actor capacity: ${capText(actor)}`,
      `baseline capacity: ${capText(baseline)}`,
      `ratio actor/baseline: ${ratio === null ? 'n/a' : `${ratio.toFixed(1)}x`}`,
      ...runHealth.notes,
      ...checkNotes,
      `correctness: ${ok ? 'OK' : 'FAILED'}`,
    ];
    const marked = [actor.best, baseline.best, actor.broke, baseline.broke];
    return {
      ok,
      summary: {
        mode: 'open-loop',
        actor_per_s: Math.round(actorPerS),
        baseline_per_s: Math.round(baselinePerS),
        ratio: roundOrNull(ratio, 2),
        oversold: oversold(checks),
        actor_offered_per_s: actor.best?.offered ?? 0,
        baseline_offered_per_s: baseline.best?.offered ?? 0,
        actor_capped: actor.capped,
        baseline_capped: baseline.capped,
        actor_p99_ms: actor.best?.p99 ?? null,
        baseline_p99_ms: baseline.best?.p99 ?? null,
        actor_broke_at_per_s: actor.broke?.offered ?? null,
        baseline_broke_at_per_s: baseline.broke?.offered ?? null,
        slo_p99_ms: SLO.p99Ms,
        slo_error_pct: SLO.errorShare * 100,
        step_factor: factor,
        steps: steps.length,
        ...runHealth.summary,
        connections: options.connections,
        step_s: options.durationS,
      },
      table: stepTable(
        'path @ offered/s',
        steps,
        [],
        [['batch', (s) => (s.meanBatch === undefined ? '-' : s.meanBatch.toFixed(1))]],
      ),
      notes,
      details: {
        products,
        checks,
        stackRestarted: restarted,
        ambiguousSample: ledger.ambiguous.slice(0, 100),
        steps: steps.map(stepDetails),
      },
      charts: stepCharts(
        [
          `hot-sku: purchase latency vs offered rate (open loop, SLO p99 ${SLO.p99Ms} ms)`,
          'hot-sku: purchase latency at capacity and at the first broken step',
          'hot-sku: offered vs answered per second, steps in order',
        ],
        PATHS.map((path) => ({ label: path, steps: steps.filter((s) => s.path === path), marked })),
      ),
    };
  },
});
