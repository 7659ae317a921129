import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { Decoder, Encoder } from '@msgpack/msgpack';
import type { Config } from '../config.js';
import { uuidv7 } from '../ids.js';

/** Bumped when an event's shape changes incompatibly; consumers check it. */
export const EVENT_SCHEMA_VERSION = 1;

/** What each event type carries in `data`. */
export interface EventData {
  'inventory.reserved': { quantity: number };
  'order.created': { userId: string; quantity: number; unitPriceCents: number };
  'payment.succeeded': { paymentKey: string; amountCents: number };
  'payment.failed': { paymentKey: string; reason: string };
  'order.confirmed': { quantity: number; unitPriceCents: number };
  'order.cancelled': { quantity: number; unitPriceCents: number; reason: string };
  'inventory.released': { quantity: number };
  'stock.changed': { stock: number; version: number };
}

export type EventType = keyof EventData;

export const EVENT_TYPES = Object.freeze([
  'inventory.reserved',
  'order.created',
  'payment.succeeded',
  'payment.failed',
  'order.confirmed',
  'order.cancelled',
  'inventory.released',
  'stock.changed',
] as const satisfies readonly EventType[]);

/** The message value on Kafka (msgpack). The key is the product id, so events of a product stay in order. */
export type EventEnvelope<T extends EventType = EventType> = {
  [K in T]: {
    eventId: string;
    type: K;
    schemaVersion: number;
    productId: number;
    orderId: string | null;
    /** ISO-8601 time the state change was decided. */
    occurredAt: string;
    data: EventData[K];
  };
}[T];

export type Topics = Config['kafka']['topics'];

/** Events go to a topic per domain: stock movements, order lifecycle, payments. */
export function topicOf(type: EventType, topics: Topics): string {
  if (type.startsWith('order.')) return topics.orders;
  if (type.startsWith('payment.')) return topics.payments;
  return topics.inventory;
}

export function newEvent<K extends EventType>(
  type: K,
  productId: number,
  orderId: string | null,
  data: EventData[K],
  occurredAt: string = new Date().toISOString(),
): EventEnvelope<K> {
  return {
    eventId: uuidv7(),
    type,
    schemaVersion: EVENT_SCHEMA_VERSION,
    productId,
    orderId,
    occurredAt,
    data,
  };
}

/** One encoder and decoder for the process: `encode()` would build (and drop) a new encoder per event. */
const encoder = new Encoder();
const decoder = new Decoder();

/** A Buffer over the encoder's fresh output, without copying it again. */
function encoded(value: unknown): Buffer {
  const bytes = encoder.encode(value);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function encodeEvent(event: EventEnvelope): Buffer {
  return encoded(event);
}

export function decodeEvent(value: Uint8Array): EventEnvelope {
  const event = decoder.decode(value) as EventEnvelope;
  if (
    typeof event !== 'object' ||
    event === null ||
    typeof event.eventId !== 'string' ||
    !EVENT_TYPES.includes(event.type)
  ) {
    throw new Error('not a flash-sale event');
  }
  return event;
}

/**
 * Rows for `OUTBOX_INSERT`: the events packed into one row per (topic, product), in order of first
 * appearance, each row's events in their order (a new row after MAX_PACKED_EVENTS). A row of one event
 * holds it as is; a row of more holds a msgpack array of the encoded events, raw-DEFLATE compressed
 * (`unpackOutbox`): about 4× smaller, and the batch's SQL text, the binlog and the replica all carry it
 * (compressing 80 events takes about 0.1 ms). The row's event id is its first event's. Order per topic
 * and product is kept: within a row by position, across rows by outbox id.
 */
export function outboxRows(
  events: readonly EventEnvelope[],
  topics: Topics,
  ownerEpoch: number,
): unknown[][] {
  const groups = new Map<string, { topic: string; events: EventEnvelope[] }[]>();
  for (const event of events) {
    const topic = topicOf(event.type, topics);
    const group = `${topic}\u0000${event.productId}`;
    let chunks = groups.get(group);
    if (chunks === undefined) groups.set(group, (chunks = []));
    let packed = chunks[chunks.length - 1];
    if (packed === undefined || packed.events.length >= MAX_PACKED_EVENTS)
      chunks.push((packed = { topic, events: [] }));
    packed.events.push(event);
  }
  return [...groups.values()].flat().map(({ topic, events: packed }) => {
    const first = packed[0]!;
    const single = packed.length === 1;
    return [
      first.eventId,
      topic,
      String(first.productId),
      single ? first.type : PACKED_TYPE,
      single ? encodeEvent(first) : deflateRawSync(encoded(packed.map(encodeEvent)), { level: 1 }),
      ownerEpoch,
      packed.length,
    ];
  });
}

/** Most events in one outbox row (~230 bytes each: ~115 KB, well inside the MEDIUMBLOB payload). */
export const MAX_PACKED_EVENTS = 500;

/** `event_type` of an outbox row holding several events. */
export const PACKED_TYPE = 'packed';

export const OUTBOX_INSERT =
  'INSERT INTO outbox (event_id, topic, event_key, event_type, payload, owner_epoch, event_count) VALUES ?';

/** The encoded events of an outbox row, in order: the payload itself, or its packed (compressed) array. */
export function unpackOutbox(payload: Buffer, eventCount: number): Uint8Array[] {
  if (eventCount <= 1) return [payload];
  const list = decoder.decode(inflateRawSync(payload));
  if (!Array.isArray(list) || list.length !== eventCount || !list.every((v) => v instanceof Uint8Array)) {
    throw new Error(`outbox row: expected a packed array of ${eventCount} encoded events`);
  }
  return list;
}
