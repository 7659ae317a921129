/**
 * Scale: one node, then two behind the bench's nginx, the same open-loop purchase step-up over `products`
 * products until a step falls behind; 201s/s at the highest step that kept up, the ratio, the SLO capacity
 * and the share of purchases forwarded to the owner. On a 2-core box: the cost of forwarding, not scale-out.
 */
import { createProducts } from '../api.js';
import { cores } from '../cpu.js';
import { PurchaseLedger } from '../load.js';
import { round, roundOrNull } from '../measure.js';
import { familyDelta } from '../prom.js';
import { num } from '../report.js';
import * as skeleton from '../scenario.js';

const STOCK = 1_000_000;
/** A step is sustained when its steady-state 201s/s reach this share of the offered rate. */
const SUSTAINED_SHARE = 0.95;
const ROUTED = 'cluster_routed_total';
const sum = <T>(list: readonly T[], f: (x: T) => number) => list.reduce((n, x) => n + f(x), 0);

/** Scale's `--param`s, read before the first set-up. */
function readParams(run: skeleton.Run) {
  return {
    count: run.param('products', 32, 1, 10_000),
    warmupS: run.param('warm-up', 2, 0, 60),
    rates: run.rates(50, 1.25, 20).rates,
    pause: run.pause(),
  };
}

/** One setup: its cluster behind nginx, the step-up until a step falls behind, its checks; then stopped. */
async function runSetup(
  top: skeleton.Run,
  nodes: number,
  { count, warmupS, rates, pause }: ReturnType<typeof readParams>,
) {
  const label = nodes === 1 ? '1 node' : `${nodes} nodes`;
  return top.scoped(`-${nodes}n`, `the ${label} cluster`, async (run) => {
    const cluster = { nodes, nginx: true, paymentLatencyMs: 5 };
    await run.setUp({ cluster, connectionsTimeoutMs: 60_000, backgroundMs: 1_000 });
    const tag = `sc${nodes}n${run.tag('')}`;
    const products = await createProducts(run.admin, run.tokens, tag, count, STOCK);
    const ids = products.map((p) => p.id);
    const ledger = new PurchaseLedger(run.tokens);
    const purchase = ledger.stream(tag);
    // A random product per purchase, not seq % N: nginx alternates the nodes request by request, so a
    // round-robin over an even number of products would send each product to the same node every time.
    const next = () => purchase(ids[Math.floor(Math.random() * ids.length)]!)();
    const firstRate = rates[0]!;
    // Unmeasured: every product's actor activated on its owner, JIT, connection pools.
    if (warmupS > 0) await run.openLoop(`warm-up ${label}`, firstRate, warmupS, next);
    const steps = await run.stepUp({
      paths: [label],
      rates,
      pause,
      step: async (_, rate, startS) => {
        const measured = await run.step(label, `${label} @ ${num(rate)}/s`, rate, next, startS);
        const { before, after } = measured.metrics;
        const routed = (where: string) =>
          familyDelta(before, after, ROUTED, 'op="purchase"', `where="${where}"`);
        // Steady state: 201s per second over the whole seconds after the first (the first second's answers lag
        // its arrivals by one latency, which would count a slower but steady setup as falling behind).
        const seconds = measured.result.timeline.slice(1, Math.floor(run.options.durationS));
        const steadyOkPerS =
          seconds.length > 0
            ? sum(seconds, (b) => b.completed - b.errors) / seconds.length
            : measured.result.okPerS;
        const sustained = steadyOkPerS >= SUSTAINED_SHARE * measured.result.offeredPerS;
        const step = { ...measured, steadyOkPerS, sustained };
        const [local, forwarded] = [routed('local'), routed('forwarded')];
        const routedMetric = [...after.keys()].some((k) => k.startsWith(`${ROUTED}{`));
        run.io.progress(
          `bench: ${label} @ ${num(rate)}/s: p99 ${step.p99} ms, forwarded ${forwarded}/${local + forwarded} → SLO ${step.pass ? 'met' : 'BROKEN'}, ${step.sustained ? 'kept up' : 'FELL BEHIND'}`,
        );
        const forwardedPct = local + forwarded > 0 ? round((forwarded / (local + forwarded)) * 100, 1) : '-';
        return { ...step, local, forwarded, forwardedPct, routedMetric };
      },
      keep: (x) => x.sustained,
    });
    const specs = products.map((p, i) => ({ productId: p.id, label: `${label} #${i}`, initialStock: STOCK }));
    const checked = await run.check(specs, ledger, { settleMs: 1_000 });
    const share = (of: typeof steps) => {
      const total = sum(of, (x) => x.local + x.forwarded);
      return steps.some((x) => x.routedMetric) && total > 0 ? sum(of, (x) => x.forwarded) / total : null;
    };
    const cap = {
      ...skeleton.capacity(steps, (x) => x.sustained),
      slo: skeleton.capacity(steps, (x) => x.pass),
    };
    return { nodes, label, steps, cap, share, ...checked, background: run.background, opened: run.opened };
  });
}

type Setup = Awaited<ReturnType<typeof runSetup>>;

/** The summary keys of one setup, `one_node_…` / `two_nodes_…`. */
function setupKeys({ nodes, cap }: Setup) {
  const k = nodes === 1 ? 'one_node' : 'two_nodes';
  return {
    [`${k}_per_s`]: cap.best === undefined ? null : Math.round(cap.best.steadyOkPerS),
    [`${k}_p50_ms`]: cap.best?.p50 ?? null,
    [`${k}_p99_ms`]: cap.best?.p99 ?? null,
    [`${k}_fell_behind_at_per_s`]: cap.broke?.offered ?? null,
    [`${k}_slo_per_s`]: cap.slo.best === undefined ? null : Math.round(cap.slo.best.result.okPerS),
  };
}

export default skeleton.defineScenario({
  name: 'scale',
  describe:
    'one node vs two behind nginx, same run: open-loop step-up of purchases over N products until it falls behind; purchases/s, ratio, forwarded share',
  params: ['products', 'warm-up', ...skeleton.STEP_UP_PARAMS],
  ownNodes: 'starts a one-node and a two-node cluster of its own',
  defaults: { durationS: 5, connections: 500, rate: 50 },
  run: async (run) => {
    const params = readParams(run);
    const one = await runSetup(run, 1, params);
    const two = run.io.signal.aborted ? undefined : await runSetup(run, 2, params);
    const setups = two === undefined ? [one] : [one, two];
    const over = (a: number | undefined, b: number | undefined) => (a === undefined || !b ? null : a / b);
    const ratio = over(two?.cap.best?.steadyOkPerS, one.cap.best?.steadyOkPerS);
    const sloRatio = over(two?.cap.slo.best?.result.okPerS, one.cap.slo.best?.result.okPerS);
    const forwardedShare = two?.share(two.steps) ?? null;
    const checks = setups.flatMap((x) => x.checks);
    const steps = setups.flatMap((x) => x.steps);
    const restarted = setups.flatMap((x) => x.restarted);
    const shardLosses = sum(setups, (x) => x.shardLosses);
    const shared = 'sharing them with the nodes, nginx and the stack';
    const health = skeleton.healthOf({ steps, background: undefined, restarted, shardLosses }, shared);
    const ok = two !== undefined && checks.every((c) => c.ok);
    const pct = (x: number | null) => (x === null ? 'n/a' : `${(x * 100).toFixed(1)}%`);
    const capText = ({ cap }: Setup) =>
      `sustained ${cap.best === undefined ? 'none (the first step fell behind: lower --rate)' : `${num(cap.best.steadyOkPerS)}/s (offered ${num(cap.best.offered)}/s, p50 ${cap.best.p50} ms, p99 ${cap.best.p99} ms)`}` +
      `${cap.broke === undefined ? ' or more' : `; fell behind at ${num(cap.broke.offered)}/s`}; at the SLO ${cap.slo.best === undefined ? 'none' : `${num(cap.slo.best.result.okPerS)}/s`}`;
    return {
      ok,
      summary: {
        mode: 'open-loop',
        ...setups.reduce((keys, x) => ({ ...keys, ...setupKeys(x) }), {}),
        ratio: roundOrNull(ratio, 2),
        slo_ratio: roundOrNull(sloRatio, 2),
        forwarded_share: roundOrNull(forwardedShare, 3),
        forwarded_share_at_capacity: roundOrNull(two?.cap.best && two.share([two.cap.best]), 3),
        forwarded_share_one_node: roundOrNull(one.share(one.steps), 3),
        oversold: skeleton.oversold(checks),
        still_pending: sum(setups, (x) => x.stillPending),
        nginx_retried_replays: sum(setups, (x) => x.replayed),
        via_nginx: true,
        steps: steps.length,
        step_s: run.options.durationS,
        ...health.summary,
        background_busy: Math.max(0, ...setups.map((x) => x.background ?? 0)),
        connections_open: Math.min(...setups.map((x) => x.opened)),
      },
      table: skeleton.stepTable(
        'setup @ offered/s',
        steps,
        [['steady ok/s', (x) => Math.round(x.steadyOkPerS)]],
        [
          ['kept up', (x) => (x.sustained ? 'yes' : 'NO')],
          ['forwarded %', (x) => x.forwardedPct],
        ],
      ),
      notes: [
        `mode: OPEN LOOP, ${num(run.options.connections)} connections to the bench's nginx, 1 node then 2 nodes (each stopped after its steps); throughput = steady 201s/s at the highest step keeping up (≥ ${SUSTAINED_SHARE * 100}% of offered); SLO p99 ≤ ${skeleton.SLO.p99Ms} ms, errors ≤ ${skeleton.SLO.errorShare * 100}%.`,
        ...setups.map((x) => `${x.label} capacity: ${capText(x)}`),
        `ratio 2 nodes / 1 node: ${ratio === null ? 'n/a' : `${ratio.toFixed(2)}x`} sustained, ${sloRatio === null ? 'n/a' : `${sloRatio.toFixed(2)}x`} at the SLO; forwarded share 2 nodes ${pct(forwardedShare)}, 1 node ${pct(one.share(one.steps))}.`,
        `CAVEAT: this machine has ${cores()} cores, shared by both nodes, nginx, the stack and the generator: the 2-node figure shows the cost of forwarding, not horizontal scale.`,
        ...health.notes,
        ...setups.flatMap((x) => skeleton.backgroundNote(x.background, `the ${x.label} load`)),
        ...checks.filter((c) => !c.ok).map((c) => skeleton.checkNote(c)),
        `checks: ${checks.length} products, ${checks.filter((c) => c.ok).length} match their answers; oversold ${skeleton.oversold(checks)}; correctness: ${ok ? 'OK' : 'FAILED'}`,
      ],
      details: {
        setups: setups.map((x) => ({
          nodes: x.nodes,
          checks: x.checks,
          steps: x.steps.map(skeleton.stepDetails),
        })),
      },
      charts: skeleton.stepCharts(
        [
          `scale: purchase latency vs offered rate, 1 node vs 2 nodes behind nginx (SLO p99 ${skeleton.SLO.p99Ms} ms)`,
          'scale: purchase latency at the highest sustained step and at the first that fell behind',
          'scale: offered vs answered per second, steps in order',
        ],
        setups.map((x) => ({ label: x.label, steps: x.steps, marked: [x.cap.best, x.cap.broke] })),
        ['offered', 'answered'],
      ),
    };
  },
});
