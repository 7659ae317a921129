// STOPS THE STACK'S KAFKA (all three nodes) for a few seconds while purchases go on (test/faults runs serially), then
// checks that every event of those purchases reaches Kafka once Kafka is back: none lost, duplicates
// only as redeliveries that consumers drop by event id, and in order per product.
import t from 'tap';
import { KAFKA_NODES, startServers, stopServers } from '../../scripts/stack/stack.js';
import type { RowDataPacket } from '../../src/storage/mysql.js';
import { collect, outboxEvents, waitFor } from '../helpers/events.js';
import { projectionMatches, startApp } from '../helpers/app.js';
import { uniq } from '../helpers/isolation.js';
import { totals } from '../helpers/database.js';

t.test(
  'Kafka down while purchases go on: every event arrives afterwards, once, in order per product',
  async (t) => {
    const running = await startApp(t, {}, { projection: true, payment: { declineRate: 0.25 } });
    const products = await Promise.all([1, 2].map(() => running.createProduct({ stock: 200 })));
    const user = uniq('u');
    let sent = 0;
    const burst = (n: number) =>
      Promise.all(
        Array.from({ length: n }, (_, i) =>
          running.purchase(products[i % 2]!, 1 + (i % 2), user, `k${(sent += 1)}`),
        ),
      );
    await burst(40);

    t.teardown(() => startServers(KAFKA_NODES));
    const stopping = Date.now();
    await stopServers(KAFKA_NODES);
    t.comment(`Kafka stopped in ${Date.now() - stopping} ms`);
    let duringOutage;
    try {
      duringOutage = await burst(60); // the service keeps selling: events wait in the outbox
    } finally {
      await startServers(KAFKA_NODES);
    }
    t.ok(
      duringOutage.every((a) => [201, 402, 409].includes(a.status)),
      'purchases went on while Kafka was down',
    );
    await burst(40);

    // Batches write their events packed, a row per topic and product: unpacked, in outbox order.
    const expected = await outboxEvents(
      running.infra.mysql.primary,
      Object.values(running.config.kafka.topics),
    );
    t.ok(expected.length > 300, `${expected.length} events written by the purchases`);
    const stack = {
      config: running.config,
      topics: running.config.kafka.topics,
      mysql: running.infra.mysql,
      kafka: running.infra.kafka,
    };
    const { received, stop } = await collect(t, stack);
    await waitFor(
      'every event to arrive',
      () => new Set(received.map((r) => r.event.eventId)).size >= expected.length,
      60_000,
    );
    await stop();

    const outboxId = new Map(expected.map((r) => [r.eventId, r.place]));
    const unique = new Map(received.map((r) => [r.event.eventId, r]));
    t.equal(unique.size, expected.length, 'every event arrived');
    t.ok(
      [...unique.keys()].every((id) => outboxId.has(id)),
      'and nothing else',
    );
    t.comment(`${received.length - unique.size} redeliveries dropped by event id`);
    // Per product and topic, first deliveries come in outbox (commit) order.
    const seen = new Set<string>();
    const lastByStream = new Map<string, number>();
    let outOfOrder = 0;
    for (const r of received) {
      if (seen.has(r.event.eventId)) continue;
      seen.add(r.event.eventId);
      const stream = `${r.topic}/${r.key}`;
      const id = outboxId.get(r.event.eventId)!;
      if ((lastByStream.get(stream) ?? 0) > id) outOfOrder += 1;
      lastByStream.set(stream, id);
    }
    t.equal(outOfOrder, 0, 'in order per product');

    const [[unsent]] = await running.infra.mysql.primary.query<RowDataPacket[]>(
      'SELECT COUNT(*) AS n FROM outbox WHERE topic IN (?) AND sent_at IS NULL',
      [Object.values(running.config.kafka.topics)],
    );
    t.equal(Number(unsent?.['n']), 0, 'every outbox row is marked sent');
    for (const productId of products) {
      const db = await totals(running.infra.mysql.primary, productId);
      t.equal(db.pending, 0);
      // The projection's consumer rejoins its group after the broker restart: that can take a while.
      const { want, got } = await projectionMatches(running, productId, 90_000);
      t.same(got, want, `product ${productId}: the projection equals MySQL`);
    }
  },
);
