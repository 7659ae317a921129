/**
 * Scale: one node, then two behind the bench's nginx, the same open-loop purchase step-up over `products`
 * products until a step falls behind; 201s/s at the highest step that kept up, the ratio, the SLO capacity
 * and the share of purchases forwarded to the owner. On a 2-core box: the cost of forwarding, not scale-out.
 */
import { createProducts } from '../api.js';
import { cores } from '../cpu.js';
import { round, roundOrNull } from '../measure.js';
import type { Samples } from '../prom.js';
import { PurchaseLedger } from '../load.js';
import { num } from '../report.js';
import {
  defineScenario,
  Run,
  SLO,
  stepCharts,
  stepDetails,
  stepTable,
  capacity,
  healthOf,
  openStep,
  oversold,
  backgroundNote,
  type OpenStep,
} from '../scenario.js';
import type { ScenarioResult } from '../types.js';

const STOCK = 1_000_000;
/** A step is sustained when its steady-state 201s/s reach this share of the offered rate. */
const SUSTAINED_SHARE = 0.95;

interface Step extends OpenStep {
  /** Kept up: steady-state 201s/s ≥ 95% of the offered rate. */
  readonly sustained: boolean;
  /** 201s completed per second over seconds 1 … duration−1 of the step (all of the window if shorter). */
  readonly steadyOkPerS: number;
  /** Purchases routed by the receiving node: served locally / forwarded to the owner (Σ over nodes). */
  readonly local: number;
  readonly forwarded: number;
}

type SetupRun = Awaited<ReturnType<typeof runSetup>>;

/** Σ over nodes of `cluster_routed_total{op="purchase",where=…}` deltas. */
function routed(before: Samples, after: Samples): { local: number; forwarded: number; present: boolean } {
  let local = 0;
  let forwarded = 0;
  let present = false;
  for (const [sample, value] of after) {
    if (!sample.startsWith('cluster_routed_total{') || !sample.includes('op="purchase"')) continue;
    present = true;
    const d = value - (before.get(sample) ?? 0);
    if (sample.includes('where="forwarded"')) forwarded += d;
    else if (sample.includes('where="local"')) local += d;
  }
  return { local, forwarded, present };
}

type Knobs = ReturnType<typeof knobsOf>;

const knobsOf = (run: Run) => ({
  productCount: run.param('products', 32, 1, 10_000),
  factor: run.param('step', 1.25, 1.05, 10),
  maxSteps: run.param('max-steps', 20, 1, 50),
  pause: run.param('pause', 1, 0, 60),
  warmupS: run.param('warm-up', 2, 0, 60),
  firstRate: run.options.rate ?? 50,
});

/** One setup: its cluster behind nginx, the step-up until a step falls behind, its checks; then stopped. */
async function runSetup(top: Run, knobs: Knobs, nodes: number) {
  const { options, io } = top;
  const { productCount, factor, maxSteps, pause, warmupS, firstRate } = knobs;
  const label = nodes === 1 ? '1 node' : `${nodes} nodes`;
  io.progress(`bench: ${label} behind the bench nginx`);
  // Each setup's processes stop before the next starts.
  return top.scoped(`-${nodes}n`, `the ${label} cluster`, async (run) => {
    await run.setUp({
      cluster: { nodes, nginx: true, paymentLatencyMs: 5 },
      connectionsTimeoutMs: 60_000,
      backgroundMs: 1_000,
    });
    const tag = `sc${nodes}n${run.tag('')}`;
    const products = await createProducts(run.admin, run.tokens, tag, productCount, STOCK);
    const ids = products.map((p) => p.id);
    const ledger = new PurchaseLedger(run.tokens, ids);
    const purchase = ledger.stream(tag);
    // A random product per purchase, not seq % N: nginx alternates the nodes request by request, so a
    // round-robin over an even number of products would send each product to the same node every time.
    const next = () => purchase(ids[Math.floor(Math.random() * ids.length)]!)();
    // Unmeasured: every product's actor activated on its owner, JIT, connection pools.
    if (warmupS > 0) await run.openLoop(`warm-up ${label}`, firstRate, warmupS, next);
    let routedMetric = false;
    const steps = await run.stepUp<string, Step>({
      paths: [label],
      rates: run.steppedRates(firstRate, factor, maxSteps),
      pause,
      step: async (_, rate, startS) => {
        const measured = await run.measure(`${label} @ ${num(rate)}/s`, rate, next);
        const { result } = measured;
        const r = routed(measured.metrics.before, measured.metrics.after);
        routedMetric ||= r.present;
        const s = openStep(measured, rate, startS);
        // Steady state: 201s per second over the whole seconds after the first (the first second's answers
        // lag its arrivals by one latency, which would count a slower but steady setup as falling behind).
        const steady = result.timeline.slice(1, Math.floor(options.durationS));
        const steadyOkPerS =
          steady.length > 0
            ? steady.reduce((sum, b) => sum + b.completed - b.errors, 0) / steady.length
            : result.okPerS;
        const sustained = steadyOkPerS >= SUSTAINED_SHARE * result.offeredPerS;
        io.progress(
          `bench: ${label} @ ${num(rate)}/s: p99 ${s.p99} ms, errors ${(s.errorShare * 100).toFixed(2)}%, forwarded ${r.forwarded}/${r.local + r.forwarded} → SLO ${s.pass ? 'met' : 'BROKEN'}, ${sustained ? 'kept up' : 'FELL BEHIND'}`,
        );
        return { ...s, sustained, steadyOkPerS, ...r };
      },
      keep: (s) => s.sustained,
    });
    const checked = await run.check(
      products.map((p, i) => ({ productId: p.id, label: `${label} #${i}`, initialStock: STOCK })),
      [ledger],
      { settleMs: 1_000 },
    );
    // `replayed`: purchases answered 201 Idempotent-Replayed (nginx retried a POST whose first attempt committed).
    return { nodes, label, steps, routedMetric, ...checked, background: run.background, opened: run.opened };
  });
}

export default defineScenario({
  name: 'scale',
  describe:
    'one node vs two behind nginx, same run: open-loop step-up of purchases over N products until it falls behind; purchases/s, ratio, forwarded share',
  defaults: { durationS: 5, connections: 500, rate: 50 },
  run: async (run) => {
    if (run.options.url !== undefined)
      throw new Error('scale starts a one-node and a two-node cluster of its own: it cannot run with --url');
    const knobs = knobsOf(run);
    const one = await runSetup(run, knobs, 1);
    const two = run.io.signal.aborted ? undefined : await runSetup(run, knobs, 2);
    return summarize(run, knobs, one, two);
  },
});

function summarize(top: Run, knobs: Knobs, one: SetupRun, two: SetupRun | undefined): ScenarioResult {
  const { options } = top;
  const setups = two === undefined ? [one] : [one, two];
  const { productCount, factor, firstRate } = knobs;
  const capacities = (s: SetupRun | undefined) => {
    const steps = s?.steps ?? [];
    return {
      ...capacity(steps, (x) => x.sustained),
      slo: capacity(steps, (x) => x.pass),
      first: steps[0],
      peak: steps.reduce((m, x) => Math.max(m, x.result.okPerS), 0),
    };
  };
  const c1 = capacities(one);
  const c2 = capacities(two);
  // A setup with no qualifying step has no figure (null), and then neither has the ratio.
  const over = (a: number | undefined, b: number | undefined): number | null =>
    a === undefined || b === undefined || b <= 0 ? null : a / b;
  const ratio = over(c2.best?.steadyOkPerS, c1.best?.steadyOkPerS);
  const sloRatio = over(c2.slo.best?.result.okPerS, c1.slo.best?.result.okPerS);
  const peakRatio = c1.peak > 0 && two !== undefined ? c2.peak / c1.peak : null;
  const share = (steps: readonly Step[]) => {
    const total = steps.reduce((s, x) => s + x.local + x.forwarded, 0);
    return total > 0 ? steps.reduce((s, x) => s + x.forwarded, 0) / total : null;
  };
  const forwardedShare = two === undefined || !two.routedMetric ? null : share(two.steps);
  const forwardedShareAtCapacity =
    c2.best === undefined || two?.routedMetric !== true ? null : share([c2.best]);
  const forwardedShareOne = one.routedMetric ? share(one.steps) : null;
  const allChecks = setups.flatMap((s) => s.checks);
  const sold = oversold(allChecks);
  const allSteps = setups.flatMap((s) => s.steps.map((step) => ({ setup: s, step })));
  const restarted = setups.flatMap((s) => s.restarted);
  const shardLosses = setups.reduce((n, s) => n + s.shardLosses, 0);
  const runHealth = healthOf(
    { steps: allSteps.map((x) => x.step), background: undefined, restarted, shardLosses },
    'sharing them with the nodes, nginx and the stack',
  );
  const ok = two !== undefined && allChecks.every((c) => c.ok);

  const capText = (c: ReturnType<typeof capacities>) =>
    `sustained ${c.best === undefined ? 'none (the first step fell behind: lower --rate)' : `${num(c.best.steadyOkPerS)}/s (offered ${num(c.best.offered)}/s, p50 ${c.best.p50} ms, p99 ${c.best.p99} ms)${c.capped ? ' or more: kept up to --param max-steps' : `; fell behind at ${num(c.broke!.offered)}/s (${num(c.broke!.steadyOkPerS)} steady 201s/s, p99 ${c.broke!.p99} ms, errors ${(c.broke!.errorShare * 100).toFixed(2)}%)`}`}; ` +
    `at the SLO ${c.slo.best === undefined ? 'none (the first step broke it)' : `${num(c.slo.best.result.okPerS)}/s (p99 ${c.slo.best.p99} ms)`}; ` +
    `at ${num(c.first?.offered ?? 0)}/s p50 ${c.first?.p50 ?? '-'} ms, p99 ${c.first?.p99 ?? '-'} ms; highest 201s/s in any step ${num(c.peak)}`;
  const pct = (x: number | null) => (x === null ? 'n/a' : `${(x * 100).toFixed(1)}%`);

  const notes = [
    `mode: OPEN LOOP, offered rate stepped ×${factor} from ${num(firstRate)}/s, ${options.durationS} s per step, purchases (quantity 1, unique keys) to a random one of ${productCount} actor products (fresh per setup); latency from each request's intended send time; ${num(options.connections)} connections to the bench's nginx in both setups (production nginx.conf); payment provider of the bench's own at 5 ms.`,
    `setups one after the other: 1 node behind nginx, stopped, then 2 nodes behind a fresh nginx (shards spread over both: a purchase landing on the non-owner is forwarded over the peer channel).`,
    `throughput = 201s/s at the highest step that kept up (steady-state 201s/s, i.e. per whole second after the first, ≥ ${SUSTAINED_SHARE * 100}% of offered; the series stops at the first that did not; resolution one step, ×${factor}). Also given: the SLO capacity (p99 ≤ ${SLO.p99Ms} ms and errors ≤ ${SLO.errorShare * 100}%, an error = any answer but a 201) and both setups' latency at the first step (the same offered rate).`,
    `1 node capacity: ${capText(c1)}`,
    `2 nodes capacity: ${capText(c2)}`,
    `ratio 2 nodes / 1 node: ${ratio === null ? 'n/a' : `${ratio.toFixed(2)}x`} in sustained 201s/s; ${sloRatio === null ? 'n/a' : `${sloRatio.toFixed(2)}x`} at the SLO; ${peakRatio === null ? 'n/a' : `${peakRatio.toFixed(2)}x`} in highest 201s/s of any step.`,
    `forwarded share of purchases (cluster_routed_total{op="purchase"}, Σ over nodes, measured steps): 2 nodes ${pct(forwardedShare)} (at capacity step ${pct(forwardedShareAtCapacity)}); 1 node ${pct(forwardedShareOne)}${one.routedMetric ? '' : ' (metric absent: a service without cluster_routed_total)'}.`,
    `CAVEAT: this machine has ${cores()} cores; both nodes, nginx, MariaDB, Redis, Kafka, the provider and the generator share them, so the 2-node figure shows the cost of forwarding and ownership, not horizontal scale.`,
    ...runHealth.notes,
    ...setups.flatMap((s) => [
      ...backgroundNote(s.background, `the ${s.label} load`),
      `${s.label}: ${num(s.replayed)} purchases answered 201 Idempotent-Replayed (nginx retried a POST whose first attempt committed); sagas still pending after the wait: ${s.stillPending}`,
    ]),
    ...allChecks
      .filter((c) => !c.ok)
      .map(
        (c) =>
          `MISMATCH ${c.label} (product ${c.productId}): initial ${num(c.initialStock)} - stock ${num(c.stock)} vs SUM(quantity) ${num(c.sold)}; confirmed ${num(c.orders.CONFIRMED)} / cancelled ${num(c.orders.CANCELLED)} / pending ${num(c.orders.PENDING)} vs 201 ${num(c.confirmed)} / 402 ${num(c.declined)} + ${num(c.answered202)} 202 + ${num(c.ambiguous)} 5xx; oversold ${c.oversold}`,
      ),
    `checks: ${allChecks.length} products, ${allChecks.filter((c) => c.ok).length} match their answers (stock and orders); oversold ${sold}`,
    `correctness: ${ok ? 'OK' : 'FAILED'}`,
  ];

  const perSetup: Record<string, unknown> = {};
  for (const [s, c] of [
    [one, c1],
    [two, c2],
  ] as const) {
    if (s === undefined) continue;
    const k = s.nodes === 1 ? 'one_node' : 'two_nodes';
    perSetup[`${k}_per_s`] = c.best === undefined ? null : Math.round(c.best.steadyOkPerS);
    perSetup[`${k}_offered_per_s`] = c.best?.offered ?? null;
    perSetup[`${k}_p50_ms`] = c.best?.p50 ?? null;
    perSetup[`${k}_p99_ms`] = c.best?.p99 ?? null;
    perSetup[`${k}_capped`] = c.capped;
    perSetup[`${k}_fell_behind_at_per_s`] = c.broke?.offered ?? null;
    perSetup[`${k}_slo_per_s`] = c.slo.best === undefined ? null : Math.round(c.slo.best.result.okPerS);
    perSetup[`${k}_slo_broke_at_per_s`] = c.slo.broke?.offered ?? null;
    perSetup[`${k}_first_step_p50_ms`] = c.first?.p50 ?? null;
    perSetup[`${k}_first_step_p99_ms`] = c.first?.p99 ?? null;
    perSetup[`${k}_peak_per_s`] = Math.round(c.peak);
    perSetup[`${k}_service_cores`] = c.best === undefined ? null : round(c.best.serviceCores, 2);
  }

  return {
    ok,
    summary: {
      mode: 'open-loop',
      ...perSetup,
      ratio: roundOrNull(ratio, 2),
      slo_ratio: roundOrNull(sloRatio, 2),
      peak_ratio: roundOrNull(peakRatio, 2),
      forwarded_share: roundOrNull(forwardedShare, 3),
      forwarded_share_at_capacity: roundOrNull(forwardedShareAtCapacity, 3),
      forwarded_share_one_node: roundOrNull(forwardedShareOne, 3),
      oversold: sold,
      still_pending: setups.reduce((s, x) => s + x.stillPending, 0),
      nginx_retried_replays: setups.reduce((s, x) => s + x.replayed, 0),
      products: productCount,
      via_nginx: true,
      slo_p99_ms: SLO.p99Ms,
      slo_error_pct: SLO.errorShare * 100,
      step_factor: factor,
      steps: allSteps.length,
      step_s: options.durationS,
      ...runHealth.summary,
      load_generator_machine_share: undefined,
      background_busy: Math.max(0, ...setups.map((s) => s.background ?? 0)),
      connections_open: Math.min(...setups.map((s) => s.opened)),
      connections: options.connections,
    },
    table: stepTable(
      'setup @ offered/s',
      allSteps.map((x) => x.step),
      [['steady ok/s', (s) => Math.round(s.steadyOkPerS)]],
      [
        ['kept up', (s) => (s.sustained ? 'yes' : 'NO')],
        [
          'forwarded %',
          (s) => (s.local + s.forwarded > 0 ? round((s.forwarded / (s.local + s.forwarded)) * 100, 1) : '-'),
        ],
      ],
    ),
    notes,
    details: {
      stackRestarted: restarted,
      setups: setups.map((s) => ({
        nodes: s.nodes,
        checks: s.checks,
        shardLosses: s.shardLosses,
        steps: s.steps.map(stepDetails),
      })),
    },
    charts: stepCharts(
      [
        `scale: purchase latency vs offered rate, 1 node vs 2 nodes behind nginx (SLO p99 ${SLO.p99Ms} ms)`,
        'scale: purchase latency at the highest sustained step and at the first that fell behind',
        'scale: offered vs answered per second, steps in order',
      ],
      setups.map((s) => {
        const c = s.nodes === 1 ? c1 : c2;
        return { label: s.label, steps: s.steps, marked: [c.best, c.broke] };
      }),
      ['offered', 'answered'],
    ),
  };
}
