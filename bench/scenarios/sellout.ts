/**
 * Sell-out: one product, `attempts` purchase attempts from `users` users (duplicate clicks, quantities
 * 1/2/3/5) through nginx to two nodes; oversold = undersold = 0, every answer matches its order, and the
 * primary, replica, cache, actor, Kafka events and projection agree.
 */
import type { RowDataPacket } from 'mysql2/promise';
import { cachedStock, kafkaTotals, projectionTotals, replicaTotals, until } from '../agreement.js';
import { createProduct, errorCode } from '../api.js';
import { latencyChart } from '../chart.js';
import { newLatencyHistogram } from '../load.js';
import { latencySummary, round } from '../measure.js';
import type { OpenLoopRequest } from '../open-loop.js';
import { num } from '../report.js';
import { defineScenario, generatorNotes, phaseThroughputChart, type Run } from '../scenario.js';
import type { ScenarioResult } from '../types.js';
import { withMysql } from '../stores.js';
import { waitForSagas } from '../verify.js';

const QUANTITIES: readonly [number, number][] = [
  [1, 0.6],
  [2, 0.25],
  [3, 0.1],
  [5, 0.05],
];
const SAGA_WAIT_MS = 45_000;
const AGREE_WAIT_MS = 30_000;

interface Attempt {
  readonly quantity: number;
  readonly answers: string[];
}

const sellerUser = (i: number): string => `bench-so-u${i}`;

function quantity(): number {
  let u = Math.random();
  for (const [q, p] of QUANTITIES) if ((u -= p) < 0) return q;
  return 1;
}

async function run(run: Run): Promise<ScenarioResult> {
  const { options, io } = run;
  const stock = run.param('stock', 10_000, 1, 10_000_000);
  const attemptsWanted = run.param('attempts', 100_000, 1, 10_000_000);
  // At most the nodes' token cache (AUTH_TOKEN_CACHE_SIZE, 100,000): every token is verified once per node.
  const users = run.param('users', 20_000, 1, 100_000);
  const dupShare = run.param('duplicates', 0.2, 0, 1);
  const rate = options.rate ?? 4000;
  // One token per user, minted before the load (the users' ids are those `next` below picks).
  const { cluster, tokens, admin, opened } = await run.setUp({
    cluster: { nodes: 2, nginx: true, paymentLatencyMs: 5 },
    connectionsTimeoutMs: 60_000,
    users: Array.from({ length: users }, (_, i) => sellerUser(i)),
    backgroundMs: 0,
  });
  const tag = run.tag('so');
  const product = await createProduct(admin, tokens, `bench ${tag} sellout`, stock);
  io.progress(`bench: product ${product.id} with ${num(stock)} units; ${num(opened)} connections open`);

  const attempts = new Map<string, Attempt>();
  const selling = newLatencyHistogram();
  const all = newLatencyHistogram();
  let lastConfirmedMs = 0;
  let firstOutOfStockMs: number | undefined;
  let duplicatesSent = 0;
  const startedAtMs = Date.now();
  const sends: { intendedMs: number; latencyMs: number }[] = [];
  const request = (key: string, userId: string, attempt: Attempt): OpenLoopRequest => ({
    op: 'purchase',
    method: 'POST',
    path: '/purchases',
    headers: { authorization: tokens.bearer(userId), 'idempotency-key': key },
    body: JSON.stringify({ productId: product.id, quantity: attempt.quantity }),
    answer: (status, headers, body, timing) => {
      const code = status === 201 || status === 202 ? '' : ` ${errorCode(body)}`;
      const label = `${status}${headers['idempotent-replayed'] === 'true' ? ' replay' : ''}${code}`;
      attempt.answers.push(label);
      const at = timing.doneMs - timing.startMs;
      sends.push({
        intendedMs: timing.intendedMs - timing.startMs,
        latencyMs: timing.doneMs - timing.intendedMs,
      });
      if (status === 201) lastConfirmedMs = Math.max(lastConfirmedMs, at);
      if (status === 409 && code === ' OUT_OF_STOCK')
        firstOutOfStockMs = Math.min(firstOutOfStockMs ?? Infinity, at);
      const expected = status === 201 || status === 202 || (status === 409 && code === ' OUT_OF_STOCK');
      return {
        op: status === 201 ? 'confirmed' : status === 409 ? 'refused (409)' : 'other',
        error: !expected,
        label,
      };
    },
    transportError: (code) => attempt.answers.push(`transport ${code}`),
  });
  let made = 0;
  const next = (seq: number) => {
    if (made >= attemptsWanted) return undefined;
    const key = `${tag}-${seq}`;
    const attempt: Attempt = { quantity: quantity(), answers: [] };
    attempts.set(key, attempt);
    const userId = sellerUser((seq * 7_919) % users);
    const first = request(key, userId, attempt);
    made += 1;
    if (made < attemptsWanted && Math.random() < dupShare) {
      made += 1;
      duplicatesSent += 1;
      return [first, request(key, userId, attempt)];
    }
    return first;
  };
  const durationS = Math.max(1, attemptsWanted / rate);
  const arrivals = Math.ceil(attemptsWanted / (1 + dupShare));
  const result = await run.openLoop(`sellout @ ${num(rate)}/s`, rate, durationS, next, arrivals);
  const soldOutAtMs = lastConfirmedMs;
  for (const s of sends) {
    all.record(Math.max(1, Math.round(s.latencyMs * 1000)));
    if (s.intendedMs <= soldOutAtMs) selling.record(Math.max(1, Math.round(s.latencyMs * 1000)));
  }
  // Right after the load: the cache entry may expire (5 s) while the checks wait for sagas.
  const cacheNow =
    cluster.redisPrefix === undefined ? undefined : await cachedStock(cluster.redisPrefix, product.id);

  io.progress('bench: waiting for open sagas, then checking every store');
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const stillPending = await waitForSagas([product.id], SAGA_WAIT_MS);
  const [[p], [rows]] = await withMysql((conn) =>
    Promise.all([
      conn.query<RowDataPacket[]>('SELECT stock FROM products WHERE id = ?', [product.id]),
      conn.query<RowDataPacket[]>(
        'SELECT idempotency_key AS k, status, quantity FROM orders WHERE product_id = ?',
        [product.id],
      ),
    ]),
  );
  const orders = new Map<string, { status: string; quantity: number; n: number }>();
  let foreign = 0;
  for (const row of rows) {
    const k = String(row['k']);
    const n = (orders.get(k)?.n ?? 0) + 1;
    orders.set(k, { status: String(row['status']), quantity: Number(row['quantity']), n });
    if (!attempts.has(k)) foreign += 1;
  }
  const placed = [...orders.values()];
  const sum = (status: string) =>
    placed.filter((o) => o.status === status).reduce((s, o) => s + o.quantity, 0);
  const primary = {
    stock: Number(p[0]?.['stock']),
    confirmedQty: sum('CONFIRMED'),
    confirmedOrders: placed.filter((o) => o.status === 'CONFIRMED').length,
    cancelled: placed.filter((o) => o.status === 'CANCELLED').length,
    pendingQty: sum('PENDING'),
  };

  // Every key's answers against its order.
  const mismatches: string[] = [];
  let answered201 = 0;
  for (const [key, attempt] of attempts) {
    const order = orders.get(key);
    const labels = new Set(attempt.answers.map((a) => a.split(' ')[0]!));
    if (order !== undefined && order.n > 1) mismatches.push(`${key}: ${order.n} orders`);
    if (labels.has('201')) {
      answered201 += 1;
      if (order?.status !== 'CONFIRMED' || order.quantity !== attempt.quantity)
        mismatches.push(
          `${key}: answered 201, order ${order === undefined ? 'missing' : `${order.status} ×${order.quantity}`}`,
        );
    }
    const refused = attempt.answers.some((a) => a.endsWith('OUT_OF_STOCK'));
    if (refused && order !== undefined && order.status !== 'CANCELLED')
      mismatches.push(`${key}: answered OUT_OF_STOCK, order ${order.status}`);
    if (labels.has('201') && refused) mismatches.push(`${key}: one click confirmed, its duplicate refused`);
  }
  if (foreign > 0) mismatches.push(`${foreign} orders with keys the bench never sent`);

  const oversold = Math.max(0, primary.confirmedQty + primary.pendingQty - stock);
  const undersold = Math.max(0, stock - primary.stock - primary.confirmedQty - primary.pendingQty);
  const accounting = stock - primary.stock === primary.confirmedQty + primary.pendingQty;

  // The actor: a restock of 1 answers with the actor's own stock, which must be the primary's + 1.
  const restock = await admin.request({
    path: `/products/${product.id}/restock`,
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: tokens.admin },
    body: JSON.stringify({ quantity: 1 }),
  });
  const restockBody = (await restock.body.json()) as { stock?: number };
  const actorStock = restock.statusCode === 200 ? (restockBody.stock ?? NaN) - 1 : NaN;
  const finalStock = primary.stock; // before the probe

  const replica = await until(
    () => replicaTotals(product.id),
    (r) => r !== undefined && r.stock === finalStock + 1 && r.confirmedQuantity === primary.confirmedQty,
    AGREE_WAIT_MS,
  );
  const kafka = await until(
    () => kafkaTotals(product.id, startedAtMs - 60_000),
    (k) =>
      k.confirmedQuantity === primary.confirmedQty &&
      k.confirmedOrders === primary.confirmedOrders &&
      k.lastStock === finalStock + 1,
    AGREE_WAIT_MS,
  );
  const projection = await until(
    () => projectionTotals(admin, tokens, product.id),
    (p) =>
      p !== undefined &&
      p.soldQuantity === primary.confirmedQty &&
      p.confirmedOrders === primary.confirmedOrders,
    AGREE_WAIT_MS,
  );
  const cacheAgrees = cacheNow === undefined ? null : cacheNow.stock === finalStock;
  const agree = {
    replica: replica.agreed,
    cache: cacheAgrees,
    actor: actorStock === finalStock,
    kafka: kafka.agreed,
    projection: projection.agreed,
  };
  const ok =
    oversold === 0 &&
    undersold === 0 &&
    accounting &&
    stillPending === 0 &&
    mismatches.length === 0 &&
    Object.values(agree).every((v) => v !== false);

  const sellingSummary = latencySummary(selling);
  const allSummary = latencySummary(all);
  const statuses = Object.fromEntries([...result.ops.values()].flatMap((s) => Object.entries(s.statuses)));
  const notes = [
    `mode: OPEN LOOP at ${num(rate)}/s offered through ${cluster.nginx === undefined ? cluster.url : 'the bench nginx to 2 nodes'}, ${num(opened)} connections; ${num(attempts.size)} keys, ${num(duplicatesSent)} sent twice at once (same key), quantities 1/2/3/5 (60/25/10/5%), ${num(users)} users.`,
    `sold out after ${(soldOutAtMs / 1000).toFixed(2)} s (last 201 answered); first OUT_OF_STOCK at ${firstOutOfStockMs === undefined ? '-' : `${(firstOutOfStockMs / 1000).toFixed(2)} s`}; final stock ${num(finalStock)}.`,
    `primary: initial ${num(stock)} − final ${num(finalStock)} = ${num(stock - finalStock)}; confirmed quantity ${num(primary.confirmedQty)} in ${num(primary.confirmedOrders)} orders; pending ${num(primary.pendingQty)}; cancelled orders ${num(primary.cancelled)} → ${accounting ? 'OK' : 'MISMATCH'} (oversold ${oversold}, undersold ${undersold})`,
    `answers vs orders: ${num(answered201)} keys answered 201; ${mismatches.length === 0 ? 'every key matches its order' : `${mismatches.length} MISMATCHES: ${mismatches.slice(0, 5).join('; ')}`}`,
    `replica: ${replica.agreed ? 'agrees' : 'DISAGREES'} (${JSON.stringify(replica.value)}, waited ${replica.waitedMs} ms)`,
    `cache: ${cacheNow === undefined ? 'no entry right after the load (expired or --url)' : `stock ${cacheNow.stock} v${cacheNow.version} right after the load → ${cacheAgrees ? 'agrees' : 'DISAGREES'}`}`,
    `actor: restock of 1 answered stock ${restockBody.stock ?? `(status ${restock.statusCode})`} → the actor held ${actorStock} ${agree.actor ? 'agrees' : 'DISAGREES'} (the probe's unit is counted in the replica/Kafka checks)`,
    `kafka (deduplicated by event id): ${kafka.agreed ? 'agrees' : 'DISAGREES'}: ${num(kafka.value.confirmedOrders)} orders confirmed, quantity ${num(kafka.value.confirmedQuantity)}, last stock.changed ${kafka.value.lastStock ?? '-'}; ${num(kafka.value.events)} events, ${kafka.value.duplicates} duplicates dropped`,
    `projection (GET /stats): ${projection.agreed ? 'agrees' : 'DISAGREES'} (${JSON.stringify(projection.value)})`,
    ...generatorNotes(result),
    `correctness: ${ok ? 'OK' : 'FAILED'}`,
  ];
  return {
    ok,
    summary: {
      mode: 'open-loop',
      oversold,
      undersold,
      initial_stock: stock,
      final_stock: finalStock,
      confirmed_quantity: primary.confirmedQty,
      confirmed_orders: primary.confirmedOrders,
      sold_out: finalStock === 0,
      time_to_sell_out_s: round(soldOutAtMs / 1000, 2),
      selling_p50_ms: sellingSummary.p50,
      selling_p95_ms: sellingSummary.p95,
      selling_p99_ms: sellingSummary.p99,
      selling_max_ms: sellingSummary.max,
      all_p99_ms: allSummary.p99,
      attempts: attempts.size + duplicatesSent,
      keys: attempts.size,
      duplicate_clicks: duplicatesSent,
      errors: result.errors,
      answer_mismatches: mismatches.length,
      replica_agrees: agree.replica,
      cache_agrees: agree.cache,
      actor_agrees: agree.actor,
      kafka_agrees: agree.kafka,
      projection_agrees: agree.projection,
      offered_per_s: Math.round(result.offeredPerS),
      achieved_per_s: Math.round(result.achievedPerS),
      load_generator_cores: round(result.generatorCores, 2),
      connections: options.connections,
    },
    table: {
      columns: ['answers', 'count', 'p50 ms', 'p95 ms', 'p99 ms', 'p99.9 ms', 'max ms'],
      rows: [...result.ops.entries()].map(([op, s]) => {
        const l = latencySummary(s.latency);
        return [op, s.answers + s.transportErrors, l.p50, l.p95, l.p99, l.p999, l.max];
      }),
    },
    notes,
    details: {
      product,
      statuses,
      mismatches: mismatches.slice(0, 100),
      primary,
      replica,
      kafka,
      projection,
      cacheNow,
      timeline: result.timeline,
    },
    charts: [
      latencyChart('sellout: latency by answer, and of every request sent before the sell-out', [
        { op: 'while selling (all answers)', ...sellingSummary },
        ...[...result.ops.entries()].map(([op, s]) => ({ op, ...latencySummary(s.latency) })),
      ]),
      phaseThroughputChart('sellout: offered vs answered per second', result),
    ],
  };
}

export default defineScenario({
  name: 'sellout',
  describe:
    'sell out one product (10,000 units) with 100,000 attempts from 20,000 users, duplicate clicks and mixed quantities; oversold = undersold = 0 and every store agrees',
  defaults: { durationS: 30, connections: 2000, rate: 4000 },
  run,
});
