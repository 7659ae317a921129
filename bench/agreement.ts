/**
 * Reads one product's state from every place that holds it, outside the service: the MySQL replica, the
 * Redis cache entry, the Kafka events (deduplicated by event id) and the sales projection (through the API).
 * The sellout scenario compares each with the primary.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import type { RowDataPacket } from 'mysql2/promise';
import type { Dispatcher } from 'undici';
import { decodeEvent, type EventEnvelope } from '../src/events/envelope.js';
import { createKafka, type Admin, type Kafka } from '../src/storage/kafka.js';
import type { BenchTokens } from './auth.js';
import { connectStoreRedis, storeConfig, withMysql } from './stores.js';

const config = storeConfig();

/** Stock and order totals of one product on the replica. */
export function replicaTotals(productId: number) {
  return withMysql(async (conn) => {
    const [products] = await conn.query<RowDataPacket[]>('SELECT stock FROM products WHERE id = ?', [
      productId,
    ]);
    if (products[0] === undefined) return undefined;
    const [rows] = await conn.query<RowDataPacket[]>(
      'SELECT status, COUNT(*) AS n, COALESCE(SUM(quantity), 0) AS q FROM orders WHERE product_id = ? GROUP BY status',
      [productId],
    );
    const by = (status: string) => rows.find((row) => row['status'] === status);
    return {
      stock: Number(products[0]['stock']),
      confirmedOrders: Number(by('CONFIRMED')?.['n'] ?? 0),
      confirmedQuantity: Number(by('CONFIRMED')?.['q'] ?? 0),
      cancelledOrders: Number(by('CANCELLED')?.['n'] ?? 0),
      pendingOrders: Number(by('PENDING')?.['n'] ?? 0),
    };
  }, 'replica');
}

/** The cached stock entry (`<prefix>stock:<id>` = `version:stock`), or undefined when absent (expired). */
export async function cachedStock(
  prefix: string,
  productId: number,
): Promise<{ stock: number; version: number } | undefined> {
  const redis = await connectStoreRedis();
  try {
    const value = await redis.get(`${prefix}stock:${productId}`);
    if (value === null) return undefined;
    const [version, stock] = value.split(':');
    return { version: Number(version), stock: Number(stock) };
  } finally {
    redis.disconnect();
  }
}

/** The events of `topics` (from `sinceMs`, else the start) to today's high watermarks, of `key` only if given. */
export async function readEvents(
  kafka: Kafka,
  admin: Admin,
  topics: readonly string[],
  { sinceMs, key, timeoutMs = 90_000, strict = true }: ReadSettings = {},
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
    const timeout = sleep(timeoutMs).then(() => {
      if (strict)
        throw new Error(
          `Kafka read-back incomplete after ${timeoutMs / 1000} s (${remaining.size} partitions short)`,
        );
    });
    await Promise.race([finished, timeout]);
  } finally {
    await consumer.disconnect().catch(() => undefined);
    await admin.deleteGroups([groupId]).catch(() => undefined);
  }
  return events;
}

interface ReadSettings {
  readonly sinceMs?: number;
  readonly key?: string;
  readonly timeoutMs?: number;
  readonly strict?: boolean;
}

/** The product's events on the orders and inventory topics since `sinceMs` (up to the current end), deduplicated. */
export async function kafkaTotals(productId: number, sinceMs: number) {
  const kafka = createKafka(config, pino({ level: 'silent' }));
  const admin = kafka.admin();
  await admin.connect();
  try {
    const topics = [config.kafka.topics.orders, config.kafka.topics.inventory];
    const read = await readEvents(kafka, admin, topics, {
      sinceMs,
      key: String(productId),
      timeoutMs: 60_000,
      strict: false,
    });
    const unique = new Map<string, EventEnvelope>();
    for (const e of read) if (!unique.has(e.eventId)) unique.set(e.eventId, e);
    const events = [...unique.values()];
    const orders = (type: string) =>
      new Set(events.filter((e) => e.type === type).map((e) => e.orderId ?? ''));
    const confirmed = new Map(
      events.flatMap((e) =>
        e.type === 'order.confirmed' ? [[e.orderId ?? '', e.data.quantity] as const] : [],
      ),
    );
    const last = events
      .flatMap((e) => (e.type === 'stock.changed' ? [e.data] : []))
      .reduce<{ stock: number; version: number } | undefined>(
        (a, d) => (a === undefined || d.version > a.version ? d : a),
        undefined,
      );
    return {
      events: unique.size,
      duplicates: read.length - unique.size,
      created: orders('order.created').size,
      confirmedOrders: confirmed.size,
      confirmedQuantity: [...confirmed.values()].reduce((a, b) => a + b, 0),
      cancelledOrders: orders('order.cancelled').size,
      lastStock: last?.stock,
      lastVersion: last?.version,
    };
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/** `GET /stats/products/:id` as the bench's admin (the sales projection, fed by the Kafka events). */
export async function projectionTotals(
  http: Dispatcher,
  tokens: BenchTokens,
  productId: number,
): Promise<{ confirmedOrders: number; soldQuantity: number; cancelledOrders: number } | undefined> {
  const res = await http.request({
    path: `/stats/products/${productId}`,
    method: 'GET',
    headers: tokens.adminHeaders(),
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) return undefined;
  return JSON.parse(text) as { confirmedOrders: number; soldQuantity: number; cancelledOrders: number };
}

/** Polls `read` until `agrees(value)` or the timeout; returns the last value and whether it agreed. */
export async function until<T>(
  read: () => Promise<T>,
  agrees: (value: T) => boolean,
  timeoutMs: number,
): Promise<{ value: T; agreed: boolean; waitedMs: number }> {
  const start = Date.now();
  for (;;) {
    const value = await read();
    if (agrees(value)) return { value, agreed: true, waitedMs: Date.now() - start };
    if (Date.now() - start > timeoutMs) return { value, agreed: false, waitedMs: Date.now() - start };
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
}
