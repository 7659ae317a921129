import { decode, encode } from '@msgpack/msgpack';
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

export function encodeEvent(event: EventEnvelope): Buffer {
  return Buffer.from(encode(event));
}

export function decodeEvent(value: Uint8Array): EventEnvelope {
  const event = decode(value) as EventEnvelope;
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

/** Rows for `INSERT INTO outbox (event_id, topic, event_key, event_type, payload, owner_epoch) VALUES ?`. */
export function outboxRows(
  events: readonly EventEnvelope[],
  topics: Topics,
  ownerEpoch: number,
): unknown[][] {
  return events.map((e) => [
    e.eventId,
    topicOf(e.type, topics),
    String(e.productId),
    e.type,
    encodeEvent(e),
    ownerEpoch,
  ]);
}

export const OUTBOX_INSERT =
  'INSERT INTO outbox (event_id, topic, event_key, event_type, payload, owner_epoch) VALUES ?';
