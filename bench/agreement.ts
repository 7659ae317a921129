/**
 * Reads one product's state from every place that holds it, outside the service: the MySQL replica, the
 * Redis cache entry, the Kafka events (deduplicated by event id) and the sales projection (through the API).
 * The sellout scenario compares each with the primary.
 */
import { Kafka, logLevel } from 'kafkajs';
import { decode } from '@msgpack/msgpack';
import type { RowDataPacket } from 'mysql2/promise';
import type { Dispatcher } from 'undici';
import type { BenchTokens } from './auth.js';
import { connectStoreRedis, storeConfig, withMysql } from './stores.js';

const config = storeConfig();

export interface OrderTotals {
  readonly stock: number;
  readonly confirmedOrders: number;
  readonly confirmedQuantity: number;
  readonly cancelledOrders: number;
  readonly pendingOrders: number;
}

/** Stock and order totals of one product on the replica. */
export function replicaTotals(productId: number): Promise<OrderTotals | undefined> {
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

export interface EventTotals {
  /** Distinct events of the product seen (after dedupe) and duplicates dropped. */
  readonly events: number;
  readonly duplicates: number;
  readonly created: number;
  readonly confirmedOrders: number;
  readonly confirmedQuantity: number;
  readonly cancelledOrders: number;
  /** Stock of the stock.changed event with the highest version, if any. */
  readonly lastStock: number | undefined;
  readonly lastVersion: number | undefined;
}

interface Envelope {
  eventId: string;
  type: string;
  productId: number;
  orderId: string | null;
  data: { quantity?: number; stock?: number; version?: number };
}

/** The product's events on the orders and inventory topics since `sinceMs` (up to the current end). */
export async function kafkaTotals(productId: number, sinceMs: number): Promise<EventTotals> {
  const kafka = new Kafka({
    clientId: 'bench-sellout-check',
    brokers: [...config.kafka.brokers],
    logLevel: logLevel.NOTHING,
  });
  const admin = kafka.admin();
  await admin.connect();
  const topics = [config.kafka.topics.orders, config.kafka.topics.inventory];
  const key = String(productId);
  const seen = new Set<string>();
  let duplicates = 0;
  const confirmed = new Map<string, number>();
  const created = new Set<string>();
  const cancelled = new Set<string>();
  let last: { stock: number; version: number } | undefined;
  const consumer = kafka.consumer({ groupId: `bench-check-${productId}-${Date.now()}` });
  try {
    const starts = new Map<string, { partition: number; offset: string }[]>();
    const ends = new Map<string, Map<number, bigint>>();
    for (const topic of topics) {
      starts.set(topic, await admin.fetchTopicOffsetsByTimestamp(topic, sinceMs));
      ends.set(
        topic,
        new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.high)])),
      );
    }
    const remaining = new Set<string>();
    for (const topic of topics)
      for (const { partition, offset } of starts.get(topic)!)
        if (BigInt(offset) < ends.get(topic)!.get(partition)! && BigInt(offset) >= 0n)
          remaining.add(`${topic}/${partition}`);
    if (remaining.size === 0) return totals();
    await consumer.connect();
    await consumer.subscribe({ topics, fromBeginning: false });
    let done: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => (done = resolve));
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        const end = ends.get(batch.topic)!.get(batch.partition)!;
        for (const message of batch.messages) {
          if (BigInt(message.offset) >= end) break;
          if (message.key?.toString() !== key || message.value === null) continue;
          const event = decode(message.value) as Envelope;
          if (seen.has(event.eventId)) {
            duplicates += 1;
            continue;
          }
          seen.add(event.eventId);
          const order = event.orderId ?? '';
          if (event.type === 'order.created') created.add(order);
          else if (event.type === 'order.confirmed') confirmed.set(order, event.data.quantity ?? 0);
          else if (event.type === 'order.cancelled') cancelled.add(order);
          else if (
            event.type === 'stock.changed' &&
            (last === undefined || (event.data.version ?? 0) > last.version)
          )
            last = { stock: event.data.stock ?? NaN, version: event.data.version ?? 0 };
        }
        if (BigInt(batch.lastOffset()) >= end - 1n) {
          remaining.delete(`${batch.topic}/${batch.partition}`);
          if (remaining.size === 0) done();
        }
        await Promise.resolve();
      },
    });
    for (const topic of topics)
      for (const { partition, offset } of starts.get(topic)!)
        if (BigInt(offset) >= 0n) consumer.seek({ topic, partition, offset });
    await Promise.race([finished, new Promise((resolve) => setTimeout(resolve, 60_000))]);
    return totals();
  } finally {
    await consumer.disconnect().catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
  }

  function totals(): EventTotals {
    return {
      events: seen.size,
      duplicates,
      created: created.size,
      confirmedOrders: confirmed.size,
      confirmedQuantity: [...confirmed.values()].reduce((a, b) => a + b, 0),
      cancelledOrders: cancelled.size,
      lastStock: last?.stock,
      lastVersion: last?.version,
    };
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
