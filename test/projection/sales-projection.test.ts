// The sales projection against the real Kafka and MariaDB: events (with duplicates, out-of-order
// created/confirmed, garbage) produced raw to topics of the test's own, then the whole pipeline
// outbox -> relay -> Kafka -> projection.
import { encode } from '@msgpack/msgpack';
import t, { type Test } from 'tap';
import { encodeEvent, newEvent, type EventEnvelope } from '../../src/events/envelope.js';
import { OutboxRelay } from '../../src/events/outbox-relay.js';
import { SalesProjection } from '../../src/projection/sales-projection.js';
import { readProductSales } from '../../src/projection/sales-store.js';
import type { RowDataPacket } from '../../src/storage/mysql.js';
import { uniq } from '../helpers/isolation.js';
import { silentLogger } from '../helpers/isolation.js';
import {
  eventsStack,
  insertOutbox,
  topicsOnEveryBroker,
  uniqueProductId,
  waitFor,
  type EventsStack,
} from '../helpers/events.js';

/** The test's topics, created and known to every broker before anything produces or consumes. */
async function readyStack(t: Test): Promise<EventsStack> {
  const stack = await eventsStack(t);
  await topicsOnEveryBroker(stack);
  return stack;
}

function startProjection(t: Test, stack: EventsStack): SalesProjection {
  const groupId = uniq('test-sales-projection-');
  const projection = new SalesProjection({
    kafka: stack.kafka,
    primary: stack.mysql.primary,
    topics: stack.config.kafka,
    logger: silentLogger,
    groupId,
    fetchWaitMs: 500,
  });
  t.teardown(async () => {
    await projection.stop();
    const admin = stack.kafka.admin();
    await admin.connect();
    await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.disconnect();
  });
  projection.start();
  return projection;
}

/** Deletes what the projection wrote for these products (its tables are shared by all tests). */
function cleanupProducts(t: Test, stack: EventsStack, products: number[]): void {
  t.teardown(async () => {
    for (const table of ['product_sales', 'order_history', 'projection_events'])
      await stack.mysql.primary.query(`DELETE FROM ${table} WHERE product_id IN (?)`, [products]);
  });
}

const handled = (p: SalesProjection) => {
  const s = p.stats();
  return s.applied + s.duplicates + s.skipped + s.ignored;
};

async function snapshot(stack: EventsStack, products: number[]) {
  const [sales] = await stack.mysql.primary.query<RowDataPacket[]>(
    'SELECT * FROM product_sales WHERE product_id IN (?) ORDER BY product_id',
    [products],
  );
  const [orders] = await stack.mysql.primary.query<RowDataPacket[]>(
    'SELECT * FROM order_history WHERE product_id IN (?) ORDER BY order_id',
    [products],
  );
  const [seen] = await stack.mysql.primary.query<RowDataPacket[]>(
    'SELECT COUNT(*) AS n FROM projection_events WHERE product_id IN (?)',
    [products],
  );
  return { sales, orders, events: Number(seen[0]?.['n']) };
}

const at = (second: number) => `2030-01-01T00:00:${String(second).padStart(2, '0')}.000Z`;

void t.test(
  'duplicates, out-of-order events and garbage give the expected totals; redelivery changes nothing',
  async (t) => {
    const stack = await readyStack(t);
    const [p1, p2] = [uniqueProductId(), uniqueProductId()];
    cleanupProducts(t, stack, [p1, p2]);
    const [a, b, c, d, e, f, g] = Array.from({ length: 7 }, () => uniq('order-'));
    const price = 500;
    const aConfirmed = newEvent('order.confirmed', p1, a!, { quantity: 2, unitPriceCents: price }, at(1));
    const orders: (EventEnvelope | Buffer)[] = [
      newEvent('order.created', p1, a!, { userId: 'ua', quantity: 2, unitPriceCents: price }, at(0)),
      aConfirmed,
      // B: confirmed arrives before created; the late created must not move it back to PENDING.
      newEvent('order.confirmed', p1, b!, { quantity: 1, unitPriceCents: price }, at(3)),
      newEvent('order.created', p1, b!, { userId: 'ub', quantity: 1, unitPriceCents: price }, at(2)),
      newEvent('order.created', p1, c!, { userId: 'uc', quantity: 3, unitPriceCents: price }, at(4)),
      newEvent('order.cancelled', p1, c!, { quantity: 3, unitPriceCents: price, reason: 'declined' }, at(5)),
      newEvent('order.created', p2, d!, { userId: 'ud', quantity: 1, unitPriceCents: 700 }, at(6)),
      newEvent('order.cancelled', p2, e!, { quantity: 4, unitPriceCents: 700, reason: 'timeout' }, at(8)),
      newEvent('order.created', p2, e!, { userId: 'ue', quantity: 4, unitPriceCents: 700 }, at(7)),
      aConfirmed, // the same event id again
      newEvent('order.cancelled', p1, a!, { quantity: 2, unitPriceCents: price, reason: 'late' }, at(9)), // conflict
      Buffer.from('not msgpack at all'),
      Buffer.from(
        encode({
          ...newEvent('order.confirmed', p1, f!, { quantity: 1, unitPriceCents: 1 }),
          schemaVersion: 99,
        }),
      ),
      encodeEvent(newEvent('order.confirmed', p1, g!, { quantity: 0, unitPriceCents: 1 })), // invalid quantity
    ];
    const payments = [newEvent('payment.succeeded', p1, a!, { paymentKey: 'k', amountCents: 1000 })];
    const producer = stack.kafka.producer();
    t.teardown(() => producer.disconnect());
    await producer.connect();
    const publish = async () => {
      await producer.send({
        topic: stack.topics.orders,
        acks: -1,
        messages: orders.map((o) =>
          Buffer.isBuffer(o)
            ? { key: String(p1), value: o }
            : { key: String(o.productId), value: encodeEvent(o) },
        ),
      });
      await producer.send({
        topic: stack.topics.payments,
        acks: -1,
        messages: payments.map((p) => ({ key: String(p.productId), value: encodeEvent(p) })),
      });
    };
    const total = orders.length + payments.length;

    const projection = startProjection(t, stack); // creates the topics
    await waitFor('projection running', () => projection.stats().running);
    const started = performance.now();
    await publish();
    await waitFor(`${total} events handled`, () => handled(projection) >= total);
    t.comment(`${total} events projected in ${Math.round(performance.now() - started)} ms`);
    t.match(projection.stats(), { applied: 10, duplicates: 1, skipped: 3, ignored: 1, conflicts: 1 });

    t.match(await readProductSales(stack.mysql.primary, p1), {
      productId: p1,
      confirmedOrders: 2,
      soldQuantity: 3,
      revenueCents: 1_500,
      cancelledOrders: 1,
      cancelledQuantity: 3,
      updatedAt: /^\d{4}-\d\d-\d\dT/,
    });
    t.match(await readProductSales(stack.mysql.primary, p2), {
      confirmedOrders: 0,
      soldQuantity: 0,
      revenueCents: 0,
      cancelledOrders: 1,
      cancelledQuantity: 4,
    });
    const first = await snapshot(stack, [p1, p2]);
    const history = Object.fromEntries(
      first.orders.map((o) => [
        o['order_id'],
        [o['status'], o['user_id'], o['quantity'], (o['created_at'] as Date).toISOString()],
      ]),
    );
    t.same(history, {
      [a!]: ['CONFIRMED', 'ua', 2, at(0)],
      [b!]: ['CONFIRMED', 'ub', 1, at(2)],
      [c!]: ['CANCELLED', 'uc', 3, at(4)],
      [d!]: ['PENDING', 'ud', 1, at(6)],
      [e!]: ['CANCELLED', 'ue', 4, at(7)],
    });
    t.equal(first.events, 10, 'each applied event id recorded once');

    await t.test('the same messages published again change nothing', async (t) => {
      await publish();
      await waitFor('redelivered events handled', () => handled(projection) >= 2 * total);
      t.match(projection.stats(), { applied: 10, duplicates: 12, skipped: 6, ignored: 2 });
      t.same(await snapshot(stack, [p1, p2]), first);
    });

    await t.test(
      'a new consumer group replaying both topics from the beginning changes nothing',
      async (t) => {
        const replay = startProjection(t, stack);
        await waitFor('replay handled everything', () => handled(replay) >= 2 * total);
        t.match(replay.stats(), { applied: 0, duplicates: 22, skipped: 6, ignored: 2 });
        t.same(await snapshot(stack, [p1, p2]), first);
      },
    );
  },
);

void t.test('outbox -> relay -> Kafka -> projection: totals follow the outbox', async (t) => {
  const stack = await readyStack(t);
  const product = uniqueProductId();
  cleanupProducts(t, stack, [product]);
  const events: EventEnvelope[] = [];
  for (let i = 0; i < 20; i += 1) {
    const orderId = uniq('order-');
    const data = { quantity: 1 + (i % 3), unitPriceCents: 250 };
    events.push(newEvent('order.created', product, orderId, { ...data, userId: `u${i}` }));
    events.push(newEvent('payment.succeeded', product, orderId, { paymentKey: orderId, amountCents: 1 }));
    events.push(
      i % 5 === 0
        ? newEvent('order.cancelled', product, orderId, { ...data, reason: 'payment failed' })
        : newEvent('order.confirmed', product, orderId, data),
    );
  }
  const relay = new OutboxRelay({
    primary: stack.mysql.primary,
    kafka: stack.kafka,
    topics: stack.config.kafka,
    batchSize: 25,
    pollMs: stack.config.outbox.pollMs,
    logger: silentLogger,
    lockName: `test.outbox-relay.${stack.config.kafka.clientId}`,
  });
  t.teardown(() => relay.stop());
  const projection = startProjection(t, stack);
  relay.start();
  const started = performance.now();
  await insertOutbox(stack, events);
  relay.nudge();
  const confirmed = events.filter((e) => e.type === 'order.confirmed');
  const cancelled = events.filter((e) => e.type === 'order.cancelled');
  const quantity = (list: EventEnvelope[]) =>
    list.reduce((sum, e) => sum + (e.data as { quantity: number }).quantity, 0);
  await waitFor('totals projected', async () => {
    const sales = await readProductSales(stack.mysql.primary, product);
    return sales.confirmedOrders + sales.cancelledOrders === 20;
  });
  t.comment(`60 outbox rows reached the projection in ${Math.round(performance.now() - started)} ms`);
  t.match(await readProductSales(stack.mysql.primary, product), {
    confirmedOrders: confirmed.length,
    soldQuantity: quantity(confirmed),
    revenueCents: quantity(confirmed) * 250,
    cancelledOrders: cancelled.length,
    cancelledQuantity: quantity(cancelled),
  });
  await waitFor('payments counted as ignored', () => projection.stats().ignored === 20);
  t.match(projection.stats(), { applied: 40, duplicates: 0, skipped: 0 });
});
