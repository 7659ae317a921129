// The events' msgpack writer (src/events/record-encoder.ts) against @msgpack/msgpack's own Encoder: the same
// bytes for every record of the shape it takes (random ones, and every boundary of the integer and string
// forms), and a refusal (undefined) for anything else, which encodeEvent then hands to the library. Pure unit
// test (no servers).
import t from 'tap';
import { decode, Encoder } from '@msgpack/msgpack';
import { decodeEvent, encodeEvent, newEvent } from '../../src/events/envelope.js';
import { RecordEncoder } from '../../src/events/record-encoder.js';

const reference = new Encoder();
const bytesOf = (value: unknown) => Buffer.from(reference.encode(value));

/** A seeded generator (mulberry32), so a failure names a record that can be made again. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** Every boundary of msgpack's integer forms, both sides, and floats. */
const NUMBERS = [
  0,
  -0,
  1,
  0x7f,
  0x80,
  0xff,
  0x100,
  0xffff,
  0x10000,
  0xffffffff,
  -1,
  -0x20,
  -0x21,
  -0x80,
  -0x81,
  -0x8000,
  -0x8001,
  -0x80000000,
  0.5,
  -2.25,
  1e300,
  Number.MIN_VALUE,
  19.99,
];

/** Strings of every header form (fixstr, str 8, str 16) in ASCII, 2-, 3- and 4-byte UTF-8. */
function randomString(next: () => number): string {
  const lengths = [0, 1, 31, 32, 36, 255, 256, 300, 70_000];
  const length = lengths[Math.floor(next() * lengths.length)]!;
  const alphabets = ['abcXYZ-0123456789:.', 'é', '€', '😀', 'aé€😀'];
  const alphabet = [...alphabets[Math.floor(next() * alphabets.length)]!];
  let s = '';
  while (s.length < length) s += alphabet[Math.floor(next() * alphabet.length)]!;
  return s;
}

function randomRecord(next: () => number, depth: number): Record<string, unknown> {
  const record: Record<string, unknown> = {};
  const size = Math.floor(next() * 8);
  for (let i = 0; i < size; i += 1) {
    const key = next() < 0.8 ? `k${Math.floor(next() * 6)}` : randomString(next);
    const kind = Math.floor(next() * (depth < 3 ? 7 : 6));
    record[key] =
      kind === 0
        ? NUMBERS[Math.floor(next() * NUMBERS.length)]
        : kind === 1
          ? Math.floor((next() - 0.5) * 2 ** 33)
          : kind === 2
            ? randomString(next)
            : kind === 3
              ? next() < 0.5
              : kind === 4
                ? null
                : kind === 5
                  ? undefined
                  : randomRecord(next, depth + 1);
  }
  return record;
}

t.test('the same bytes as @msgpack/msgpack for records of the shape it takes', async (t) => {
  const encoder = new RecordEncoder();
  const next = random(20261206);
  let compared = 0;
  let refused = 0;
  for (let i = 0; i < 3_000; i += 1) {
    const record = randomRecord(next, 1);
    const mine = encoder.encode(record);
    if (mine === undefined) {
      refused += 1; // integers past ±2^32 (kind 1): the library's uint64 / int64 forms are left to it
      continue;
    }
    compared += 1;
    if (!mine.equals(bytesOf(record))) {
      t.fail(`record ${i} differs: ${JSON.stringify(record).slice(0, 300)}`);
      return;
    }
  }
  t.ok(compared > 2_000, `${compared} records compared byte for byte (${refused} refused)`);
  for (const n of NUMBERS) t.same(encoder.encode({ n }), bytesOf({ n }), `the number ${n}`);
});

t.test('each call returns bytes of its own; keys met again are written the same', async (t) => {
  const encoder = new RecordEncoder();
  const first = encoder.encode({ eventId: 'a', data: { quantity: 1 } })!;
  const copy = Buffer.from(first);
  const second = encoder.encode({ eventId: 'bb', data: { quantity: 300 } })!;
  t.ok(first.equals(copy), 'a later call does not overwrite an earlier result');
  t.same(decode(second), { eventId: 'bb', data: { quantity: 300 } });
  t.ok(second.equals(bytesOf({ eventId: 'bb', data: { quantity: 300 } })));
});

t.test('a shape it does not take is refused, not written differently', async (t) => {
  const encoder = new RecordEncoder();
  const refused: [string, object][] = [
    ['an array', { list: [1, 2] }],
    ['an array at the top', [1]],
    ['a binary', { payload: Buffer.from('x') }],
    ['a Date', { at: new Date(0) }],
    ['a bigint', { n: 1n }],
    ['an integer past 2^32', { n: 2 ** 32 }],
    ['an integer under -2^31', { n: -(2 ** 31) - 1 }],
    ['NaN', { n: Number.NaN }],
    ['Infinity', { n: Number.POSITIVE_INFINITY }],
    ['a lone surrogate', { s: 'a\ud800b' }],
    ['a class instance', { v: new (class Point {})() }],
    ['16 keys', Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, i]))],
    ['a function', { f: () => 1 }],
  ];
  for (const [what, value] of refused) t.equal(encoder.encode(value), undefined, what);
  let deep: Record<string, unknown> = { leaf: 1 };
  for (let i = 0; i < 10; i += 1) deep = { deep };
  t.equal(encoder.encode(deep), undefined, 'nested deeper than 8');
  t.ok(
    encoder.encode({ after: 'a refusal' })!.equals(bytesOf({ after: 'a refusal' })),
    'and the next one is right',
  );
});

t.test('encodeEvent: every event type round-trips, the same bytes as the library', async (t) => {
  const orderId = '0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000';
  const events = [
    newEvent('inventory.reserved', 7, orderId, { quantity: 2 }),
    newEvent('order.created', 7, orderId, { userId: 'Zoë 😀', quantity: 2, unitPriceCents: 1999 }),
    newEvent('payment.succeeded', 7, orderId, { paymentKey: `pay-${orderId}`, amountCents: 3998 }),
    newEvent('payment.failed', 7, orderId, { paymentKey: 'k', reason: 'x'.repeat(400) }),
    newEvent('order.confirmed', 7, orderId, { quantity: 2, unitPriceCents: 1999 }),
    newEvent('order.cancelled', 7, orderId, { quantity: 2, unitPriceCents: 1999, reason: 'declined' }),
    newEvent('inventory.released', 7, orderId, { quantity: 2 }),
    newEvent('stock.changed', 7, null, { stock: 999_998, version: 70_000 }),
  ];
  for (const event of events) {
    const bytes = encodeEvent(event);
    t.ok(bytes.equals(bytesOf(event)), `${event.type}: the library's bytes`);
    t.same(decodeEvent(bytes), event, `${event.type}: decodes to the event`);
  }
  const odd = { ...events[0]!, data: { quantity: 2 ** 40 } } as (typeof events)[0];
  t.same(decodeEvent(encodeEvent(odd)), odd, 'a value the writer refuses goes through the library');
});
