/**
 * The chaos run's checks against the MySQL primary's truth, each waiting (bounded) for its store: the
 * replica's rows, the Redis cache and each node's read, the Kafka events, the sales projection.
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { Pool } from 'undici';
import type { EventEnvelope } from '../../src/events/envelope.js';
import type { Config } from '../../src/config.js';
import { until } from '../agreement.js';
import { waitNone } from '../verify.js';
import type { BenchTokens } from '../auth.js';
import { connectStoreRedis, withMysql } from '../stores.js';
import type { StockTruth } from './subscribers.js';

export interface Mismatch {
  readonly productId: number;
  readonly detail: string;
}

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

/** Products whose Redis stock (while it lives) or read on any node is not the primary's (up to `timeoutMs`). */
export async function checkCache(
  productIds: readonly number[],
  redisPrefix: string,
  nodeUrls: readonly string[],
  timeoutMs = 45_000,
): Promise<Mismatch[]> {
  const redis = await connectStoreRedis();
  const nodes = nodeUrls.map((url) => new Pool(url, { connections: 4 }));
  try {
    return await settle(async () => {
      const truth = await readTruth(productIds);
      const cached = await redis.mget(...productIds.map((id) => `${redisPrefix}stock:${id}`));
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
    }, timeoutMs);
  } finally {
    redis.disconnect();
    await Promise.all(nodes.map((n) => n.close()));
  }
}

const PROJECTION_KEYS = [
  'confirmedOrders',
  'soldQuantity',
  'revenueCents',
  'cancelledOrders',
  'cancelledQuantity',
];

/** Products whose sales projection (`GET /stats/products/:id`) is not the primary's orders. */
export async function checkProjection(
  url: string,
  tokens: BenchTokens,
  productIds: readonly number[],
  timeoutMs = 60_000,
): Promise<Mismatch[]> {
  const http = new Pool(url, { connections: 4 });
  try {
    return await settle(async () => {
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
          headers: tokens.adminHeaders(),
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
    }, timeoutMs);
  } finally {
    await http.close();
  }
}

/** Waits until the outbox holds no unsent row of `topics`; the rows still unsent. */
export const waitOutboxDrained = (topics: readonly string[], timeoutMs = 60_000): Promise<number> =>
  waitNone('SELECT COUNT(*) AS n FROM outbox WHERE topic IN (?) AND sent_at IS NULL', [topics], timeoutMs);

/** Each order event, the orders it must tell of (all, or of a status), and what they are called. */
const ORDER_EVENTS = [
  ['order.created', undefined, 'orders'],
  ['order.confirmed', 'CONFIRMED', 'confirmed'],
  ['order.cancelled', 'CANCELLED', 'cancelled'],
] as const;

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
    const sameSet = (a: readonly string[], b: readonly string[]) => {
      const sa = new Set(a);
      return sa.size === a.length && a.length === b.length && b.every((x) => sa.has(x));
    };
    const rows = orders.filter((r) => Number(r['product_id']) === id);
    const idsWith = (status?: string) =>
      rows.filter((r) => status === undefined || r['status'] === status).map((r) => String(r['id']));
    const problems: string[] = [];
    for (const [type, status, what] of ORDER_EVENTS)
      if (!sameSet(ofType(type), idsWith(status)))
        problems.push(`${type} ${ofType(type).length} vs ${idsWith(status).length} ${what}`);
    const stock = mine
      .filter((e): e is EventEnvelope<'stock.changed'> => e.type === 'stock.changed')
      .reduce<EventEnvelope<'stock.changed'> | undefined>(
        (last, e) => (last === undefined || e.data.version > last.data.version ? e : last),
        undefined,
      );
    const want = truth.get(id);
    if (stock?.data.version !== want?.version || stock?.data.stock !== want?.stock)
      problems.push(
        `last stock.changed ${stock === undefined ? 'none' : `${stock.data.version}:${stock.data.stock}`} vs primary ${want?.version}:${want?.stock}`,
      );
    if (problems.length > 0) mismatches.push({ productId: id, detail: problems.join('; ') });
  }
  return { mismatches, events: unique.size, duplicates: events.length - unique.size };
}

/** The environment giving the run's nodes Kafka topics, a relay lock and a projection group of their own. */
export function ownEventsEnv(tag: string): Record<string, string> {
  return {
    KAFKA_TOPIC_INVENTORY: `${tag}.inventory`,
    KAFKA_TOPIC_ORDERS: `${tag}.orders`,
    KAFKA_TOPIC_PAYMENTS: `${tag}.payments`,
    OUTBOX_RELAY_LOCK: `flashsale.outbox-relay.${tag}`.slice(0, 64),
    PROJECTION_GROUP_ID: `${tag}-projection`,
  };
}

/** The run's topics as the nodes' config names them. */
export function topicsOf(config: Config): string[] {
  return Object.values(config.kafka.topics);
}
