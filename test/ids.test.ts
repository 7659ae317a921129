import t from 'tap';
import { uuidv7 } from '../src/ids.js';

t.test(
  'uuidv7: unique, time-ordered, version 7 and RFC variant, across refills of the random pool',
  async (t) => {
    const now = Date.now();
    const ids = Array.from({ length: 5_000 }, (_, i) => uuidv7(now + Math.floor(i / 1_000)));
    t.equal(new Set(ids).size, ids.length, 'no id repeats');
    t.same([...ids].sort(), ids, 'ids made in order sort in that order');
    const shape = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    t.ok(
      ids.every((id) => shape.test(id)),
      'every id has version 7 and the RFC 9562 variant',
    );
    t.equal(
      parseInt(ids[0]!.replace(/-/g, '').slice(0, 12), 16),
      now,
      'the first 48 bits are the millisecond',
    );
    const tails = new Set(ids.map((id) => id.slice(24)));
    t.ok(tails.size > 4_990, 'the random tails differ (the pool is consumed, not reused)');
  },
);
