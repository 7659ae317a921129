/**
 * Failover: an open-loop purchase stream through nginx to two nodes, one killed with SIGKILL mid-stream:
 * time until purchases succeed again, errors meanwhile, and no acknowledged (201) order lost.
 */
import { createProducts } from '../api.js';
import { benchUser } from '../auth.js';
import { latencyChart } from '../chart.js';
import { latencySummary, round } from '../measure.js';
import type { OpenLoopRequest } from '../open-loop.js';
import { PurchaseLedger } from '../load.js';
import { num } from '../report.js';
import { defineScenario, generatorNotes, oversold, phaseThroughputChart, type Run } from '../scenario.js';
import type { ScenarioResult } from '../types.js';
import { orderStatuses } from '../verify.js';

const STOCK = 1_000_000;

async function run(run: Run): Promise<ScenarioResult> {
  const { options, io } = run;
  if (options.url !== undefined)
    throw new Error('failover kills a node it started: it cannot run with --url');
  const rate = options.rate ?? 200;
  const productCount = run.param('products', 16, 1, 10_000);
  const slowMs = run.param('slow-ms', 1000, 1, 60_000);
  const killAtS = run.param('kill-at', options.durationS / 3, 0, options.durationS);
  const { cluster, tokens } = await run.setUp({
    cluster: { nodes: 2, nginx: true, paymentLatencyMs: 5 },
    connectionsTimeoutMs: 60_000,
    backgroundMs: 0,
  });
  const tag = run.tag('fo');
  const products = await createProducts(run.admin, tokens, tag, productCount, STOCK);
  const ids = products.map((p) => p.id);
  const ledger = new PurchaseLedger(tokens, ids);
  const confirmedKeys: string[] = [];
  const victim = cluster.nodes[1]!;
  let killedAtMs: number | undefined;
  let lastErrorMs: number | undefined;
  let firstErrorMs: number | undefined;
  let errorsAfterKill = 0;
  let seq = 0;
  const next = (): OpenLoopRequest => {
    seq += 1;
    const productId = ids[seq % ids.length]!;
    const key = `${tag}-${seq}`;
    return ledger.purchase('purchase', productId, 1, key, benchUser(seq), (cls, timing) => {
      if (cls.error === false) confirmedKeys.push(key);
      const intended = timing.intendedMs - timing.startMs;
      const bad = cls.error !== false || timing.doneMs - timing.intendedMs > slowMs;
      if (bad && killedAtMs !== undefined && intended >= killedAtMs - 2_000) {
        if (cls.error !== false) errorsAfterKill += 1;
        lastErrorMs = Math.max(lastErrorMs ?? 0, intended);
        firstErrorMs = Math.min(firstErrorMs ?? Infinity, intended);
      }
    });
  };
  let phaseStart = 0;
  const killTimer = setTimeout(() => {
    killedAtMs = performance.now() - phaseStart;
    io.progress(`bench: kill -9 ${victim.id} (pid ${victim.pid}) at ${(killedAtMs / 1000).toFixed(1)} s`);
    victim.kill('SIGKILL');
  }, killAtS * 1000);
  io.onCleanup(() => clearTimeout(killTimer));
  phaseStart = performance.now();
  const result = await run.openLoop(`failover @ ${num(rate)}/s`, rate, options.durationS, next);
  clearTimeout(killTimer);

  const { checks, stillPending } = await run.check(
    ids.map((id) => ({ productId: id, label: `product ${id}`, initialStock: STOCK })),
    [ledger],
    { settleMs: 0, sagaWaitMs: 60_000 },
  );
  const found = await orderStatuses(confirmedKeys, ids);
  const lost = confirmedKeys.filter((k) => found.get(k) !== 'CONFIRMED');
  const killed = killedAtMs !== undefined;
  const recoveryS = !killed
    ? null
    : lastErrorMs === undefined
      ? 0
      : round((lastErrorMs - killedAtMs!) / 1000, 2);
  const after = result.timeline.filter((b) => killedAtMs !== undefined && b.t * 1000 >= killedAtMs);
  // Replays are allowed here: nginx retries a POST whose node died after committing (the answer is still that order).
  const ok = killed && lost.length === 0 && checks.every((c) => c.ok);
  const statuses = result.ops.get('purchase')?.statuses ?? {};
  const lat = latencySummary(result.ops.get('purchase')!.latency);
  return {
    ok,
    summary: {
      mode: 'open-loop',
      recovery_s: recoveryS,
      acknowledged_lost: lost.length,
      nginx_retried_replays: ledger.replayed,
      confirmed: confirmedKeys.length,
      errors: result.errors,
      errors_after_kill: errorsAfterKill,
      oversold: oversold(checks),
      still_pending: stillPending,
      killed_at_s: killed ? round(killedAtMs! / 1000, 2) : null,
      p50_ms: lat.p50,
      p99_ms: lat.p99,
      max_ms: lat.max,
      offered_per_s: Math.round(result.offeredPerS),
      achieved_per_s: Math.round(result.achievedPerS),
      products: productCount,
      load_generator_cores: round(result.generatorCores, 2),
      connections: options.connections,
      duration_s: options.durationS,
    },
    table: {
      columns: ['second', 'offered', 'answered', 'errors'],
      rows: result.timeline.map((b) => [
        `${b.t}${killedAtMs !== undefined && Math.floor(killedAtMs / 1000) === b.t ? ' (kill)' : ''}`,
        b.offered,
        b.completed,
        b.errors,
      ]),
    },
    notes: [
      `mode: OPEN LOOP at ${num(rate)}/s through the bench nginx to 2 nodes (${num(options.connections)} connections), ${productCount} products (shards on both nodes); ${victim.id} killed with SIGKILL at ${killed ? `${(killedAtMs! / 1000).toFixed(1)} s` : 'NEVER (the run ended first)'}.`,
      `recovery: ${recoveryS === null ? '-' : `${recoveryS} s from the kill to the intended send time of the last purchase that failed or took > ${slowMs} ms (after it, every purchase succeeded within ${slowMs} ms)`}; ${num(errorsAfterKill)} failed purchases around/after the kill; answers by status: ${JSON.stringify(statuses)}`,
      `acknowledged orders: ${num(confirmedKeys.length)} keys answered 201; ${lost.length === 0 ? 'every one is CONFIRMED in MySQL' : `${lost.length} LOST or not CONFIRMED: ${lost.slice(0, 5).join(', ')}`}`,
      `${num(ledger.replayed)} purchases answered 201 Idempotent-Replayed: nginx retried them on the survivor after the dead node had committed them (proxy_next_upstream … non_idempotent); each is that key's one order.`,
      `sagas still pending after 60 s: ${stillPending}; per-product checks ${checks.every((c) => c.ok) ? 'OK' : 'MISMATCH'}; oversold ${oversold(checks)}`,
      `seconds after the kill with errors: ${
        after
          .filter((b) => b.errors > 0)
          .map((b) => b.t)
          .join(', ') || 'none'
      }`,
      ...generatorNotes(result),
      `correctness: ${ok ? 'OK' : 'FAILED'}`,
    ],
    details: {
      victim: { id: victim.id, pid: victim.pid },
      statuses,
      lost: lost.slice(0, 100),
      checks,
      timeline: result.timeline,
      firstErrorMs,
      lastErrorMs,
      killedAtMs,
    },
    charts: [
      latencyChart('failover: purchase latency over the whole stream', [{ op: 'purchase', ...lat }]),
      phaseThroughputChart(
        `failover: offered vs answered per second (kill at ${killed ? (killedAtMs! / 1000).toFixed(1) : '-'} s)`,
        result,
      ),
    ],
  };
}

export default defineScenario({
  name: 'failover',
  describe:
    'kill -9 one of two nodes during a purchase stream through nginx: time to recover, errors, no acknowledged order lost',
  defaults: { durationS: 20, connections: 500, rate: 200 },
  run,
});
