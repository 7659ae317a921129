/**
 * Chaos: a seeded, bounded run of faults (scripts/chaos/) under purchases, reads and WebSocket subscribers;
 * every store must agree afterwards, nothing acknowledged may be lost, and the stack ends as it began.
 */
import { randomInt } from 'node:crypto';
import { checkStores } from '../checks.js';
import { lostAcknowledged, readTruth } from '../stores.js';
import { faultRig, injectFaults } from '../../scripts/chaos/faults.js';
import { parseKinds, PurchaseOutcomes, recoveries } from '../../scripts/chaos/schedule.js';
import { StockSubscribers } from '../../scripts/chaos/subscribers.js';
import { benchUser, errorCode } from '../load.js';
import { round } from '../measure.js';
import { sum, tableOf } from '../report.js';
import type { OpenLoopRequest } from '../open-loop.js';
import { defineScenario, UsageError, type Run } from '../scenario.js';

const STOCK = 1_000_000;
const NODES = 2;

async function run(run: Run) {
  const { options, io } = run;
  const seed = options.seed ?? randomInt(1, 1_000_000);
  const profile = run.choice('profile', ['long', 'short']);
  const intervalMs = run.param('interval', 10, 1, 3_600) * 1000;
  const productCount = run.param('products', 16, 1, 1_000);
  const subscriberCount = run.param('subscribers', 20, 0, 5_000);
  const serial = run.param('serial', 0, 0, 1) === 1;
  const rate = options.rate ?? 150;
  const kinds = ((raw) => {
    try {
      return parseKinds(raw);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  })(options.params['faults']);
  io.progress(
    `chaos: seed ${seed}, profile ${profile}, a fault every ~${intervalMs / 1000} s, load ${rate}/s`,
  );

  const rig = await faultRig(run.id, NODES, kinds, io);
  const setUp = { cluster: rig.settings, connectionsTimeoutMs: 60_000, backgroundMs: 0 };
  const { cluster, tokens } = await run.setUp(setUp);
  const { targets, restore } = rig.on(cluster);
  const productIds = await run.productSeries(productCount, STOCK);
  const subscribers = new StockSubscribers(`${cluster.url.replace(/^http/, 'ws')}/ws`, productIds);
  io.onCleanup(() => subscribers.close());
  if (subscriberCount > 0) await subscribers.open(subscriberCount);

  // The load: of every 3 arrivals, one purchase (a unique key) and two reads, over every product.
  const acks = new PurchaseOutcomes();
  let stopLoad = false;
  let loadStart = performance.now();
  const elapsed = () => performance.now() - loadStart;
  const next = (seq: number): OpenLoopRequest | undefined => {
    if (stopLoad) return undefined;
    const productId = productIds[Math.floor(seq / 3) % productIds.length]!;
    if (seq % 3 !== 0)
      return {
        op: 'read',
        method: 'GET',
        path: `/products/${productId}`,
        answer: (status, _headers, body) =>
          status === 200 ? { error: false } : { error: true, label: `${status} ${errorCode(body)}` },
      };
    const key = `${run.id}-${seq}`;
    const inner = run.ledger.purchase(productId, 1, key, benchUser(seq));
    return {
      ...inner,
      answer: (status, headers, body, timing) => {
        const cls = inner.answer!(status, headers, body, timing);
        const [sentMs, doneMs] = [timing.intendedMs - timing.startMs, timing.doneMs - timing.startMs];
        return acks.answered(key, status, sentMs, doneMs) ? { ...cls, error: false } : cls;
      },
      transportError: (code) => {
        inner.transportError!(code);
        acks.lostAt(elapsed());
      },
    };
  };
  loadStart = performance.now();
  const [result, { faults, healFailure }] = await Promise.all([
    // Ends when the faults are done (stopLoad), not before.
    run.openLoop(`chaos @ ${rate}/s`, rate, options.durationS + 3_600, next),
    injectFaults({
      ...{ seed, intervalMs, profile, kinds, targets, elapsed, serial },
      outcomes: acks.all,
      durationMs: options.durationS * 1000,
      signal: io.signal,
    }).finally(() => (stopLoad = true)),
  ]);

  io.progress('chaos: load stopped; putting the stack back as it was');
  await restore().catch((err: Error) => {
    if (healFailure === undefined) throw err;
    throw new Error(
      `a fault did not heal: ${healFailure}; then putting the stack back failed: ${err.message}`,
      { cause: err },
    );
  });
  const { checks, stillPending: sagasOpen } = await run.check({ settleMs: 0, sagaWaitMs: 60_000 });
  const oversold = sum(checks, (c) => Math.max(0, c.stock + c.sold - c.initialStock));
  const undersold = sum(checks, (c) => Math.max(0, c.initialStock - c.stock - c.sold));
  const lost = await lostAcknowledged(acks, productIds);
  const stores = await checkStores({
    productIds,
    cluster,
    admin: tokens,
    events: { ...rig.events, own: true },
  });
  const wsStale =
    subscriberCount === 0 ? 0 : await subscribers.waitFresh(await readTruth(productIds), 20_000);

  const { each: recovered, byKind } = recoveries(faults, acks.all);
  const errorsByStatus: Record<string, number> = {};
  for (const op of ['purchase', 'read'])
    for (const [label, n] of Object.entries(result.ops.get(op)?.statuses ?? {}))
      if (!/^20[012]\b/.test(label)) errorsByStatus[label] = (errorsByStatus[label] ?? 0) + n;
  const kindsMissing = profile === 'short' ? kinds.filter((k) => !faults.some((f) => f.kind === k)) : [];
  const mismatched = checks.filter((c) => !c.ordersMatch);
  const { replica, cache, kafka, projection } = stores;
  const mismatches = { replica, cache, kafka, projection };
  // The pass rule: every fault healed and recovered from, and every invariant at 0.
  const problems = [
    faults.length === 0 && 'no fault was injected (is --duration long enough?)',
    kindsMissing.length > 0 && `short profile: never injected ${kindsMissing.join(', ')}`,
    healFailure !== undefined && `a fault did not heal: ${healFailure}`,
    ...recovered.map((f) => f.recoveryS === null && `${f.kind}: purchases never succeeded again`),
    lost.length > 0 && `${lost.length} acknowledged purchases have no order: ${lost.slice(0, 5).join(', ')}`,
    oversold + undersold > 0 && `stock + sold != initial: oversold ${oversold}, undersold ${undersold}`,
    ...mismatched.map((c) => `${c.label}: orders do not match the answers (${JSON.stringify(c.orders)})`),
    sagasOpen > 0 && `${sagasOpen} orders still PENDING after 60 s`,
    ...Object.values(mismatches).flatMap((list) => list.map((m) => `product ${m.productId}: ${m.detail}`)),
    wsStale > 0 && `${wsStale} (subscriber, product) pairs not on the latest version`,
  ].filter((p): p is string => p !== false);
  const ok = problems.length === 0;
  const at = (ms: number) => round(ms / 1000, 1);
  return {
    ok,
    summary: {
      seed,
      profile,
      faults: recovered.map((f) => ({ kind: f.kind, at_s: at(f.atMs), recovery_s: f.recoveryS })),
      recovery_s_by_kind: byKind,
      lost_acknowledged: lost.length,
      oversold,
      undersold,
      sagas_open: sagasOpen,
      ...Object.fromEntries(
        Object.entries(mismatches).map(([store, list]) => [`${store}_mismatch`, list.length]),
      ),
      ws_stale: wsStale,
      errors_by_status: errorsByStatus,
      acknowledged: acks.confirmed.length + acks.pending.length,
      answers_mismatch: mismatched.length,
      ws_reconnects: subscribers.reconnects,
      offered_per_s: Math.round(result.offeredPerS),
    },
    table: tableOf<(typeof recovered)[number]>(
      [
        ['#', (f) => recovered.indexOf(f) + 1],
        ['fault', (f) => f.kind],
        ['target', (f) => f.target || '-'],
        ['at s', (f) => at(f.atMs)],
        ['healed s', (f) => f.healS ?? '-'],
        ['failed', (f) => f.failed],
        ['recovery s', (f) => f.recoveryS ?? 'never'],
        ['detail', (f) => f.error ?? f.detail],
      ],
      recovered,
    ),
    notes: [
      `seed ${seed} (${profile} profile, a fault every ~${intervalMs / 1000} s; ${serial ? 'each healed before the next' : 'one subsystem healed before its next fault, subsystems overlapping'}); OPEN LOOP ${rate}/s through the bench nginx to 2 nodes: 1/3 purchases, 2/3 reads, ${productCount} products; ${subscriberCount} WebSocket subscribers (${subscribers.reconnects} reconnects)`,
      `errors clients saw, by status: ${JSON.stringify(errorsByStatus)}`,
      `acknowledged ${acks.confirmed.length} (201) + ${acks.pending.length} (202); lost ${lost.length}; oversold ${oversold}, undersold ${undersold}; still PENDING ${sagasOpen}`,
      `replica ${replica.length}, cache ${cache.length}, Kafka ${kafka.length} (${stores.events} events, ${stores.duplicates} redeliveries), projection ${projection.length}: products that disagree with the primary; WebSocket pairs stale ${wsStale}`,
      ...problems.slice(0, 30).map((p) => `FAILED CHECK: ${p}`),
      ...result.warnings.map((w) => `WARNING: ${w}`),
      `invariants: ${ok ? 'OK' : 'BROKEN'}`,
    ],
    details: { faults: recovered, checks, stores, lost: lost.slice(0, 100) },
  };
}

export default defineScenario({
  name: 'chaos',
  describe:
    'seeded faults (app kill/pause, Redis/Kafka/MariaDB primary kill, replica stop, a node cut off Redis) under purchases, reads and WebSockets; every store must agree after',
  params: ['profile', 'interval', 'products', 'subscribers', 'serial', 'faults'],
  ownNodes: 'kills nodes it started',
  defaults: { durationS: 120, connections: 200, rate: 150 },
  run,
});
