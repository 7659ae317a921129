/**
 * Every store against the MySQL primary's truth, each check waiting (bounded) for its store: the replica's
 * rows, the Redis cache and each node's read, the Kafka events, the sales projection. The chaos run and the
 * bench's sellout check with these (`checkStores`).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { Pool } from 'undici';
import { decodeEvent, type EventEnvelope } from '../src/events/envelope.js';
import type { Admin, Kafka } from '../src/storage/kafka.js';
import { eventsOf, type EventsOf } from '../scripts/chaos/events.js';
import type { Cluster } from '../scripts/cluster.js';
import { connectStoreRedis, ordersOfKeys, waitNone, withMysql } from './stores.js';
import { until } from '../scripts/until.js';
import type { StockTruth } from '../scripts/chaos/subscribers.js';
import type { BenchTokens } from './auth.js';

/** The headers of an admin's requests (`GET /stats`, restocks). */
type AdminToken = Pick<BenchTokens, 'adminHeaders'>;
export type Mismatch = { readonly productId: number; readonly detail: string };

/** Each product's stock and version on the primary. */
export function readTruth(productIds: readonly number[]): Promise<Map<number, StockTruth>> {
  return withMysql(async (conn) => {
    const [rows] = await conn.query<RowDataPacket[]>(
      'SELECT id, stock, version FROM products WHERE id IN (?)',
      [productIds],
    );
    return new Map(
      rows.map((r) => [Number(r['id']), { stock: Number(r['stock']), version: Number(r['version']) }]),
    );
  });
}

/** Keys answered 201 without a CONFIRMED order among these products' orders, or 202 without any order. */
export function lostAcknowledged(
  keys: { readonly confirmed: readonly string[]; readonly pending: readonly string[] },
  productIds: readonly number[],
): Promise<string[]> {
  return withMysql(async (conn) => {
    const orders = await ordersOfKeys(conn, [...keys.confirmed, ...keys.pending], productIds);
    const found = new Map(orders.map((o) => [o.key, o.status]));
    return [
      ...keys.confirmed.filter((k) => found.get(k) !== 'CONFIRMED'),
      ...keys.pending.filter((k) => !found.has(k)),
    ];
  });
}

/** `fn` on a pool of 4 connections to each of `urls`, closed after. */
async function withPools<T>(urls: readonly string[], fn: (pools: [Pool, ...Pool[]]) => Promise<T>) {
  const pools = urls.map((url) => new Pool(url, { connections: 4 })) as [Pool, ...Pool[]];
  return fn(pools).finally(() => Promise.all(pools.map((p) => p.close())));
}

/** Retries `check` every second until it finds nothing or `timeoutMs` passed; the last findings. */
const settle = async (check: () => Promise<Mismatch[]>, timeoutMs: number): Promise<Mismatch[]> =>
  (
    await until(
      () => check().catch((err: unknown) => [{ productId: 0, detail: `check failed: ${String(err)}` }]),
      (found) => found.length === 0,
      timeoutMs,
    )
  ).value;

/** The rows `rowsPerProduct` compares: each query's `pid` column and its line for a row. */
const ROWS: readonly (readonly [string, (r: RowDataPacket) => string])[] = [
  [
    'SELECT id AS pid, stock, version, owner_epoch FROM products WHERE id IN (?) ORDER BY id',
    (r) => `p ${r['stock']} v${r['version']} e${r['owner_epoch']}`,
  ],
  [
    'SELECT product_id AS pid, id, status, quantity FROM orders WHERE product_id IN (?) ORDER BY id',
    (r) => `o ${r['id']} ${r['status']} ${r['quantity']}`,
  ],
  [
    'SELECT product_id AS pid, order_id, state, version FROM sagas WHERE product_id IN (?) ORDER BY order_id',
    (r) => `s ${r['order_id']} ${r['state']} ${r['version']}`,
  ],
];

/** One line per product of its products, orders and sagas rows, as a server holds them. */
async function rowsPerProduct(conn: Connection, productIds: readonly number[]): Promise<Map<number, string>> {
  const out = new Map<number, string[]>(productIds.map((id) => [id, []]));
  for (const [sql, line] of ROWS) {
    const [rows] = await conn.query<RowDataPacket[]>(sql, [productIds]);
    for (const r of rows) out.get(Number(r['pid']))?.push(line(r));
  }
  return new Map([...out].map(([id, lines]) => [id, lines.join('\n')]));
}

/** Products whose products/orders/sagas rows differ between the primary and the replica (after catching up). */
export function checkReplica(productIds: readonly number[], timeoutMs = 30_000): Promise<Mismatch[]> {
  return settle(async () => {
    const [onPrimary, onReplica] = await Promise.all([
      withMysql((conn) => rowsPerProduct(conn, productIds)),
      withMysql((conn) => rowsPerProduct(conn, productIds), 'replica'),
    ]);
    return productIds.flatMap((id) => {
      const a = onPrimary.get(id) ?? '';
      const b = onReplica.get(id) ?? '';
      if (a === b) return [];
      const lines = new Set(b.split('\n'));
      const missing = a.split('\n').filter((l) => !lines.has(l));
      return [
        {
          productId: id,
          detail: `replica differs: ${missing.length} primary rows not on it, e.g. ${missing[0] ?? '-'}`,
        },
      ];
    });
  }, timeoutMs);
}

/**
 * Products whose Redis stock (while it lives; not read without the nodes' prefix) or read on any node is
 * not the primary's (up to `timeoutMs`).
 */
export async function checkCache(
  productIds: readonly number[],
  redisPrefix: string | undefined,
  nodeUrls: readonly string[],
  timeoutMs = 45_000,
): Promise<Mismatch[]> {
  const redis = await connectStoreRedis();
  return withPools(nodeUrls, (nodes) =>
    settle(async () => {
      const truth = await readTruth(productIds);
      const cached =
        redisPrefix === undefined
          ? []
          : await redis.mget(...productIds.map((id) => `${redisPrefix}stock:${id}`));
      const found: Mismatch[] = [];
      for (const [i, id] of productIds.entries()) {
        const want = truth.get(id)!;
        const raw = cached[i];
        if (raw !== null && raw !== undefined && raw !== `${want.version}:${want.stock}`)
          found.push({ productId: id, detail: `Redis holds ${raw}, primary ${want.version}:${want.stock}` });
        for (const [k, node] of nodes.entries()) {
          const res = await node.request({ path: `/products/${id}`, method: 'GET' });
          const text = await res.body.text();
          const body =
            res.statusCode === 200 ? (JSON.parse(text) as { stock: number; version: number }) : undefined;
          if (body?.stock !== want.stock || body.version !== want.version)
            found.push({
              productId: id,
              detail: `${nodeUrls[k]} reads ${res.statusCode === 200 ? `${body?.version}:${body?.stock} (${String(res.headers['x-cache-tier'])})` : `status ${res.statusCode}`}, primary ${want.version}:${want.stock}`,
            });
        }
      }
      return found;
    }, timeoutMs),
  ).finally(() => redis.disconnect());
}

const PROJECTION_KEYS = [
  'confirmedOrders',
  'soldQuantity',
  'revenueCents',
  'cancelledOrders',
  'cancelledQuantity',
];

/** Products whose sales projection (`GET /stats/products/:id` as an admin) is not the primary's orders. */
export async function checkProjection(
  url: string,
  admin: AdminToken,
  productIds: readonly number[],
  timeoutMs = 60_000,
): Promise<Mismatch[]> {
  return withPools([url], ([http]) =>
    settle(async () => {
      const want = await withMysql(async (conn) => {
        const [rows] = await conn.query<RowDataPacket[]>(
          `SELECT product_id,
                  SUM(status = 'CONFIRMED') AS confirmedOrders,
                  COALESCE(SUM(IF(status = 'CONFIRMED', quantity, 0)), 0) AS soldQuantity,
                  COALESCE(SUM(IF(status = 'CONFIRMED', quantity * unit_price_cents, 0)), 0) AS revenueCents,
                  SUM(status = 'CANCELLED') AS cancelledOrders,
                  COALESCE(SUM(IF(status = 'CANCELLED', quantity, 0)), 0) AS cancelledQuantity
             FROM orders WHERE product_id IN (?) GROUP BY product_id`,
          [productIds],
        );
        return new Map(rows.map((r) => [Number(r['product_id']), r]));
      });
      const found: Mismatch[] = [];
      for (const id of productIds) {
        const expected = want.get(id);
        const res = await http.request({
          path: `/stats/products/${id}`,
          method: 'GET',
          headers: admin.adminHeaders(),
        });
        const got = (await res.body.json()) as Record<string, unknown>;
        const off = PROJECTION_KEYS.filter((k) => Number(got[k] ?? 0) !== Number(expected?.[k] ?? 0));
        if (res.statusCode !== 200 || off.length > 0)
          found.push({
            productId: id,
            detail: `projection ${res.statusCode}: ${off.map((k) => `${k} ${String(got[k])} vs MySQL ${String(expected?.[k] ?? 0)}`).join(', ')}`,
          });
      }
      return found;
    }, timeoutMs),
  );
}

/**
 * The product's actor: a restock of 1 answers with the actor's own stock, which must be the primary's + 1
 * (the probe's unit then counts in every later check).
 */
export async function checkActor(url: string, admin: AdminToken, productId: number): Promise<Mismatch[]> {
  const before = (await readTruth([productId])).get(productId)?.stock;
  return withPools([url], async ([http]) => {
    const res = await http.request({
      path: `/products/${productId}/restock`,
      method: 'POST',
      headers: { 'content-type': 'application/json', ...admin.adminHeaders() },
      body: JSON.stringify({ quantity: 1 }),
    });
    const { stock } = (await res.body.json()) as { stock?: number };
    if (res.statusCode === 200 && before !== undefined && stock === before + 1) return [];
    return [
      { productId, detail: `restock of 1 answered ${res.statusCode}, stock ${stock}; primary ${before}` },
    ];
  });
}

/** The outbox rows of `topics` still unsent once none is left or `timeoutMs` passed. */
export const waitOutboxDrained = (topics: readonly string[], timeoutMs = 60_000): Promise<number> =>
  waitNone('SELECT COUNT(*) AS n FROM outbox WHERE topic IN (?) AND sent_at IS NULL', [topics], timeoutMs);

/** The events of `topics` (from `sinceMs`, else the start) to today's high watermarks, of `key` only if given. */
export async function readEvents(
  kafka: Kafka,
  admin: Admin,
  topics: readonly string[],
  { sinceMs, key, strict }: { sinceMs: number | undefined; key: string | undefined; strict: boolean },
): Promise<EventEnvelope[]> {
  const remaining = new Map<string, number>(); // topic/partition → the last offset to read
  const starts: { topic: string; partition: number; offset: string }[] = [];
  for (const topic of topics) {
    const since = sinceMs === undefined ? [] : await admin.fetchTopicOffsetsByTimestamp(topic, sinceMs);
    for (const p of await admin.fetchTopicOffsets(topic)) {
      const start = Number(since.find((s) => s.partition === p.partition)?.offset ?? p.low);
      if (start < 0 || start >= Number(p.high)) continue;
      remaining.set(`${topic}/${p.partition}`, Number(p.high) - 1);
      starts.push({ topic, partition: p.partition, offset: String(start) });
    }
  }
  const events: EventEnvelope[] = [];
  if (remaining.size === 0) return events;
  const groupId = `bench-check-${process.pid}-${Date.now()}`;
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 500 });
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [...topics], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: ({ topic, partition, message }) => {
        const at = `${topic}/${partition}`;
        const last = remaining.get(at);
        if (last === undefined || Number(message.offset) > last) return Promise.resolve();
        if (message.value !== null && (key === undefined || message.key?.toString() === key))
          events.push(decodeEvent(message.value));
        if (Number(message.offset) >= last) remaining.delete(at);
        if (remaining.size === 0) done();
        return Promise.resolve();
      },
    });
    for (const start of starts) consumer.seek(start);
    const timeout = sleep(90_000).then(() => {
      if (strict)
        throw new Error(`Kafka read-back incomplete after 90 s (${remaining.size} partitions short)`);
    });
    await Promise.race([finished, timeout]);
  } finally {
    await consumer.disconnect().catch(() => undefined);
    await admin.deleteGroups([groupId]).catch(() => undefined);
  }
  return events;
}

/** Each order event, the orders it must tell of (all, or of a status), and what they are called. */
const ORDER_EVENTS = [
  ['order.created', undefined, 'orders'],
  ['order.confirmed', 'CONFIRMED', 'confirmed'],
  ['order.cancelled', 'CANCELLED', 'cancelled'],
] as const;

/** Whether `a` holds no duplicate and the same strings as `b`. */
function sameSet(a: readonly string[], b: readonly string[]) {
  const set = new Set(a);
  return set.size === a.length && a.length === b.length && b.every((x) => set.has(x));
}

/** Per product, the deduplicated events against the primary's orders, and the last stock.changed against its stock. */
export async function compareEvents(
  events: readonly EventEnvelope[],
  productIds: readonly number[],
): Promise<{ mismatches: Mismatch[]; events: number; duplicates: number }> {
  const unique = new Map<string, EventEnvelope>();
  for (const e of events) if (!unique.has(e.eventId)) unique.set(e.eventId, e);
  const { orders, truth } = await withMysql(async (conn) => {
    const [rows] = await conn.query<RowDataPacket[]>(
      'SELECT product_id, id, status FROM orders WHERE product_id IN (?)',
      [productIds],
    );
    return { orders: rows, truth: await readTruth(productIds) };
  });
  const mismatches: Mismatch[] = [];
  for (const id of productIds) {
    const mine = [...unique.values()].filter((e) => e.productId === id);
    const ofType = (type: string) => mine.filter((e) => e.type === type).map((e) => e.orderId ?? '');
    const rows = orders.filter((r) => Number(r['product_id']) === id);
    const idsWith = (status?: string) =>
      rows.filter((r) => status === undefined || r['status'] === status).map((r) => String(r['id']));
    const problems: string[] = [];
    for (const [type, status, what] of ORDER_EVENTS)
      if (!sameSet(ofType(type), idsWith(status)))
        problems.push(`${type} ${ofType(type).length} vs ${idsWith(status).length} ${what}`);
    const stock = mine
      .filter((e): e is EventEnvelope<'stock.changed'> => e.type === 'stock.changed')
      .sort((a, b) => b.data.version - a.data.version)[0];
    const want = truth.get(id);
    if (stock?.data.version !== want?.version || stock?.data.stock !== want?.stock)
      problems.push(
        `last stock.changed ${stock === undefined ? 'none' : `${stock.data.version}:${stock.data.stock}`} vs primary ${want?.version}:${want?.stock}`,
      );
    if (problems.length > 0) mismatches.push({ productId: id, detail: problems.join('; ') });
  }
  return { mismatches, events: unique.size, duplicates: events.length - unique.size };
}

export interface StoresToCheck {
  readonly productIds: readonly number[];
  /** Its url: where the projection is read (`GET /stats`, as `admin`); its nodes: each one's read and Redis prefix. */
  readonly cluster: Pick<Cluster, 'url' | 'redisPrefix' | 'metricsUrls'>;
  readonly admin: AdminToken;
  /** The actor checked too (`checkActor`, first: it sells one unit back). */
  readonly actor?: boolean;
  /**
   * The topics to read back: a run's own (`ownEvents`: from their start, once the outbox sent their rows),
   * else the stack's from `sinceMs`, of the products' keys.
   */
  readonly events: (EventsOf & { readonly own: true }) | { readonly own: false; readonly sinceMs: number };
  /** How long each store may take to agree, ms (default: each check's own). */
  readonly timeoutMs?: number;
}

/** Every store against the primary, for these products: the mismatches per store, and the events read back. */
export async function checkStores(s: StoresToCheck) {
  const { productIds, timeoutMs } = s;
  const actors = s.actor === true ? productIds.map((id) => checkActor(s.cluster.url, s.admin, id)) : [];
  const actor = (await Promise.all(actors)).flat();
  const replica = await checkReplica(productIds, timeoutMs);
  const cache = await checkCache(productIds, s.cluster.redisPrefix, s.cluster.metricsUrls, timeoutMs);
  const events = s.events.own ? s.events : eventsOf();
  const unsent = s.events.own ? await waitOutboxDrained(events.topics) : 0;
  if (!s.events.own) await events.admin.connect();
  let read = { events: 0, duplicates: 0 };
  // One product's events are keyed by its id: a shared topic is read for that key only.
  const key = !s.events.own && productIds.length === 1 ? String(productIds[0]) : undefined;
  const sinceMs = s.events.own ? undefined : s.events.sinceMs;
  const kafka = await settle(async () => {
    const all = await readEvents(events.kafka, events.admin, events.topics, {
      sinceMs,
      key,
      strict: s.events.own,
    });
    const compared = (read = await compareEvents(all, productIds));
    return compared.mismatches;
  }, timeoutMs ?? 60_000).finally(async () => {
    if (!s.events.own) await events.admin.disconnect().catch(() => undefined);
  });
  if (unsent > 0) kafka.push({ productId: 0, detail: `${unsent} outbox rows never sent` });
  const projection = await checkProjection(s.cluster.url, s.admin, productIds, timeoutMs);
  return { actor, replica, cache, kafka, projection, events: read.events, duplicates: read.duplicates };
}
