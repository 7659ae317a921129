/**
 * Failover: an open-loop purchase stream through nginx to two nodes, one killed with SIGKILL mid-stream:
 * time until purchases succeed again, errors meanwhile, and no acknowledged (201) order lost.
 */
import { lostAcknowledged } from '../stores.js';
import { benchUser } from '../load.js';
import { latencySummary, round } from '../measure.js';
import { num, sum } from '../report.js';
import { latencyChart, timelineChart } from '../chart.js';
import * as bench from '../scenario.js';

const STOCK = 1_000_000;

export default bench.defineScenario({
  name: 'failover',
  describe:
    'kill -9 one of two nodes during a purchase stream through nginx: time to recover, errors, no acknowledged order lost',
  params: ['products', 'slow-ms', 'kill-at'],
  ownNodes: 'kills a node it started',
  defaults: { durationS: 20, connections: 500, rate: 200 },
  async run(run) {
    const { options, io } = run;
    const rate = options.rate ?? 200;
    const productCount = run.param('products', 16, 1, 10_000);
    const slowMs = run.param('slow-ms', 1000, 1, 60_000);
    const killAtS = run.param('kill-at', options.durationS / 3, 0, options.durationS);
    const cluster = { nodes: 2, nginx: true, paymentLatencyMs: 5 };
    await run.setUp({ cluster, connectionsTimeoutMs: 60_000, backgroundMs: 0 });
    const ids = await run.productSeries(productCount, STOCK);

    // The load: one unit of the products in turn, each a fresh key; what failed or was slow around the kill.
    const confirmed: string[] = [];
    const victim = run.cluster.nodes[1]!;
    let killedAtMs: number | undefined;
    let lastBadMs: number | undefined;
    let [errorsAfterKill, seq] = [0, 0];
    const next = () => {
      seq += 1;
      const key = `${run.id}-${seq}`;
      return run.ledger.purchase(ids[seq % ids.length]!, 1, key, benchUser(seq), (cls, timing) => {
        if (cls.error === false) confirmed.push(key);
        const intended = timing.intendedMs - timing.startMs;
        const bad = cls.error !== false || timing.doneMs - timing.intendedMs > slowMs;
        if (bad && killedAtMs !== undefined && intended >= killedAtMs - 2_000) {
          if (cls.error !== false) errorsAfterKill += 1;
          lastBadMs = Math.max(lastBadMs ?? 0, intended);
        }
      });
    };
    const phaseStart = performance.now();
    const killTimer = setTimeout(() => {
      killedAtMs = performance.now() - phaseStart;
      io.progress(`bench: kill -9 ${victim.id} (pid ${victim.pid}) at ${(killedAtMs / 1000).toFixed(1)} s`);
      victim.kill('SIGKILL');
    }, killAtS * 1000);
    io.onCleanup(() => clearTimeout(killTimer));
    const result = await run.openLoop(`failover @ ${num(rate)}/s`, rate, options.durationS, next);
    clearTimeout(killTimer);

    const { checks, stillPending } = await run.check({ settleMs: 0, sagaWaitMs: 60_000 });
    const lost = await lostAcknowledged({ confirmed, pending: [] }, ids);
    const killedS = killedAtMs === undefined ? undefined : killedAtMs / 1000;
    const killed = killedS?.toFixed(1) ?? '-';
    const recoveryS =
      killedAtMs === undefined ? null : round(((lastBadMs ?? killedAtMs) - killedAtMs) / 1000, 2);
    const statuses = result.ops.get('purchase')?.statuses ?? {};
    const lat = latencySummary(result.ops.get('purchase')!.latency);
    const second = (t: number) => (killedS !== undefined && t === Math.floor(killedS) ? `${t} (kill)` : t);
    return run.report({
      // The pass rule (and the checks). Replays are allowed: nginx retries a POST whose node died after
      // committing (that key's order), and the survivor's forwarding retries an owner that went silent.
      ok: killedS !== undefined && lost.length === 0,
      steps: [{ result, otherCores: undefined }],
      summary: {
        mode: 'open-loop',
        recovery_s: recoveryS,
        acknowledged_lost: lost.length,
        retried_replays: run.ledger.replayed,
        confirmed: confirmed.length,
        errors: result.errors,
        errors_after_kill: errorsAfterKill,
        still_pending: stillPending,
        killed_at_s: killedS === undefined ? null : round(killedS, 2),
        ...{ p50_ms: lat.p50, p99_ms: lat.p99, max_ms: lat.max },
        offered_per_s: Math.round(result.offeredPerS),
        achieved_per_s: Math.round(result.achievedPerS),
      },
      table: {
        columns: ['second', 'offered', 'answered', 'errors'],
        rows: result.timeline.map((b) => [second(b.t), b.offered, b.completed, b.errors]),
      },
      notes: [
        `mode: OPEN LOOP at ${num(rate)}/s through the bench nginx to 2 nodes (${num(options.connections)} connections), ${productCount} products; ${victim.id} killed with SIGKILL at ${killedS === undefined ? 'NEVER (the run ended first)' : `${killed} s`}.`,
        `recovery: ${recoveryS ?? '-'} s (to the last purchase that failed or took > ${slowMs} ms); ${num(errorsAfterKill)} failed around/after the kill; ${num(run.ledger.replayed)} replays (retried by nginx or forwarded again); answers by status: ${JSON.stringify(statuses)}`,
        `acknowledged orders: ${num(confirmed.length)} keys answered 201; ${lost.length === 0 ? 'every one is CONFIRMED in MySQL' : `${lost.length} LOST or not CONFIRMED: ${lost.slice(0, 5).join(', ')}`}`,
        `sagas still pending after 60 s: ${stillPending}; per-product checks ${checks.every((c) => c.ok) ? 'OK' : 'MISMATCH'}; oversold ${sum(checks, (c) => c.oversold)}`,
      ],
      details: { victim: { id: victim.id, pid: victim.pid }, statuses, lost: lost.slice(0, 100) },
      charts: [
        latencyChart('failover: purchase latency over the whole stream', [{ op: 'purchase', ...lat }]),
        timelineChart(`failover: offered vs answered per second (kill at ${killed} s)`, [{ result }]),
      ],
    });
  },
});
