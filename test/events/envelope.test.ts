// Outbox rows: a commit's events packed per topic, small lists stored plain, large ones deflated; each
// unpacks to the same events, in order, with their keys. Pure unit test (no servers).
import { deflateRawSync } from 'node:zlib';
import t from 'tap';
import { Encoder } from '@msgpack/msgpack';
import {
  COMPRESS_FROM_BYTES,
  decodeEvent,
  encodeEvent,
  KEYED_PLAIN_TYPE,
  KEYED_TYPE,
  newEvent,
  outboxRows,
  PACKED_PLAIN_TYPE,
  PACKED_TYPE,
  unpackOutbox,
  type EventEnvelope,
} from '../../src/events/envelope.js';

const TOPICS = { inventory: 't.inventory', orders: 't.orders', payments: 't.payments' };

/** The row as `storedOutboxRow` would read it back: [eventId, topic, key, type, payload, epoch, count]. */
function unpack(row: unknown[]): { key: string; event: EventEnvelope }[] {
  const [, , eventKey, eventType, payload, , eventCount] = row as [
    string,
    string,
    string,
    string,
    Buffer,
    number,
    number,
  ];
  return unpackOutbox({ payload, eventType, eventKey, eventCount }).map(({ key, value }) => ({
    key,
    event: decodeEvent(value),
  }));
}

const reserved = (productId: number, quantity = 1) =>
  newEvent('inventory.reserved', productId, null, { quantity });

t.test('a purchase at a low rate: two events of one product in a plain packed row', async (t) => {
  const events = [reserved(7), newEvent('stock.changed', 7, null, { stock: 9, version: 3 })];
  const rows = outboxRows(events, TOPICS, 1);
  t.equal(rows.length, 1, 'one row for the inventory topic');
  t.equal(rows[0]![3], PACKED_PLAIN_TYPE);
  t.ok((rows[0]![4] as Buffer).byteLength < COMPRESS_FROM_BYTES);
  t.same(
    unpack(rows[0]!).map((e) => [e.key, e.event.eventId]),
    events.map((e) => ['7', e.eventId]),
    'the events, in order, keyed by their product',
  );
});

t.test('a small cycle of two products: a plain keyed row', async (t) => {
  const events = [reserved(1), reserved(2), reserved(1, 3)];
  const [row] = outboxRows(events, TOPICS, 1);
  t.equal(row![2], '*', 'keyed row: keys in the payload');
  t.equal(row![3], KEYED_PLAIN_TYPE);
  t.same(
    unpack(row!).map((e) => [e.key, e.event.eventId]),
    events.map((e) => [String(e.productId), e.eventId]),
  );
});

t.test('lists from COMPRESS_FROM_BYTES on are deflated, and unpack the same', async (t) => {
  const one = Array.from({ length: 40 }, () => reserved(5));
  const many = Array.from({ length: 40 }, (_, i) => reserved(100 + (i % 3)));
  const [packed] = outboxRows(one, TOPICS, 1);
  const [keyed] = outboxRows(many, TOPICS, 1);
  t.equal(packed![3], PACKED_TYPE);
  t.equal(keyed![3], KEYED_TYPE);
  t.ok((packed![4] as Buffer).byteLength < one.length * 100, 'compressed');
  t.same(
    unpack(packed!).map((e) => e.event.eventId),
    one.map((e) => e.eventId),
  );
  t.same(
    unpack(keyed!).map((e) => [e.key, e.event.eventId]),
    many.map((e) => [String(e.productId), e.eventId]),
  );
});

t.test('a small deflated row written before plain rows existed still unpacks', async (t) => {
  const events = [reserved(3), reserved(3)];
  const payload = deflateRawSync(new Encoder().encode(events.map(encodeEvent)), { level: 1 });
  const unpacked = unpackOutbox({ payload, eventType: PACKED_TYPE, eventKey: '3', eventCount: 2 });
  t.same(
    unpacked.map((e) => decodeEvent(e.value).eventId),
    events.map((e) => e.eventId),
  );
});

t.test('a plain row whose count disagrees with its list is refused', async (t) => {
  const [row] = outboxRows([reserved(4), reserved(4)], TOPICS, 1);
  t.throws(
    () =>
      unpackOutbox({
        payload: row![4] as Buffer,
        eventType: PACKED_PLAIN_TYPE,
        eventKey: '4',
        eventCount: 3,
      }),
    /expected a packed array of 3 events/,
  );
});

t.test('request ids ride beside their events in request_ids, and unpack to each event', async (t) => {
  const one = outboxRows([reserved(5)], TOPICS, 1, ['abc-123']);
  t.equal(one[0]![7], 'abc-123', 'a row of one event: its id');
  t.same(
    unpackOutbox({
      payload: one[0]![4] as Buffer,
      eventType: 'x',
      eventKey: '5',
      eventCount: 1,
      requestIds: 'abc-123',
    })[0]?.requestId,
    'abc-123',
  );
  // A cycle of three products (keyed), one event without an id, and enough of them to be deflated.
  const events = Array.from({ length: 40 }, (_, i) => reserved(1 + (i % 3), i + 1));
  const ids = events.map((_, i) => (i === 7 ? undefined : `req-${i}`));
  const [row] = outboxRows(events, TOPICS, 1, ids);
  t.equal(row![3], KEYED_TYPE);
  t.equal((row![7] as string).split(',').length, 40, 'one place per event');
  const entries = unpackOutbox({
    payload: row![4] as Buffer,
    eventType: row![3] as string,
    eventKey: row![2] as string,
    eventCount: row![6] as number,
    requestIds: row![7] as string,
  });
  t.same(
    entries.map((e) => e.requestId),
    ids,
    'each event its own id, none for the one without',
  );
  t.same(
    entries.map((e) => decodeEvent(e.value).eventId),
    events.map((e) => e.eventId),
  );
  t.equal(
    outboxRows(
      events,
      TOPICS,
      1,
      events.map(() => undefined),
    )[0]![7],
    null,
    'no id at all: NULL',
  );
  t.equal(outboxRows(events, TOPICS, 1)[0]![7], null, 'no ids given: NULL');
  const misaligned = unpackOutbox({
    payload: row![4] as Buffer,
    eventType: row![3] as string,
    eventKey: row![2] as string,
    eventCount: row![6] as number,
    requestIds: 'a,b',
  });
  t.ok(
    misaligned.every((e) => e.requestId === undefined),
    'ids that do not line up are dropped, the events still unpack',
  );
});
