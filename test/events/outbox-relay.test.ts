// The outbox relay against the real MariaDB and Kafka, on topics and a lock name of each test's own: it stops
// no shared server, so it runs beside other files. The relay through a whole Kafka outage is in
// test/faults/outbox-relay.test.ts.
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import type { RowDataPacket } from '../../src/storage/mysql.js';
import {
  assertOrderPerProduct,
  collect,
  eventsStack,
  insertOutbox,
  makeEvents,
  messagesOnTopics,
  startRelay,
  uniqueProductId,
  unsentCount,
  waitFor,
} from '../helpers/events.js';

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

void t.test(
  'stop() ends a waiting relay’s GET_LOCK in MySQL instead of waiting out its timeout',
  async (t) => {
    const stack = await eventsStack(t);
    const lockName = `test.outbox-relay.stop.${stack.config.kafka.clientId}`;
    const holder = startRelay(t, stack, { lockName });
    await waitFor('the lock taken', () => holder.stats().holdsLock);
    const waiter = startRelay(t, stack, { lockName });
    // A wait that has just begun (a relay waits 5 s at a time): before the fix, stop() took that long.
    const waits = async () => {
      const [rows] = await stack.mysql.primary.query<RowDataPacket[]>(
        `SELECT ID AS id, TIME_MS AS ms FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT GET_LOCK(%' AND INFO LIKE ?`,
        [`%${lockName}%`],
      );
      return rows as { id: number; ms: number }[];
    };
    await waitFor('a fresh GET_LOCK wait', async () => (await waits()).some((w) => w.ms < 1_000));
    const started = performance.now();
    await waiter.stop();
    const tookMs = performance.now() - started;
    t.same(await waits(), [], 'no GET_LOCK left waiting in MySQL when stop() returns');
    t.ok(tookMs < 2_500, `stop() returned in ${Math.round(tookMs)} ms, not at the wait's 5 s timeout`);
    t.equal(holder.stats().holdsLock, true, 'the holder keeps the lock');
  },
);

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
