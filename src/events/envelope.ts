import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { Decoder, Encoder } from '@msgpack/msgpack';
import type { Config } from '../config.js';
import { uuidv7 } from '../ids.js';
import { AppError } from '../errors.js';
import { RecordEncoder } from './record-encoder.js';

/** Bumped when an event's shape changes incompatibly; consumers check it. */
export const EVENT_SCHEMA_VERSION = 1;

/** Kafka header of the request id that made an event (README "Logs"); the relay sets it from the outbox. */
export const REQUEST_ID_HEADER = 'x-request-id';

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
/** The same bytes as `encoder` for an event's shape, ~3× cheaper (src/events/record-encoder.ts). */
const recordEncoder = new RecordEncoder();

/** A Buffer over the encoder's fresh output, without copying it again. */
function encoded(value: unknown): Buffer {
  const bytes = encoder.encode(value);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function encodeEvent(event: EventEnvelope): Buffer {
  return recordEncoder.encode(event) ?? encoded(event);
}

export function decodeEvent(value: Uint8Array): EventEnvelope {
  const event = decoder.decode(value) as EventEnvelope;
  if (
    typeof event !== 'object' ||
    event === null ||
    typeof event.eventId !== 'string' ||
    !EVENT_TYPES.includes(event.type)
  ) {
    throw new AppError('MALFORMED_EVENT', 'not a flash-sale event');
  }
  return event;
}

/**
 * Rows for `OUTBOX_INSERT`: the events of one commit packed into one row per topic, in order of first
 * appearance, each row's events in their order (a new row after MAX_PACKED_EVENTS). A row of one event
 * holds it as is; a row of more holds a msgpack array of the encoded events, raw-DEFLATE compressed
 * from COMPRESS_FROM_BYTES on (`unpackOutbox`; the `-plain` types below it): about 4× smaller, and the commit's SQL text, the binlog and the replica all carry it
 * (compressing 80 events takes about 0.1 ms). A row whose events are all of one product is keyed by it
 * (`event_key`, type PACKED_TYPE); a row of several products (a commit cycle of many) holds each event's
 * key beside it (type KEYED_TYPE, `event_key` KEYED_ROW_KEY). The row's event id is its first event's.
 * Order per product is kept: within a row by position, across rows by outbox id (a product's next
 * commit starts after its previous one has committed).
 *
 * `requestIds[i]` is the request id of `events[i]` (README "Logs"): a row's go into `request_ids`
 * (`requestIdsColumn`), outside the event's bytes, so the relay sets the Kafka header without decoding.
 */
export function outboxRows(
  events: readonly EventEnvelope[],
  topics: Topics,
  ownerEpoch: number,
  requestIds?: readonly (string | undefined)[],
): unknown[][] {
  // Each row's events as positions in `events`, so their request ids come along.
  const byTopic = new Map<string, number[][]>();
  for (let i = 0; i < events.length; i += 1) {
    const topic = topicOf(events[i]!.type, topics);
    let chunks = byTopic.get(topic);
    if (chunks === undefined) byTopic.set(topic, (chunks = []));
    let packed = chunks[chunks.length - 1];
    if (packed === undefined || packed.length >= MAX_PACKED_EVENTS) chunks.push((packed = []));
    packed.push(i);
  }
  const rows: unknown[][] = [];
  for (const [topic, chunks] of byTopic) {
    for (const positions of chunks) {
      const packed = positions.map((i) => events[i]!);
      const first = packed[0]!;
      const oneProduct = packed.every((e) => e.productId === first.productId);
      let type: string = first.type;
      let payload: Buffer;
      if (packed.length === 1) payload = encodeEvent(first);
      else {
        const list = encoded(
          oneProduct ? packed.map(encodeEvent) : packed.flatMap((e) => [String(e.productId), encodeEvent(e)]),
        );
        // A small list is stored as it is: deflate's set-up costs more than the few bytes it would save.
        const deflate = list.byteLength >= COMPRESS_FROM_BYTES;
        type = oneProduct
          ? deflate
            ? PACKED_TYPE
            : PACKED_PLAIN_TYPE
          : deflate
            ? KEYED_TYPE
            : KEYED_PLAIN_TYPE;
        payload = deflate ? deflateRawSync(list, { level: 1 }) : list;
      }
      const key = oneProduct ? String(first.productId) : KEYED_ROW_KEY;
      const ids = requestIds === undefined ? null : requestIdsColumn(positions, requestIds);
      rows.push([first.eventId, topic, key, type, payload, ownerEpoch, packed.length, ids]);
    }
  }
  return rows;
}

/**
 * `request_ids` of a row: its events' request ids in order, comma-separated ('' for an event without
 * one; a sane request id has no comma), or null when none has one.
 */
function requestIdsColumn(
  positions: readonly number[],
  requestIds: readonly (string | undefined)[],
): string | null {
  if (positions.length === 1) return requestIds[positions[0]!] ?? null;
  let any = false;
  const ids = positions.map((i) => {
    const id = requestIds[i];
    if (id === undefined) return '';
    any = true;
    return id;
  });
  return any ? ids.join(',') : null;
}

/** Packed lists of fewer bytes are stored uncompressed (a purchase's two events at a low rate). */
export const COMPRESS_FROM_BYTES = 1_024;

/** Most events in one outbox row (~230 bytes each: ~115 KB, well inside the MEDIUMBLOB payload). */
export const MAX_PACKED_EVENTS = 500;

/** `event_type` of an outbox row holding several events of one product (its `event_key`). */
export const PACKED_TYPE = 'packed';

/** `event_type` of an outbox row holding events of several products, each with its key. */
export const KEYED_TYPE = 'keyed';

/** PACKED_TYPE's list stored uncompressed (under COMPRESS_FROM_BYTES). */
export const PACKED_PLAIN_TYPE = 'packed-plain';

/** KEYED_TYPE's list stored uncompressed (under COMPRESS_FROM_BYTES). */
export const KEYED_PLAIN_TYPE = 'keyed-plain';

/** `event_key` of a KEYED_TYPE row: its events' keys are in the payload. */
export const KEYED_ROW_KEY = '*';

export const OUTBOX_INSERT =
  'INSERT INTO outbox (event_id, topic, event_key, event_type, payload, owner_epoch, event_count, request_ids) VALUES ?';

/** An outbox row as read back: what `unpackOutbox` needs. */
export interface StoredOutboxRow {
  payload: Buffer;
  eventType: string;
  eventKey: string;
  eventCount: number;
  /** The `request_ids` column (`outboxRows`); absent or null: no event of the row has one. */
  requestIds?: string | null;
}

/** Reads the columns `unpackOutbox` needs from a row selected with them (`OUTBOX_UNPACK_COLUMNS`). */
export function storedOutboxRow(r: Record<string, unknown>): StoredOutboxRow {
  return {
    payload: r['payload'] as Buffer,
    eventType: String(r['event_type']),
    eventKey: String(r['event_key']),
    eventCount: Number(r['event_count']),
    requestIds: typeof r['request_ids'] === 'string' ? r['request_ids'] : null,
  };
}

/** The outbox columns `storedOutboxRow` reads. */
export const OUTBOX_UNPACK_COLUMNS = 'event_key, event_type, payload, event_count, request_ids';

/** One event of an outbox row: its Kafka key (the product id), its encoded bytes and its request id. */
export interface OutboxEntry {
  key: string;
  value: Uint8Array;
  /** Sent as the Kafka header `x-request-id`; absent for an event without one. */
  requestId?: string;
}

/** The events of an outbox row, in order, each with its key: a single event, a packed or a keyed array. */
export function unpackOutbox(row: StoredOutboxRow): OutboxEntry[] {
  const { payload, eventType, eventKey, eventCount } = row;
  if (eventCount <= 1) {
    const requestId = row.requestIds;
    return [requestId ? { key: eventKey, value: payload, requestId } : { key: eventKey, value: payload }];
  }
  const keyed = eventType === KEYED_TYPE || eventType === KEYED_PLAIN_TYPE;
  const plain = eventType === PACKED_PLAIN_TYPE || eventType === KEYED_PLAIN_TYPE;
  const list = decoder.decode(plain ? payload : inflateRawSync(payload));
  const size = keyed ? eventCount * 2 : eventCount;
  if (!Array.isArray(list) || list.length !== size) {
    throw new AppError(
      'MALFORMED_EVENT',
      `outbox row: expected a ${keyed ? 'keyed' : 'packed'} array of ${eventCount} events`,
    );
  }
  // Ids that do not line up with the events (a bug) are dropped: a header must never hold the row back.
  const ids = row.requestIds?.split(',');
  const requestIds = ids?.length === eventCount ? ids : undefined;
  const entries: OutboxEntry[] = [];
  for (let i = 0, n = 0; i < list.length; i += keyed ? 2 : 1, n += 1) {
    const key: unknown = keyed ? list[i] : eventKey;
    const value: unknown = keyed ? list[i + 1] : list[i];
    if (typeof key !== 'string' || !(value instanceof Uint8Array))
      throw new AppError('MALFORMED_EVENT', 'outbox row: an entry is not an encoded event with its key');
    const requestId = requestIds?.[n];
    entries.push(requestId ? { key, value, requestId } : { key, value });
  }
  return entries;
}
