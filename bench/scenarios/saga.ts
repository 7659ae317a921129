/**
 * Saga: confirmed purchases/s and the purchase latency through the whole saga (provider at 5 ms), one hot
 * product then 100 products, closed loop; the specification's target: p95 < 100 ms.
 */
import { createPaymentProvider } from '../../src/payment-provider/server.js';
import { roundOrNull, writerFigures } from '../measure.js';
import { fixed, num, sum } from '../report.js';
import * as bench from '../scenario.js';

const PAYMENT_LATENCY_MS = 5;
const P95_TARGET_MS = 100;
const SPREAD_PRODUCTS = 100;
/** Far more than a phase sells, so no purchase meets OUT_OF_STOCK. */
const HOT_STOCK = 10_000_000;
const SPREAD_STOCK = 1_000_000;

export default bench.defineScenario({
  name: 'saga',
  describe:
    'confirmed purchases/s and purchase p50/p95/p99 through the full saga (provider at 5 ms), 1 hot product then 100 products, actor, closed loop',
  params: [],
  defaults: { durationS: 10, connections: 200 },
  modes: ['closed'],
  async run(run) {
    const { options, io } = run;
    // The bench's own provider (not the stack's shared one), registered first so it closes after the service.
    const provider =
      options.url === undefined ? createPaymentProvider({ latencyMs: PAYMENT_LATENCY_MS }) : undefined;
    const paymentUrl = provider && `http://127.0.0.1:${await provider.listen(0, '127.0.0.1')}`;
    if (provider !== undefined) {
      io.onCleanup(() => provider.close());
      io.progress(`bench: payment provider (in-process, ${PAYMENT_LATENCY_MS} ms latency) on ${paymentUrl}`);
    }
    const env: Record<string, string> = paymentUrl === undefined ? {} : { PAYMENT_URL: paymentUrl };
    await run.setUp({ cluster: { nodes: 1, nginx: false, env }, connectionsTimeoutMs: 60_000 });
    const hot = await run.product('hot', HOT_STOCK);
    const spread = await run.productSeries(SPREAD_PRODUCTS, SPREAD_STOCK, 'spread');

    const phases = await run.alternate(['hot', 'spread'], (path) =>
      run.purchases(path === 'hot' ? hot : spread),
    );
    const steps = phases.map((s) => ({ ...s, writer: writerFigures(s.metrics, s.result.wallS) }));
    const { checks, stillPending } = await run.check();
    const [hotStep, spreadStep] = steps as [(typeof steps)[0], (typeof steps)[0]];
    const p95Met = steps.every((s) => s.p95 < P95_TARGET_MS);
    const ratio = hotStep.result.okPerS > 0 ? spreadStep.result.okPerS / hotStep.result.okPerS : null;
    const charges = provider?.stats().charges ?? 0;
    const confirmed = sum(checks, (c) => c.orders.CONFIRMED);
    const keys = (s: (typeof steps)[0]) =>
      bench.keyed(s.path, {
        confirmed_per_s: Math.round(s.result.okPerS),
        ...{ p50_ms: s.p50, p95_ms: s.p95, p99_ms: s.p99, max_ms: s.max },
        mean_batch_size: roundOrNull(s.writer.meanBatchSize, 1),
        mean_batch_ms: s.writer.meanBatchWriteMs ?? null,
      });

    return run.report({
      steps,
      shared: `sharing them with the service, MariaDB, Redis, Kafka and the payment provider (in the bench process)`,
      summary: {
        mode: 'closed-loop',
        strategy: 'actor',
        payment_latency_ms: provider === undefined ? null : PAYMENT_LATENCY_MS,
        ...keys(hotStep),
        ...keys(spreadStep),
        spread_hot_ratio: roundOrNull(ratio, 2),
        p95_target_ms: P95_TARGET_MS,
        p95_target_met: p95Met,
        still_pending: stillPending,
        connections: options.connections,
        duration_s: options.durationS,
        spread_products: SPREAD_PRODUCTS,
      },
      notes: [
        `mode: CLOSED LOOP: ${options.connections} purchases in flight, each worker sends its next only after the answer; p95 is that of ${options.connections} purchases always in flight, not of a fixed arrival rate.`,
        provider === undefined
          ? "payment provider: the running service's own (PAYMENT_URL of the --url service); its latency is not set by the bench."
          : `payment provider: in the bench process, ${PAYMENT_LATENCY_MS} ms per answer, no declines or faults; its CPU counts in 'gen cores'.`,
        `p95 of every answered purchase: hot ${fixed(hotStep.p95, 1)} ms, spread ${fixed(spreadStep.p95, 1)} ms; target < ${P95_TARGET_MS} ms: ${p95Met ? 'MET' : 'NOT MET'}`,
        `confirmed/s: hot ${num(hotStep.result.okPerS)}, spread ${num(spreadStep.result.okPerS)}; spread/hot ${ratio === null ? 'n/a' : ratio.toFixed(2)}`,
        steps.map(
          ({ result, writer: w }) =>
            `${result.label}: ${num(w.batches)} batches (${fixed(w.batchesPerS, 1)}/s), mean ${fixed(w.meanBatchSize, 1)} new orders and ${fixed(w.meanBatchWriteMs, 1)} ms per batch, ` +
            `writers busy ${fixed(w.writerBusy, 2)} (Σ batch time ÷ wall), mean saga ${fixed(w.meanSagaMs, 1)} ms, event-loop lag p99 ${fixed(w.eventLoopLagP99Ms, 1)} ms; ` +
            `answers ${JSON.stringify(result.ops.get('purchase')?.statuses ?? {})}`,
        ),
        stillPending > 0 && `${num(stillPending)} orders still PENDING after 45 s`,
        provider !== undefined &&
          `provider: ${num(charges)} successful charges over the run for ${num(confirmed)} confirmed orders of these products${charges < confirmed ? '  (FEWER: confirmed orders without a charge here)' : ''}`,
      ],
      table: bench.stepTable(
        'phase',
        steps,
        [['sent/s', (s) => s.offered]],
        [
          ['p95 ms', (s) => s.p95],
          ['batch', (s) => fixed(s.writer.meanBatchSize, 1)],
          ['batch ms', (s) => fixed(s.writer.meanBatchWriteMs, 1)],
          ['saga ms', (s) => fixed(s.writer.meanSagaMs, 1)],
        ],
      ),
      details: { paymentUrl: paymentUrl ?? null, provider: provider?.stats() ?? null },
    });
  },
});
