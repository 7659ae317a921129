/**
 * Sell-out: one product, `attempts` purchase attempts from `users` users (duplicate clicks, quantities
 * 1/2/3/5) through nginx to two nodes; oversold = undersold = 0, every answer matches its order, and the
 * primary, replica, cache, actor, Kafka events and projection agree.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { checkStores } from '../checks.js';
import { query, readTruth, waitForSagas } from '../stores.js';
import { newLatencyHistogram } from '../load.js';
import { latencySummary, round } from '../measure.js';
import { msColumns, num, tableOf } from '../report.js';
import { latencyChart, timelineChart } from '../chart.js';
import { defineScenario, latencyKeys, type Run } from '../scenario.js';

/** Quantities of a purchase and their shares. */
const QUANTITIES = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 5]; // 60/25/10/5%

const sellerUser = (i: number): string => `bench-so-u${i}`;

async function run(run: Run) {
  const { options, io } = run;
  const stock = run.param('stock', 10_000, 1, 10_000_000);
  const attemptsWanted = run.param('attempts', 100_000, 1, 10_000_000);
  // At most the nodes' token cache (AUTH_TOKEN_CACHE_SIZE, 100,000): every token is verified once per node.
  const users = run.param('users', 20_000, 1, 100_000);
  const dupShare = run.param('duplicates', 0.2, 0, 1);
  const rate = options.rate ?? 4000;
  const { cluster, ledger, opened } = await run.setUp({
    cluster: { nodes: 2, nginx: true, paymentLatencyMs: 5 },
    connectionsTimeoutMs: 60_000,
    users: Array.from({ length: users }, (_, i) => sellerUser(i)),
    backgroundMs: 0,
  });
  const product = { id: await run.product('sellout', stock) };
  io.progress(`bench: product ${product.id} with ${num(stock)} units; ${num(opened)} connections open`);

  // The load: each arrival one key (a double click: the same key twice at once), every answer kept per key.
  const attempts = new Map<string, { readonly quantity: number; readonly answers: string[] }>();
  const sends: { intendedMs: number; latencyUs: number }[] = [];
  let soldOutAtMs = 0; // the last 201 answered
  let duplicatesSent = 0;
  const startedAtMs = Date.now();
  // Each answer's label (`201`, `201 REPLAYED`, `409 OUT_OF_STOCK`, …) kept by key; a 201 or 202 is no error, nor
  // an OUT_OF_STOCK refusal.
  const request = (key: string, userId: string) => {
    const attempt = attempts.get(key)!;
    return ledger.purchase(product.id, attempt.quantity, key, userId, (cls, timing, status) => {
      attempt.answers.push(cls.label!);
      const latencyUs = Math.max(1, Math.round((timing.doneMs - timing.intendedMs) * 1000));
      sends.push({ intendedMs: timing.intendedMs - timing.startMs, latencyUs });
      if (status === 201) soldOutAtMs = Math.max(soldOutAtMs, timing.doneMs - timing.startMs);
      const error = !(status === 201 || status === 202 || cls.label === '409 OUT_OF_STOCK');
      return { ...cls, op: status === 201 ? 'confirmed' : status === 409 ? 'refused (409)' : 'other', error };
    });
  };
  const next = (seq: number) => {
    if (attempts.size + duplicatesSent >= attemptsWanted) return undefined;
    const key = `${run.id}-${seq}`;
    attempts.set(key, { quantity: QUANTITIES[Math.floor(Math.random() * QUANTITIES.length)]!, answers: [] });
    const userId = sellerUser((seq * 7_919) % users);
    if (attempts.size + duplicatesSent >= attemptsWanted || Math.random() >= dupShare)
      return request(key, userId);
    duplicatesSent += 1;
    return [request(key, userId), request(key, userId)];
  };
  const durationS = Math.max(1, attemptsWanted / rate);
  const arrivals = Math.ceil(attemptsWanted / (1 + dupShare));
  const result = await run.openLoop(`sellout @ ${num(rate)}/s`, rate, durationS, next, arrivals);
  const selling = newLatencyHistogram();
  for (const s of sends) if (s.intendedMs <= soldOutAtMs) selling.record(s.latencyUs);

  // The primary: every saga ended, then stock and the orders by key.
  io.progress('bench: waiting for open sagas, then checking every store');
  await sleep(1_000);
  const stillPending = await waitForSagas([product.id], 45_000);
  const finalStock = (await readTruth([product.id])).get(product.id)!.stock;
  const sql = 'SELECT idempotency_key AS k, status, quantity FROM orders WHERE product_id = ?';
  const rows = await query(sql, [product.id]);
  const orders = new Map<string, { status: string; quantity: number; n: number }>();
  for (const r of rows) {
    const [k, status, quantity] = [String(r['k']), String(r['status']), Number(r['quantity'])];
    orders.set(k, { status, quantity, n: (orders.get(k)?.n ?? 0) + 1 });
  }
  const placed = [...orders.values()];
  const quantityOf = (status: string) =>
    placed.filter((o) => o.status === status).reduce((s, o) => s + o.quantity, 0);
  const confirmedQty = quantityOf('CONFIRMED');
  const sold = confirmedQty + quantityOf('PENDING');
  const oversold = Math.max(0, sold - stock);
  const undersold = Math.max(0, stock - finalStock - sold);
  const accounting = stock - finalStock === sold;

  // Every key's answers against its order.
  const mismatches: string[] = [];
  const foreign = [...orders.keys()].filter((k) => !attempts.has(k)).length;
  if (foreign > 0) mismatches.push(`${foreign} orders with keys the bench never sent`);
  for (const [key, attempt] of attempts) {
    const order = orders.get(key);
    const confirmed = attempt.answers.some((a) => a.startsWith('201'));
    const refused = attempt.answers.some((a) => a.endsWith('OUT_OF_STOCK'));
    if (order !== undefined && order.n > 1) mismatches.push(`${key}: ${order.n} orders`);
    if (confirmed && (order?.status !== 'CONFIRMED' || order.quantity !== attempt.quantity))
      mismatches.push(
        `${key}: answered 201, order ${order === undefined ? 'missing' : `${order.status} ×${order.quantity}`}`,
      );
    if (refused && order !== undefined && order.status !== 'CANCELLED')
      mismatches.push(`${key}: answered OUT_OF_STOCK, order ${order.status}`);
    if (confirmed && refused) mismatches.push(`${key}: one click confirmed, its duplicate refused`);
  }

  // Then every other store against the primary: the actor first (its probe sells a unit back), then the rest.
  const stores = await checkStores({
    productIds: [product.id],
    cluster,
    admin: run.tokens,
    actor: true,
    events: { own: false, sinceMs: startedAtMs - 60_000 },
    timeoutMs: 30_000,
  });
  const STORES = ['actor', 'replica', 'cache', 'kafka', 'projection'] as const;
  const agrees = (store: (typeof STORES)[number]) => stores[store].length === 0;
  const ok =
    accounting && oversold + undersold + stillPending + mismatches.length === 0 && STORES.every(agrees);

  const sellingSummary = latencySummary(selling);
  const opRows = [...result.ops.entries()].map(([op, s]) => ({
    op,
    ...latencySummary(s.latency),
    count: s.answers + s.transportErrors,
  }));
  const notes = [
    `mode: OPEN LOOP at ${num(rate)}/s offered through ${cluster.nginx === undefined ? cluster.url : 'the bench nginx to 2 nodes'}, ${num(opened)} connections; ${num(attempts.size)} keys, ${num(duplicatesSent)} sent twice at once (same key), quantities 1/2/3/5 (60/25/10/5%), ${num(users)} users.`,
    `sold out after ${(soldOutAtMs / 1000).toFixed(2)} s (last 201 answered); final stock ${num(finalStock)}.`,
    `primary: initial ${num(stock)} − final ${num(finalStock)} = ${num(stock - finalStock)}; confirmed + pending quantity ${num(sold)} ${accounting ? 'OK' : 'MISMATCH'} (oversold ${oversold}, undersold ${undersold}); still pending ${stillPending}`,
    `answers vs orders: ${mismatches.length === 0 ? 'every key matches its order' : `${mismatches.length} MISMATCHES: ${mismatches.slice(0, 5).join('; ')}`}`,
    ...STORES.map(
      (store) =>
        `${store}: ${agrees(store) ? 'agrees' : `DISAGREES: ${stores[store].map((m) => m.detail).join('; ')}`}`,
    ),
    `kafka: ${num(stores.events)} events read back, deduplicated by id (${stores.duplicates} duplicates)`,
  ];
  return run.report({
    ok,
    steps: [{ result, otherCores: undefined }],
    summary: {
      mode: 'open-loop',
      oversold,
      undersold,
      initial_stock: stock,
      final_stock: finalStock,
      confirmed_quantity: confirmedQty,
      confirmed_orders: placed.filter((o) => o.status === 'CONFIRMED').length,
      sold_out: finalStock === 0,
      time_to_sell_out_s: round(soldOutAtMs / 1000, 2),
      ...latencyKeys('selling', sellingSummary, ['p50', 'p95', 'p99', 'max']),
      attempts: attempts.size + duplicatesSent,
      keys: attempts.size,
      duplicate_clicks: duplicatesSent,
      errors: result.errors,
      answer_mismatches: mismatches.length,
      ...Object.fromEntries(STORES.map((store) => [`${store}_agrees`, agrees(store)])),
      offered_per_s: Math.round(result.offeredPerS),
      achieved_per_s: Math.round(result.achievedPerS),
    },
    table: tableOf(
      [
        ['answers', (o) => o.op],
        ['count', (o) => o.count],
        ...msColumns(['p50', 'p95', 'p99', 'p999', 'max'] as const, (o: (typeof opRows)[number], k) => o[k]),
      ],
      opRows,
    ),
    notes,
    details: { product, mismatches: mismatches.slice(0, 100), stores },
    charts: [
      latencyChart('sellout: latency by answer, and of every request sent before the sell-out', [
        { op: 'while selling (all answers)', ...sellingSummary },
        ...opRows,
      ]),
      timelineChart('sellout: offered vs answered per second', [{ result }]),
    ],
  });
}

export default defineScenario({
  name: 'sellout',
  describe:
    'sell out one product (10,000 units) with 100,000 attempts from 20,000 users, duplicate clicks and mixed quantities; oversold = undersold = 0 and every store agrees',
  params: ['stock', 'attempts', 'users', 'duplicates'],
  defaults: { durationS: 30, connections: 2000, rate: 4000 },
  run,
});
