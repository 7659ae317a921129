// The outbox relay through a whole Kafka outage, against the real MariaDB and Kafka, on topics and a lock name
// of its own. The relay's other cases are in test/events/outbox-relay.test.ts.
//
// WARNING: this STOPS THE STACK'S KAFKA (all three nodes: stopServers(KAFKA_NODES)) for a few seconds. Test
// files running in parallel share those brokers and see Kafka errors in that window: run this file serially
// (test/faults). Kafka is restarted in a `finally` and again in a teardown.
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { KAFKA_NODES, startServers, stopServers } from '../../scripts/stack/stack.js';
import {
  assertOrderPerProduct,
  capturingLogger,
  collect,
  eventsStack,
  insertOutbox,
  makeEvents,
  startRelay,
  uniqueProductId,
  unsentCount,
  waitFor,
} from '../helpers/events.js';

// How long rows must stay unsent while Kafka is down before it is started again.
const OUTAGE_HOLD_MS = 2_000;
const RECOVERY_MS = 60_000;

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
  t.comment(
    `${duplicates} duplicate deliveries (allowed: at-least-once); the collector's consumer crashed ${collector.crashes()} times`,
  );
});
