/**
 * Hot SKU: every purchase to one product, actor vs baseline, open-loop step-up until a path breaks the SLO
 * (p99 > 100 ms or errors > 1%); `--mode closed`: closed-loop phases A B A B at `--connections` in flight.
 */
import type { Strategy } from '../api.js';
import { PurchaseLedger } from '../load.js';
import { roundOrNull } from '../measure.js';
import { histogramMean } from '../prom.js';
import { num } from '../report.js';
import {
  capacity,
  compare,
  defineScenario,
  oversold,
  SLO,
  STEP_UP_PARAMS,
  stepCharts,
  stepDetails,
  stepTable,
  type Run,
} from '../scenario.js';

/** Far more than either path sells in a run, so no phase ends in OUT_OF_STOCK. */
const INITIAL_STOCK: Record<Strategy, number> = { actor: 10_000_000, baseline: 1_000_000 };
const PATHS: readonly Strategy[] = ['actor', 'baseline'];

async function run(run: Run) {
  const { options, io } = run;
  const closed = options.mode === 'closed';
  const { rates, factor } = run.rates(200, 1.5, 14);
  const pause = run.pause();
  const firstRate = rates[0]!;
  await run.setUp({ cluster: { nodes: 1, paymentLatencyMs: 5 }, connectionsTimeoutMs: 60_000 });
  const tag = run.tag('hs');
  const products = await run.pathProducts(tag, INITIAL_STOCK);
  const ledger = new PurchaseLedger(run.tokens);
  const purchase = ledger.stream(tag);
  const next = (path: Strategy) => purchase(products[path].id);
  const withBatch = <S extends Awaited<ReturnType<Run['step']>>>(s: S) => ({
    ...s,
    meanBatch: histogramMean(s.metrics.before, s.metrics.after, 'product_batch_size'),
  });

  let steps;
  if (closed) steps = (await run.alternate([...PATHS, ...PATHS], next)).map(withBatch);
  else {
    // Unmeasured: actor activation, JIT, connection and pool warm-up of both paths.
    for (const path of PATHS) await run.openLoop(`warm-up ${path}`, firstRate, 1, next(path));
    steps = await run.stepUp({
      paths: PATHS,
      rates,
      pause,
      step: async (path, rate, startS) => {
        const s = withBatch(await run.step(path, `${path} @ ${num(rate)}/s`, rate, next(path), startS));
        io.progress(
          `bench: ${path} @ ${num(rate)}/s: p99 ${s.p99} ms, errors ${(s.errorShare * 100).toFixed(2)}% → ${s.pass ? 'meets' : 'BREAKS'} the SLO`,
        );
        return s;
      },
      keep: (s) => s.pass,
    });
  }

  const all = PATHS.map((p) => ({ productId: products[p].id, label: p, initialStock: INITIAL_STOCK[p] }));
  const checked = await run.check(all, ledger);
  const { checks, restarted, ok, notes: checkNotes } = checked;
  const shared = 'sharing them with the service, MariaDB, Redis, Kafka and the payment provider';
  const runHealth = run.health(steps, checked, shared);
  const of = (path: Strategy) =>
    capacity(
      steps.filter((s) => s.path === path),
      (s) => s.pass,
    );
  const [actor, baseline] = [of('actor'), of('baseline')];
  const capText = (c: typeof actor) =>
    c.best === undefined
      ? 'none (the first step already broke the SLO: lower --rate)'
      : `${num(c.best.result.okPerS)}/s (offered ${num(c.best.offered)}/s, p99 ${c.best.p99} ms)${c.capped ? ' or more: never broke the SLO within --param max-steps' : `; broke at ${num(c.broke!.offered)}/s (p99 ${c.broke!.p99} ms, errors ${(c.broke!.errorShare * 100).toFixed(2)}%)`}`;
  const c = compare(steps, ['actor', 'baseline'], restarted);
  const actorPerS = closed ? c.A.perS : (actor.best?.result.okPerS ?? 0);
  const baselinePerS = closed ? c.B.perS : (baseline.best?.result.okPerS ?? 0);
  const ratio = baselinePerS > 0 ? actorPerS / baselinePerS : null;
  const notes = [
    closed
      ? `mode: CLOSED LOOP, ${num(options.connections)} purchases in flight, phases actor baseline actor baseline of ${options.durationS / 2} s after 1 s warm-up each; latency from the actual send (not corrected for coordinated omission): compare paths, not SLOs.`
      : `mode: OPEN LOOP, offered rate stepped ×${factor} from ${num(firstRate)}/s, ${options.durationS} s per step and path, actor then baseline at each rate; latency from each request's intended send time (coordinated omission corrected); ${num(options.connections)} connections.`,
    ...(closed
      ? [`answers actor: ${JSON.stringify(c.A.answers)}  baseline: ${JSON.stringify(c.B.answers)}`]
      : [
          `SLO: p99 ≤ ${SLO.p99Ms} ms and errors ≤ ${SLO.errorShare * 100}% (an error = any answer but a fresh 201, or no answer). Capacity = confirmed purchases/s at the highest step meeting it (resolution: one step, ×${factor}).`,
          `actor capacity: ${capText(actor)}`,
          `baseline capacity: ${capText(baseline)}`,
        ]),
    `ratio actor/baseline: ${ratio === null ? 'n/a' : `${ratio.toFixed(1)}x`}${closed ? ` (${num(actorPerS)}/s vs ${num(baselinePerS)}/s; undisturbed phases only: ${c.ratioUndisturbed?.toFixed(1) ?? 'n/a'})` : ''}`,
    ...runHealth.notes,
    ...checkNotes,
    `correctness: ${ok ? 'OK' : 'FAILED'}`,
  ];
  const marked = [actor.best, baseline.best, actor.broke, baseline.broke];
  const capacities = {
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
  };
  return {
    ok,
    summary: {
      mode: closed ? 'closed-loop' : 'open-loop',
      ...(closed ? c.keys : {}),
      actor_per_s: Math.round(actorPerS),
      baseline_per_s: Math.round(baselinePerS),
      ratio: roundOrNull(ratio, 2),
      ...(closed ? { ratio_undisturbed: roundOrNull(c.ratioUndisturbed, 2) } : capacities),
      oversold: oversold(checks),
      steps: steps.length,
      ...runHealth.summary,
      connections: options.connections,
      step_s: closed ? options.durationS / 2 : options.durationS,
    },
    table: stepTable(
      closed ? 'phase' : 'path @ offered/s',
      steps,
      closed ? [['sent/s', (s) => s.offered]] : [],
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
    charts: closed
      ? []
      : stepCharts(
          [
            `hot-sku: purchase latency vs offered rate (open loop, SLO p99 ${SLO.p99Ms} ms)`,
            'hot-sku: purchase latency at capacity and at the first broken step',
            'hot-sku: offered vs answered per second, steps in order',
          ],
          PATHS.map((path) => ({ label: path, steps: steps.filter((s) => s.path === path), marked })),
        ),
  };
}

export default defineScenario({
  name: 'hot-sku',
  describe:
    'one hot product, actor vs baseline: open-loop step-up of the offered rate until p99 > 100 ms or errors > 1% (--mode closed: closed-loop phases A B A B)',
  params: [...STEP_UP_PARAMS],
  defaults: { durationS: 5, connections: 500, rate: 200 },
  modes: ['open', 'closed'],
  run,
});
