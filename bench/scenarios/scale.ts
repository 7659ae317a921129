/**
 * Scale: one node, then two behind the bench's nginx, the same open-loop purchase step-up over `products`
 * products until a step falls behind; 201s/s at the highest step that kept up, the ratio, the SLO capacity
 * and the share of purchases forwarded to the owner. On a 2-core box: the cost of forwarding, not scale-out.
 */
import { cores } from '../cpu.js';
import { familyDelta, round, roundOrNull } from '../measure.js';
import { num, sum } from '../report.js';
import { stepCharts } from '../chart.js';
import * as bench from '../scenario.js';

const STOCK = 1_000_000;
/** A step is sustained when its steady-state 201s/s reach this share of the offered rate. */
const SUSTAINED_SHARE = 0.95;
const ROUTED = 'cluster_routed_total';

/** Scale's `--param`s, read before the first set-up. */
function readParams(run: bench.Run) {
  return {
    count: run.param('products', 32, 1, 10_000),
    warmupS: run.param('warm-up', 2, 0, 60),
    rates: run.rates(50, 1.25, 20).rates,
    pause: run.pause(),
  };
}

/** One setup: its cluster behind nginx, the step-up until a step falls behind, its checks; then stopped. */
async function runSetup(
  top: bench.Run,
  nodes: number,
  { count, warmupS, rates, pause }: ReturnType<typeof readParams>,
) {
  const label = nodes === 1 ? '1 node' : `${nodes} nodes`;
  return top.scoped(`-${nodes}n`, `the ${label} cluster`, async (run) => {
    const cluster = { nodes, nginx: true, paymentLatencyMs: 5 };
    await run.setUp({ cluster, connectionsTimeoutMs: 60_000, backgroundMs: 1_000 });
    // A random product per purchase, not seq % N: nginx alternates the nodes request by request, so a
    // round-robin over an even number of products would send each product to the same node every time.
    const next = run.purchases(await run.productSeries(count, STOCK, label));
    const steps = await run.stepUp({
      paths: [label],
      rates,
      pause,
      // Unmeasured: every product's actor activated on its owner, JIT, connection pools.
      warmUp: [warmupS, () => next],
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
        const [local, forwarded] = [routed('local'), routed('forwarded')];
        return {
          ...measured,
          steadyOkPerS,
          sustained: steadyOkPerS >= SUSTAINED_SHARE * measured.result.offeredPerS,
          ...{ local, forwarded, routedMetric: [...after.keys()].some((k) => k.startsWith(`${ROUTED}{`)) },
          forwardedPct: local + forwarded > 0 ? round((forwarded / (local + forwarded)) * 100, 1) : '-',
        };
      },
      keep: (x) => x.sustained,
      says: (x) =>
        `p99 ${x.p99} ms, forwarded ${x.forwarded}/${x.local + x.forwarded} → SLO ${x.pass ? 'met' : 'BROKEN'}, ${x.sustained ? 'kept up' : 'FELL BEHIND'}`,
    });
    await run.check({ settleMs: 1_000 });
    const share = (of: typeof steps) => {
      const total = sum(of, (x) => x.local + x.forwarded);
      return steps.some((x) => x.routedMetric) && total > 0 ? sum(of, (x) => x.forwarded) / total : null;
    };
    const cap = { ...bench.capacity(steps, (x) => x.sustained), slo: bench.capacity(steps, (x) => x.pass) };
    return { nodes, label, steps, cap, share, opened: run.opened };
  });
}

type Setup = Awaited<ReturnType<typeof runSetup>>;

/** The summary keys of one setup, `one_node_…` / `two_nodes_…`. */
const setupKeys = ({ nodes, cap }: Setup) =>
  bench.keyed(nodes === 1 ? 'one_node' : 'two_nodes', {
    per_s: cap.best === undefined ? null : Math.round(cap.best.steadyOkPerS),
    p50_ms: cap.best?.p50 ?? null,
    p99_ms: cap.best?.p99 ?? null,
    fell_behind_at_per_s: cap.broke?.offered ?? null,
    slo_per_s: cap.slo.best === undefined ? null : Math.round(cap.slo.best.result.okPerS),
  });

const capText = ({ cap }: Setup) =>
  `sustained ${cap.best === undefined ? 'none (the first step fell behind: lower --rate)' : `${num(cap.best.steadyOkPerS)}/s (offered ${num(cap.best.offered)}/s, p50 ${cap.best.p50} ms, p99 ${cap.best.p99} ms)`}` +
  `${cap.broke === undefined ? ' or more' : `; fell behind at ${num(cap.broke.offered)}/s`}; at the SLO ${cap.slo.best === undefined ? 'none' : `${num(cap.slo.best.result.okPerS)}/s`}`;

export default bench.defineScenario({
  name: 'scale',
  describe:
    'one node vs two behind nginx, same run: open-loop step-up of purchases over N products until it falls behind; purchases/s, ratio, forwarded share',
  params: ['products', 'warm-up', ...bench.STEP_UP_PARAMS],
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
    const steps = setups.flatMap((x) => x.steps);
    const pct = (x: number | null) => (x === null ? 'n/a' : `${(x * 100).toFixed(1)}%`);
    const { stillPending, replayed } = run.checked;
    return run.report({
      ok: two !== undefined,
      steps,
      shared: 'sharing them with the nodes, nginx and the stack',
      summary: {
        mode: 'open-loop',
        ...setups.reduce((keys, x) => ({ ...keys, ...setupKeys(x) }), {}),
        ratio: roundOrNull(ratio, 2),
        slo_ratio: roundOrNull(sloRatio, 2),
        forwarded_share: roundOrNull(forwardedShare, 3),
        forwarded_share_at_capacity: roundOrNull(two?.cap.best && two.share([two.cap.best]), 3),
        forwarded_share_one_node: roundOrNull(one.share(one.steps), 3),
        still_pending: stillPending,
        retried_replays: replayed,
        via_nginx: true,
        steps: steps.length,
        step_s: run.options.durationS,
        connections_open: Math.min(...setups.map((x) => x.opened)),
      },
      table: bench.stepTable(
        'setup @ offered/s',
        steps,
        [['steady ok/s', (x) => Math.round(x.steadyOkPerS)]],
        [
          ['kept up', (x) => (x.sustained ? 'yes' : 'NO')],
          ['forwarded %', (x) => x.forwardedPct],
        ],
      ),
      notes: [
        `mode: OPEN LOOP, ${num(run.options.connections)} connections to the bench's nginx, 1 node then 2 nodes (each stopped after its steps); throughput = steady 201s/s at the highest step keeping up (≥ ${SUSTAINED_SHARE * 100}% of offered); SLO p99 ≤ ${bench.SLO.p99Ms} ms, errors ≤ ${bench.SLO.errorShare * 100}%.`,
        setups.map((x) => `${x.label} capacity: ${capText(x)}`),
        `ratio 2 nodes / 1 node: ${ratio === null ? 'n/a' : `${ratio.toFixed(2)}x`} sustained, ${sloRatio === null ? 'n/a' : `${sloRatio.toFixed(2)}x`} at the SLO; forwarded share 2 nodes ${pct(forwardedShare)}, 1 node ${pct(one.share(one.steps))}.`,
        `CAVEAT: this machine has ${cores()} cores, shared by both nodes, nginx, the stack and the generator: the 2-node figure shows the cost of forwarding, not horizontal scale.`,
      ],
      charts: stepCharts(
        [
          `scale: purchase latency vs offered rate, 1 node vs 2 nodes behind nginx (SLO p99 ${bench.SLO.p99Ms} ms)`,
          'scale: purchase latency at the highest sustained step and at the first that fell behind',
          'scale: offered vs answered per second, steps in order',
        ],
        setups.map((x) => ({ label: x.label, steps: x.steps, marked: [x.cap.best, x.cap.broke] })),
        ['offered', 'answered'],
      ),
    });
  },
});
