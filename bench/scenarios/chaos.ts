/**
 * Chaos: a seeded, bounded run of faults (bench/chaos/: app node kill/pause/Redis cut, Redis, Kafka and
 * MariaDB primary kills, replica stop) under purchases, reads and WebSocket subscribers; every store must
 * agree afterwards, nothing acknowledged may be lost, and the stack ends as it began.
 */
import { randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { dbFailoverStatus } from '../../scripts/stack/db-failover.js';
import { loadConfig } from '../../src/config.js';
import { ensureTopicsWithNewAdmin } from '../../src/events/topics.js';
import { createKafka } from '../../src/storage/kafka.js';
import { readEvents } from '../agreement.js';
import { createProducts, errorCode } from '../api.js';
import { benchUser } from '../auth.js';
import {
  checkCache,
  checkProjection,
  checkReplica,
  compareEvents,
  ownEventsEnv,
  readTruth,
  topicsOf,
  waitOutboxDrained,
  type Mismatch,
} from '../chaos/checks.js';
import { restoreStack, runFault } from '../chaos/faults.js';
import {
  FAULT_KINDS,
  faultSchedule,
  parseKinds,
  recoveryOf,
  type FaultKind,
  type PurchaseOutcome,
} from '../chaos/schedule.js';
import { RedisPath } from '../chaos/redis-path.js';
import { StockSubscribers } from '../chaos/subscribers.js';
import { round } from '../measure.js';
import type { OpenLoopRequest } from '../open-loop.js';
import { PurchaseLedger } from '../load.js';
import { median } from '../report.js';
import { defineScenario, type Run } from '../scenario.js';
import { withMysql } from '../stores.js';
import type { ScenarioResult } from '../types.js';
import { orderStatuses } from '../verify.js';

const STOCK = 1_000_000;
const NODES = 2;

interface FaultRecord {
  readonly kind: FaultKind;
  readonly target: string;
  atMs: number;
  healS: number | null;
  detail: string;
  error?: string;
}

async function run(run: Run): Promise<ScenarioResult> {
  const { options, io } = run;
  if (options.url !== undefined) throw new Error('chaos kills nodes it started: it cannot run with --url');
  const seed = options.seed ?? randomInt(1, 1_000_000);
  const profile = options.params['profile'] ?? 'long';
  if (profile !== 'short' && profile !== 'long')
    throw new Error(`--param profile=${profile}: short (each fault once) or long`);
  const intervalMs = run.param('interval', 10, 1, 3_600) * 1000;
  const productCount = run.param('products', 16, 1, 1_000);
  const subscriberCount = run.param('subscribers', 20, 0, 5_000);
  const serial = run.param('serial', 0, 0, 1) === 1;
  const rate = options.rate ?? 150;
  const durationMs = options.durationS * 1000;
  const kinds = parseKinds(options.params['faults']);
  const elected = (await dbFailoverStatus()).primary;
  if (elected !== 'primary' && kinds.some((k) => k.startsWith('mysql-')))
    throw new Error(`the MariaDB primary is ${elected}, not primary: another fault run is in progress?`);
  io.progress(
    `chaos: seed ${seed}, profile ${profile}, a fault every ~${intervalMs / 1000} s, load ${rate}/s`,
  );

  // Kafka topics, relay lock and projection group of the run's own: its events are exactly these topics'.
  const tag = run.tag('chaos-');
  const eventsEnv = ownEventsEnv(tag);
  const config = loadConfig({ ...process.env, ...eventsEnv, LOG_LEVEL: 'silent' });
  const topics = topicsOf(config);
  const kafka = createKafka(config, pino({ level: 'silent' }));
  const admin = kafka.admin();
  io.onCleanup(async () => {
    await admin.deleteGroups([config.projection.groupId]).catch(() => undefined);
    await admin.deleteTopics({ topics, timeout: 10_000 }).catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
    await withMysql((conn) => conn.query('DELETE FROM outbox WHERE topic IN (?)', [topics]));
  });
  await admin.connect();
  await ensureTopicsWithNewAdmin(kafka, config.kafka);

  // Each node reaches Redis through relays of the run's own, so that one node alone can be cut off it.
  const redisPaths: RedisPath[] = [];
  io.onCleanup(async () => void (await Promise.all(redisPaths.map((p) => p.close()))));
  for (let i = 0; i < NODES; i += 1) redisPaths.push(await RedisPath.toStack());
  const { cluster, tokens } = await run.setUp({
    cluster: { nodes: NODES, paymentLatencyMs: 5, env: eventsEnv, nodeEnv: (i) => redisPaths[i]!.env() },
    connectionsTimeoutMs: 60_000,
    backgroundMs: 0,
  });
  let restored = false;
  io.onCleanup(async () => {
    if (!restored) await restoreStack(cluster, redisPaths, io.progress, kinds);
  });
  const products = await createProducts(run.admin, tokens, tag, productCount, STOCK);
  const productIds = products.map((p) => p.id);
  const subscribers = new StockSubscribers(`${cluster.url.replace(/^http/, 'ws')}/ws`, productIds);
  io.onCleanup(() => subscribers.close());
  if (subscriberCount > 0) await subscribers.open(subscriberCount);

  // The load: of every 3 arrivals, one purchase (a unique key) and two reads, over every product.
  const ledger = new PurchaseLedger(tokens, productIds);
  const outcomes: PurchaseOutcome[] = [];
  const acknowledged = { confirmed: [] as string[], pending: [] as string[] };
  let stopLoad = false;
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
    const key = `${tag}-${seq}`;
    const inner = ledger.purchase('purchase', productId, 1, key, benchUser(seq));
    return {
      ...inner,
      answer: (status, headers, body, timing) => {
        const cls = inner.answer!(status, headers, body, timing);
        if (status === 201) acknowledged.confirmed.push(key);
        if (status === 202) acknowledged.pending.push(key);
        const ok = status === 201 || status === 202;
        outcomes.push({
          sentMs: timing.intendedMs - timing.startMs,
          doneMs: timing.doneMs - timing.startMs,
          ok,
        });
        return ok ? { ...cls, error: false } : cls;
      },
      transportError: (code) => {
        inner.transportError!(code);
        const at = performance.now() - loadStart;
        outcomes.push({ sentMs: at, doneMs: at, ok: false });
      },
    };
  };

  const faults: FaultRecord[] = [];
  let loadStart = performance.now();
  let healFailure: string | undefined;
  // A fault waits for the heal of the previous one of its subsystem; faults of different subsystems may overlap.
  const healing = new Map<string, Promise<void>>();
  const injectFaults = async (): Promise<void> => {
    await sleep(5_000); // load before the first fault
    const elapsed = () => performance.now() - loadStart;
    for (const planned of faultSchedule({ seed, intervalMs, profile, kinds })) {
      const subsystem = planned.kind.split('-')[0]!;
      await healing.get(subsystem);
      if (io.signal.aborted || healFailure !== undefined || elapsed() + planned.gapMs > durationMs) break;
      const record: FaultRecord = {
        kind: planned.kind,
        target: '',
        atMs: elapsed(),
        healS: null,
        detail: '',
      };
      faults.push(record);
      io.progress(`chaos: ${(elapsed() / 1000).toFixed(1)} s: injecting ${planned.kind}`);
      let struck!: () => void;
      const injected = new Promise<void>((resolve) => (struck = resolve));
      const targets = { cluster, kafkaAdmin: admin, topics, redisPaths, progress: io.progress };
      const healed = runFault(planned, targets, () => {
        record.atMs = elapsed();
        struck();
      }).then(
        (outcome) => {
          Object.assign(record, { target: outcome.target, detail: outcome.detail });
          record.healS = round((elapsed() - record.atMs) / 1000, 1);
          io.progress(
            `chaos: ${planned.kind} on ${outcome.target} healed after ${record.healS} s (${outcome.detail})`,
          );
        },
        (err: unknown) => {
          record.error = (err as Error).message;
          healFailure = `${planned.kind}: ${record.error}`;
          io.progress(`chaos: ${planned.kind} did not heal: ${record.error}; no more faults`);
        },
      );
      healing.set(subsystem, healed);
      await Promise.race([injected, healed]);
      if (serial) await healed;
      await sleep(Math.max(0, record.atMs + planned.gapMs - elapsed()));
      const { failed, recoveryS } = recoveryOf({ atMs: record.atMs, untilMs: Infinity }, outcomes);
      io.progress(
        `chaos: ${planned.kind}: ${failed} purchases failed so far; recovery ${recoveryS ?? 'not yet'} s`,
      );
    }
    await Promise.all(healing.values());
    if (profile === 'long') await sleep(Math.max(0, durationMs - elapsed()));
    stopLoad = true;
  };

  loadStart = performance.now();
  const [result] = await Promise.all([
    // Ends when the faults are done (stopLoad), not before.
    run.openLoop(`chaos @ ${rate}/s`, rate, options.durationS + 3_600, next),
    injectFaults(),
  ]);

  io.progress('chaos: load stopped; putting the stack back as it was');
  await restoreStack(cluster, redisPaths, io.progress, kinds);
  restored = true;
  const { checks, stillPending: sagasOpen } = await run.check(
    products.map((p) => ({ productId: p.id, label: `product ${p.id}`, initialStock: STOCK })),
    [ledger],
    { settleMs: 0, sagaWaitMs: 60_000 },
  );
  const oversold = checks.reduce((s, c) => s + Math.max(0, c.stock + c.sold - c.initialStock), 0);
  const undersold = checks.reduce((s, c) => s + Math.max(0, c.initialStock - c.stock - c.sold), 0);
  const lost = await lostAcknowledged(acknowledged, productIds);
  const replica = await checkReplica(productIds);
  const cache = await checkCache(productIds, cluster.redisPrefix!, cluster.metricsUrls);
  const unsent = await waitOutboxDrained(topics);
  const events = await compareEvents(await readEvents(kafka, admin, topics), productIds);
  const kafkaMismatches: Mismatch[] = [
    ...events.mismatches,
    ...(unsent > 0 ? [{ productId: 0, detail: `${unsent} outbox rows never sent` }] : []),
  ];
  const projection = await checkProjection(cluster.url, tokens, productIds);
  const truth = await readTruth(productIds);
  const wsStale = subscriberCount === 0 ? 0 : await subscribers.waitFresh(truth, 20_000);

  const windows = faults.map((f, i) => ({ atMs: f.atMs, untilMs: faults[i + 1]?.atMs ?? Infinity }));
  const recoveries = windows.map((w) => recoveryOf(w, outcomes));
  const errorsByStatus: Record<string, number> = {};
  for (const op of ['purchase', 'read'])
    for (const [label, n] of Object.entries(result.ops.get(op)?.statuses ?? {}))
      if (!/^20[012]\b/.test(label)) errorsByStatus[label] = (errorsByStatus[label] ?? 0) + n;
  const byKind = Object.fromEntries(
    FAULT_KINDS.map((kind) => {
      const values = recoveries.flatMap((r, i) =>
        faults[i]!.kind === kind && r.recoveryS !== null ? [r.recoveryS] : [],
      );
      const n = values.length;
      return [
        kind,
        { n, median: n === 0 ? null : round(median(values), 2), max: n === 0 ? null : Math.max(...values) },
      ];
    }),
  );
  const kindsMissing = profile === 'short' ? kinds.filter((k) => !faults.some((f) => f.kind === k)) : [];
  const problems = [
    ...(faults.length === 0 ? ['no fault was injected (is --duration long enough?)'] : []),
    ...(kindsMissing.length > 0 ? [`short profile: never injected ${kindsMissing.join(', ')}`] : []),
    ...(healFailure === undefined ? [] : [`a fault did not heal: ${healFailure}`]),
    ...recoveries.flatMap((r, i) =>
      r.recoveryS === null ? [`${faults[i]!.kind}: purchases never succeeded again`] : [],
    ),
    ...(lost.length > 0
      ? [`${lost.length} acknowledged purchases have no order: ${lost.slice(0, 5).join(', ')}`]
      : []),
    ...(oversold + undersold > 0
      ? [`stock + sold != initial: oversold ${oversold}, undersold ${undersold}`]
      : []),
    ...checks
      .filter((c) => !c.ordersMatch)
      .map((c) => `${c.label}: orders do not match the answers (${JSON.stringify(c.orders)})`),
    ...(sagasOpen > 0 ? [`${sagasOpen} orders still PENDING after 60 s`] : []),
    ...[...replica, ...cache, ...kafkaMismatches, ...projection].map(
      (m) => `product ${m.productId}: ${m.detail}`,
    ),
    ...(wsStale > 0 ? [`${wsStale} (subscriber, product) pairs not on the latest version`] : []),
  ];
  const ok = problems.length === 0;
  return {
    ok,
    summary: {
      seed,
      profile,
      faults: faults.map((f, i) => ({
        kind: f.kind,
        at_s: round(f.atMs / 1000, 1),
        recovery_s: recoveries[i]!.recoveryS,
      })),
      recovery_s_by_kind: byKind,
      lost_acknowledged: lost.length,
      oversold,
      undersold,
      sagas_open: sagasOpen,
      replica_mismatch: replica.length,
      cache_mismatch: cache.length,
      kafka_mismatch: kafkaMismatches.length,
      projection_mismatch: projection.length,
      ws_stale: wsStale,
      errors_by_status: errorsByStatus,
      acknowledged: acknowledged.confirmed.length + acknowledged.pending.length,
      answers_mismatch: checks.filter((c) => !c.ordersMatch).length,
      kafka_events: events.events,
      kafka_redeliveries: events.duplicates,
      ws_reconnects: subscribers.reconnects,
      stack_restored: restored,
      offered_per_s: Math.round(result.offeredPerS),
      load_s: round(result.wallS, 1),
    },
    table: {
      columns: ['#', 'fault', 'target', 'at s', 'healed s', 'failed', 'recovery s', 'detail'],
      rows: faults.map((f, i) => [
        i + 1,
        f.kind,
        f.target || '-',
        round(f.atMs / 1000, 1),
        f.healS ?? '-',
        recoveries[i]!.failed,
        recoveries[i]!.recoveryS ?? 'never',
        f.error ?? f.detail,
      ]),
    },
    notes: [
      `seed ${seed} (${profile} profile, a fault every ~${intervalMs / 1000} s; ${serial ? 'each healed before the next' : 'one subsystem healed before its next fault, subsystems overlapping'}); OPEN LOOP ${rate}/s through the bench nginx to 2 nodes: 1/3 purchases, 2/3 reads, ${productCount} products; ${subscriberCount} WebSocket subscribers (${subscribers.reconnects} reconnects)`,
      'recovery: from the injection to the answer of the first acknowledged (201/202) purchase sent after the last failure answered before the next fault; 0 = nothing failed',
      `errors clients saw, by status: ${JSON.stringify(errorsByStatus)}`,
      `acknowledged ${acknowledged.confirmed.length} (201) + ${acknowledged.pending.length} (202); lost ${lost.length}; oversold ${oversold}, undersold ${undersold}; still PENDING ${sagasOpen}`,
      `replica ${replica.length}, cache ${cache.length}, Kafka ${kafkaMismatches.length} (${events.events} events, ${events.duplicates} redeliveries), projection ${projection.length}: products that disagree with the primary; WebSocket pairs stale ${wsStale}`,
      ...problems.slice(0, 30).map((p) => `FAILED CHECK: ${p}`),
      ...result.warnings.map((w) => `WARNING: ${w}`),
      `invariants: ${ok ? 'OK' : 'BROKEN'}`,
    ],
    details: {
      faults,
      recoveries,
      byKind,
      checks,
      replica,
      cache,
      kafka: kafkaMismatches,
      projection,
      lost: lost.slice(0, 100),
    },
  };
}

/** Keys answered 201 without a CONFIRMED order, or 202 without any order. */
async function lostAcknowledged(
  keys: { confirmed: readonly string[]; pending: readonly string[] },
  productIds: readonly number[],
): Promise<string[]> {
  const found = await orderStatuses([...keys.confirmed, ...keys.pending], productIds);
  return [
    ...keys.confirmed.filter((k) => found.get(k) !== 'CONFIRMED'),
    ...keys.pending.filter((k) => !found.has(k)),
  ];
}

export default defineScenario({
  name: 'chaos',
  describe:
    'seeded faults (app kill/pause, Redis/Kafka/MariaDB primary kill, replica stop, a node cut off Redis) under purchases, reads and WebSockets; every store must agree after',
  defaults: { durationS: 120, connections: 200, rate: 150 },
  run,
});
