// The outbox relay against the real MariaDB and Kafka, on topics and a lock name of each test's own.
//
// WARNING: one test here STOPS THE STACK'S KAFKA (all three nodes: stopServers(KAFKA_NODES)) for a few
// seconds. Test files running in parallel share those brokers and see Kafka errors in that window: run this
// file serially. Kafka is restarted in a `finally` and again in a teardown.
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { KAFKA_NODES, startServers, stopServers } from '../../scripts/stack/stack.js';
import { newEvent, type EventEnvelope } from '../../src/events/envelope.js';
import { OutboxRelay, type OutboxRelayOptions } from '../../src/events/outbox-relay.js';
import type { RowDataPacket } from '../../src/storage/mysql.js';
import { uniq } from '../helpers/app.js';
import { silentLogger } from '../helpers/http.js';
import {
  capturingLogger,
  collect,
  eventsStack,
  insertOutbox,
  messagesOnTopics,
  uniqueProductId,
  unsentCount,
  waitFor,
  type EventsStack,
  type Received,
} from '../helpers/events.js';

// How long rows must stay unsent while Kafka is down before it is started again.
const OUTAGE_HOLD_MS = 2_000;
const RECOVERY_MS = 60_000;

function startRelay(t: Test, stack: EventsStack, options: Partial<OutboxRelayOptions> = {}): OutboxRelay {
  const relay = new OutboxRelay({
    primary: stack.mysql.primary,
    kafka: stack.kafka,
    topics: stack.config.kafka,
    batchSize: 50,
    pollMs: stack.config.outbox.pollMs,
    logger: silentLogger,
    lockName: `test.outbox-relay.${stack.config.kafka.clientId}`,
    ...options,
  });
  t.teardown(() => relay.stop());
  relay.start();
  return relay;
}

/** `count` events over `products`, round robin, on all three topics (inventory, orders, payments). */
function makeEvents(products: readonly number[], count: number): EventEnvelope[] {
  return Array.from({ length: count }, (_, i) => {
    const productId = products[i % products.length]!;
    switch (i % 4) {
      case 0:
        return newEvent('inventory.reserved', productId, null, { quantity: 1 });
      case 1:
        return newEvent('order.created', productId, uniq('o'), {
          userId: 'u',
          quantity: 1,
          unitPriceCents: 5,
        });
      case 2:
        return newEvent('payment.succeeded', productId, uniq('o'), { paymentKey: 'p', amountCents: 5 });
      default:
        return newEvent('stock.changed', productId, null, { stock: i, version: i });
    }
  });
}

/** Checks per topic and product that first deliveries follow outbox ids; returns the duplicate count. */
function assertOrderPerProduct(
  t: Test,
  received: readonly Received[],
  outboxIds: ReadonlyMap<string, number>,
) {
  const seen = new Set<string>();
  const lastId = new Map<string, number>();
  let duplicates = 0;
  let outOfOrder = 0;
  let wrongKeys = 0;
  for (const { topic, key, event } of received) {
    if (!outboxIds.has(event.eventId)) continue;
    if (seen.has(event.eventId)) {
      duplicates += 1;
      continue;
    }
    seen.add(event.eventId);
    if (key !== String(event.productId)) wrongKeys += 1;
    const id = outboxIds.get(event.eventId)!;
    const stream = `${topic}/${key}`;
    if ((lastId.get(stream) ?? 0) > id) outOfOrder += 1;
    lastId.set(stream, id);
  }
  t.equal(seen.size, outboxIds.size, 'every event arrived');
  t.equal(wrongKeys, 0, 'every message is keyed by its product id');
  t.equal(outOfOrder, 0, 'per topic and product, events arrive in outbox id order');
  return duplicates;
}

void t.test('publishes every row once, in order per product, and stamps them sent', async (t) => {
  const stack = await eventsStack(t);
  const products = [uniqueProductId(), uniqueProductId(), uniqueProductId()];
  const events = makeEvents(products, 200);
  const outboxIds = await insertOutbox(stack, events);
  t.equal(outboxIds.size, 200);
  const collector = await collect(t, stack);

  const started = performance.now();
  const relay = startRelay(t, stack);
  await waitFor('200 events', () => collector.received.length >= 200);
  t.comment(`200 rows published in batches of 50 in ${Math.round(performance.now() - started)} ms`);
  assertOrderPerProduct(t, collector.received, outboxIds);
  t.equal(await messagesOnTopics(stack), 200, 'each published once (messages on the topics)');
  t.same(
    new Set(collector.received.map((r) => r.topic)),
    new Set(Object.values(stack.topics)),
    'on all three topics',
  );
  await waitFor('rows stamped', async () => (await unsentCount(stack, [...outboxIds.keys()])) === 0);
  t.match(relay.stats(), { holdsLock: true, published: 200, lastError: undefined, failingSince: undefined });

  const nudged = makeEvents(products, 4);
  const before = performance.now();
  await insertOutbox(stack, nudged);
  relay.nudge();
  await waitFor('nudged rows', () => collector.received.length >= 204);
  t.comment(`a nudged row reached the consumer in ${Math.round(performance.now() - before)} ms`);
});

void t.test('an idle relay backs off its polls, and a commit on this node still wakes it', async (t) => {
  const stack = await eventsStack(t);
  const products = [uniqueProductId()];
  const collector = await collect(t, stack);
  // Idle polls back off to a minute: only nudges (this node's commits) get rows out quickly now.
  const relay = startRelay(t, stack, { pollMs: 20, maxIdlePollMs: 60_000 });
  await waitFor('the lock', () => relay.stats().holdsLock);
  await sleep(3_000); // 20 ms doubling: the pause that runs now lasts until about 5 s
  const rows = await insertOutbox(stack, makeEvents(products, 4));
  await sleep(200);
  t.equal(await unsentCount(stack, [...rows.keys()]), rows.size, 'not polled for while backed off');
  relay.nudge();
  await waitFor('nudged rows', () => collector.received.length >= 4, 10_000);
  t.equal(collector.received.length, 4, 'published on the nudge, long before the next poll');
});

void t.test(
  'packed rows (commit cycles) go out as their events, in order, batches counted in events',
  async (t) => {
    const stack = await eventsStack(t);
    const products = [uniqueProductId(), uniqueProductId(), uniqueProductId()];
    const places = new Map<string, number>();
    for (let i = 0; i < 3; i += 1) {
      for (const [id, place] of await insertOutbox(stack, makeEvents(products, 100), { packed: true }))
        places.set(id, place);
    }
    const [[rows]] = await stack.mysql.primary.query<RowDataPacket[]>(
      'SELECT COUNT(*) AS n, SUM(event_count) AS events FROM outbox WHERE topic IN (?)',
      [Object.values(stack.topics)],
    );
    t.equal(Number(rows?.['events']), 300, '300 events');
    t.equal(Number(rows?.['n']), 9, 'packed into a row per topic per commit, keyed per event');
    const collector = await collect(t, stack);
    const relay = startRelay(t, stack, { batchSize: 25 }); // smaller than a packed row: one row per send then
    await waitFor('300 events', () => collector.received.length >= 300);
    assertOrderPerProduct(t, collector.received, places);
    t.equal(await messagesOnTopics(stack), 300, 'each published once (messages on the topics)');
    await waitFor('rows stamped', async () => (await unsentCount(stack, [...places.keys()])) === 0);
    t.match(relay.stats(), { published: 300, lastError: undefined });
  },
);

void t.test('two relays with one lock name: one publishes; the other takes over when it stops', async (t) => {
  const stack = await eventsStack(t);
  const products = [uniqueProductId(), uniqueProductId()];
  // The topics first, known to every broker, as the other tests' collectors make them: a relay that creates
  // them itself and sends at once can meet a broker that has not heard of them, and its first send fail
  // after writing some partitions, then go again (at-least-once: 118 messages for 80 in a CI run).
  const collector = await collect(t, stack);
  const relays = [startRelay(t, stack), startRelay(t, stack)];
  const first = makeEvents(products, 60);
  const ids = await insertOutbox(stack, first);
  await waitFor('first rows sent', async () => (await unsentCount(stack, [...ids.keys()])) === 0);
  const holders = relays.filter((r) => r.stats().holdsLock);
  t.equal(holders.length, 1, 'exactly one relay holds the lock');
  const holder = holders[0]!;
  const other = relays.find((r) => r !== holder)!;
  t.equal(holder.stats().published, 60, 'the holder published everything');
  t.equal(other.stats().published, 0, 'the other published nothing');

  await holder.stop();
  const second = makeEvents(products, 20);
  const secondIds = await insertOutbox(stack, second);
  await waitFor(
    'the other relay takes over',
    async () => (await unsentCount(stack, [...secondIds.keys()])) === 0,
  );
  t.match(other.stats(), { holdsLock: true, published: 20 });

  await waitFor('80 events', () => collector.received.length >= 80);
  assertOrderPerProduct(t, collector.received, new Map([...ids, ...secondIds]));
  // A consumer group may redeliver (a rebalance just after a Kafka restart); the topics say what was sent.
  // Only a send that failed may be sent again (at-least-once); without one, each event is there once.
  const failedSend = relays.map((r) => r.stats().lastError).find((e) => e !== undefined);
  if (failedSend === undefined)
    t.equal(await messagesOnTopics(stack), 80, 'none published twice (messages on the topics)');
  else
    t.ok(
      (await messagesOnTopics(stack)) >= 80,
      `a send failed (${failedSend.message}) and went again: each event at least once`,
    );
});

void t.test('a killed lock connection frees the lock; the relay takes it again and goes on', async (t) => {
  const stack = await eventsStack(t);
  const products = [uniqueProductId()];
  const lockName = `test.outbox-relay.${stack.config.kafka.clientId}`;
  const relay = startRelay(t, stack, { lockName });
  const first = await insertOutbox(stack, makeEvents(products, 10));
  await waitFor('first rows sent', async () => (await unsentCount(stack, [...first.keys()])) === 0);
  const holderId = async () => {
    const [rows] = await stack.mysql.primary.query<RowDataPacket[]>('SELECT IS_USED_LOCK(?) AS id', [
      lockName,
    ]);
    return rows[0]?.['id'] as number | null;
  };
  const killed = await holderId();
  t.ok(killed, `the lock is held by connection ${killed}`);
  await stack.mysql.primary.query('KILL ?', [killed]);

  const second = await insertOutbox(stack, makeEvents(products, 10));
  await waitFor('rows sent after the kill', async () => (await unsentCount(stack, [...second.keys()])) === 0);
  const now = await holderId();
  t.ok(now !== null && now !== killed, `a new connection (${now}) holds the lock`);
  t.match(relay.stats(), { holdsLock: true, published: 20 });
});

void t.test('sent rows past the retention are deleted, recent ones kept', async (t) => {
  const stack = await eventsStack(t);
  const products = [uniqueProductId()];
  const old = await insertOutbox(stack, makeEvents(products, 30));
  const recent = await insertOutbox(stack, makeEvents(products, 5));
  await stack.mysql.primary.query(
    'UPDATE outbox SET sent_at = NOW(3) - INTERVAL 25 HOUR WHERE event_id IN (?)',
    [[...old.keys()]],
  );
  await stack.mysql.primary.query(
    'UPDATE outbox SET sent_at = NOW(3) - INTERVAL 23 HOUR WHERE event_id IN (?)',
    [[...recent.keys()]],
  );
  const relay = startRelay(t, stack, { cleanupEveryMs: 50 });
  const remaining = async (eventIds: string[]) => {
    const [rows] = await stack.mysql.primary.query<RowDataPacket[]>(
      'SELECT COUNT(*) AS n FROM outbox WHERE event_id IN (?)',
      [eventIds],
    );
    return Number(rows[0]?.['n']);
  };
  await waitFor('old rows deleted', async () => (await remaining([...old.keys()])) === 0, 10_000);
  t.equal(await remaining([...recent.keys()]), 5, 'rows sent 23 h ago stay');
  t.equal(relay.stats().deleted, 30);
  t.equal(relay.stats().published, 0, 'already-sent rows are not published again');
});

void t.test('while Kafka is down rows wait; after it returns they all arrive, in order', async (t) => {
  const { logger, lines } = capturingLogger();
  const stack = await eventsStack(t, logger);
  t.teardown(() => startServers(KAFKA_NODES));
  const products = [uniqueProductId(), uniqueProductId(), uniqueProductId()];
  const relay = startRelay(t, stack, { logger });
  const before = await insertOutbox(stack, makeEvents(products, 30));
  await waitFor(
    'rows before the outage sent',
    async () => (await unsentCount(stack, [...before.keys()])) === 0,
  );

  let during: Map<string, number>;
  let linesAtRestart: number;
  const linesAtOutage = lines.length; // a send to just-created topics can fail once before this, and recover
  const outageStarted = performance.now();
  try {
    await stopServers(KAFKA_NODES);
    t.comment(`Kafka stopped in ${Math.round(performance.now() - outageStarted)} ms`);
    during = await insertOutbox(stack, makeEvents(products, 60));
    relay.nudge();
    await sleep(OUTAGE_HOLD_MS);
    t.equal(
      await unsentCount(stack, [...during.keys()]),
      60,
      'rows inserted while Kafka is down stay unsent',
    );
    const stats = relay.stats();
    t.ok(
      stats.lastError !== undefined && stats.failingSince !== undefined,
      `failing: ${stats.lastError?.message}`,
    );
    t.ok((stats.backlog ?? 0) >= 60, `backlog estimate ${stats.backlog} counts them`);
    t.equal(stats.holdsLock, true, 'the relay keeps its MySQL lock through a Kafka outage');
  } finally {
    linesAtRestart = lines.length;
    const restarting = performance.now();
    await startServers(KAFKA_NODES);
    t.comment(`Kafka started again in ${Math.round(performance.now() - restarting)} ms`);
  }
  t.comment(`Kafka was down for ${Math.round(performance.now() - outageStarted)} ms`);
  const restarted = performance.now();
  await waitFor(
    'rows sent after the outage',
    async () => (await unsentCount(stack, [...during.keys()])) === 0,
    RECOVERY_MS,
  );
  t.comment(`the backlog was published ${Math.round(performance.now() - restarted)} ms after Kafka answered`);

  const kafkajsLines = lines.filter(
    (l) => l['component'] === 'kafkajs' && (l['level'] as number) >= 40,
  ).length;
  t.comment(
    `KafkaJS itself logged ${kafkajsLines} warn/error lines during the outage (src/storage/kafka.ts)`,
  );
  const isOutage = (l: { msg: string }) => l.msg.startsWith('outbox relay cannot publish');
  const isRecovery = (l: { msg: string }) => l.msg === 'outbox relay recovered';
  t.equal(
    lines.slice(linesAtOutage, linesAtRestart).filter(isOutage).length,
    1,
    'while every broker is down the outage is logged once, not per attempt',
  );
  // While three brokers start one by one a send can succeed and the next fail again (leaders still
  // moving): each such relapse is one more outage line, always after a recovery line, never a line per retry.
  const transitions = lines
    .slice(linesAtOutage)
    .filter((l) => isOutage(l) || isRecovery(l))
    .map((l) => (isOutage(l) ? 'down' : 'up'));
  t.ok(
    transitions.length >= 2 &&
      transitions.length % 2 === 0 &&
      transitions.every((s, i) => s === (i % 2 === 0 ? 'down' : 'up')),
    `outage and recovery lines alternate and end recovered: ${transitions.join(' ')}`,
  );
  t.match(relay.stats(), { failingSince: undefined, published: 90 });

  // A fresh group reads everything: nothing lost, first deliveries in order (at-least-once may repeat).
  const collector = await collect(t, stack);
  const all = new Map([...before, ...during]);
  await waitFor(
    'all 90 events',
    () => new Set(collector.received.map((r) => r.event.eventId)).size >= 90,
    RECOVERY_MS,
  );
  const duplicates = assertOrderPerProduct(t, collector.received, all);
  t.comment(`${duplicates} duplicate deliveries (allowed: at-least-once)`);
});
