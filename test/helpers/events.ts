// Shared by the event tests: a config with topics of its own, outbox rows inserted like a writer does,
// a collector that reads topics back with a fresh consumer group, a relay and checks of what arrived, and
// cleanup of all of it.
import { randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino, type Logger } from 'pino';
import type { Test } from 'tap';
import { loadConfig, type Config } from '../../src/config.js';
import {
  decodeEvent,
  newEvent,
  OUTBOX_INSERT,
  OUTBOX_UNPACK_COLUMNS,
  outboxRows,
  storedOutboxRow,
  unpackOutbox,
  type EventEnvelope,
  type Topics,
} from '../../src/events/envelope.js';
import { STACK_KAFKA_BROKERS } from '../../scripts/stack/layout.js';
import { OutboxRelay, type OutboxRelayOptions } from '../../src/events/outbox-relay.js';
import { ensureTopicsWithNewAdmin } from '../../src/events/topics.js';
import type { Consumer } from 'kafkajs';
import { consumerDefaults, createKafka, type ServiceKafka } from '../../src/storage/kafka.js';
import { migrate } from '../../src/storage/migrate.js';
import { createMysqlPools, type MysqlPools, type Pool, type RowDataPacket } from '../../src/storage/mysql.js';
import { deleteUnsentOutboxRows, uniq } from './isolation.js';
import { silentLogger } from './isolation.js';
import { endWhenHeldOpen } from './open-handles.js';

let migrated: Promise<unknown> | undefined;

export interface EventsStack {
  config: Config;
  topics: Topics;
  mysql: MysqlPools;
  kafka: ServiceKafka;
}

/**
 * A config with three topics of this test's own (3 partitions each), MySQL pools and a Kafka client.
 * At teardown the topics are deleted, with this test's unsent outbox rows (the outbox table is shared), and
 * the client's broker sockets are closed (`BrokerSockets`); anything else left running cannot hold the file
 * past its end (`endWhenHeldOpen`).
 */
export async function eventsStack(t: Test, kafkaLogger: Logger = silentLogger): Promise<EventsStack> {
  endWhenHeldOpen();
  const label = uniq('test-');
  const config = loadConfig({
    LOG_LEVEL: 'silent',
    KAFKA_CLIENT_ID: label,
    KAFKA_TOPIC_INVENTORY: `${label}-inventory`,
    KAFKA_TOPIC_ORDERS: `${label}-orders`,
    KAFKA_TOPIC_PAYMENTS: `${label}-payments`,
    KAFKA_TOPIC_PARTITIONS: '3',
    MYSQL_POOL_SIZE: '8',
  });
  migrated ??= migrate(config.mysql.migration);
  await migrated;
  const mysql = createMysqlPools(config);
  const kafka = createKafka(config, kafkaLogger);
  const topics = config.kafka.topics;
  t.teardown(async () => {
    // The pools are closed whatever the clean-up meets (a read-only primary): an open one keeps the file
    // running until tap's timeout.
    try {
      await deleteUnsentOutboxRows(mysql.primary, topics);
    } finally {
      await mysql.close();
      const admin = kafka.admin();
      await admin.connect().catch(() => undefined);
      await admin.deleteTopics({ topics: Object.values(topics) }).catch(() => undefined);
      await admin.disconnect().catch(() => undefined);
      // Last (teardowns run newest first: `collect`'s stop is done): what the test's clients left open ends.
      kafka.sockets.close();
    }
  });
  return { config, topics, mysql, kafka };
}

/**
 * Creates this test's topics (those missing) and waits until each of the stack's brokers answers metadata
 * for them. A topic just created is known to the controller first and to each broker a moment later; a
 * consumer that asks a broker that has not heard of it yet crashes while joining, and its restart waits for
 * its first member's session to end; a send to such a broker fails part-way and goes again (duplicates).
 */
export async function topicsOnEveryBroker(stack: EventsStack): Promise<void> {
  await ensureTopicsWithNewAdmin(stack.kafka, stack.config.kafka);
  await knownToEveryBroker(Object.values(stack.topics));
}

/** Waits until each of the stack's brokers answers metadata, with a leader for every partition, for `topics`. */
export async function knownToEveryBroker(topics: readonly string[]): Promise<void> {
  for (const broker of STACK_KAFKA_BROKERS) {
    // One bootstrap broker and nothing else connected: the metadata comes from that broker.
    const admin = createKafka(loadConfig({ KAFKA_BROKERS: broker }), silentLogger, { retries: 0 }).admin();
    try {
      await admin.connect();
      await waitFor(
        `${broker} to know ${topics.join(', ')}`,
        async () => {
          const found = await admin.fetchTopicMetadata({ topics: [...topics] }).catch(() => undefined);
          return found !== undefined && found.topics.every((t) => t.partitions.every((p) => p.leader >= 0));
        },
        10_000,
      );
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }
}

/**
 * How many messages the stack's own topics hold (high minus low watermark over every partition): what was
 * published, whatever a consumer group later redelivers. No transactions write them, so offsets count messages.
 */
export async function messagesOnTopics(stack: EventsStack): Promise<number> {
  const admin = stack.kafka.admin();
  await admin.connect();
  try {
    let total = 0;
    for (const topic of Object.values(stack.topics))
      for (const p of await admin.fetchTopicOffsets(topic)) total += Number(p.high) - Number(p.low);
    return total;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/** A product id no other test uses (the projection tables are shared too). */
export const uniqueProductId = (): number => randomInt(1_000_000_000, 2 ** 47);

/**
 * Inserts the events' outbox rows in one transaction, as a writer does: one row per event, or packed as a
 * commit cycle writes them (`packed`: a row per topic, keyed per event when it holds several products). Returns each event's place in the outbox by event id: its row's id,
 * and its position in a packed row after the decimal point, so per-stream order compares as numbers.
 */
export async function insertOutbox(
  stack: EventsStack,
  events: readonly EventEnvelope[],
  options: { packed?: boolean } = {},
): Promise<Map<string, number>> {
  const conn = await stack.mysql.primary.getConnection();
  try {
    await conn.beginTransaction();
    // Unpacked: a row of one event each, as a batch writes a lone event of a topic.
    const rows = options.packed
      ? outboxRows(events, stack.topics, 0)
      : events.flatMap((e) => outboxRows([e], stack.topics, 0));
    await conn.query(OUTBOX_INSERT, [rows]);
    await conn.commit();
  } finally {
    conn.release();
  }
  const rows = await outboxEvents(stack.mysql.primary, Object.values(stack.topics));
  const mine = new Set(events.map((e) => e.eventId));
  return new Map(rows.filter((r) => mine.has(r.eventId)).map((r) => [r.eventId, r.place]));
}

/** Every event in the outbox rows of these topics, unpacked, in outbox order. */
export async function outboxEvents(
  primary: Pool,
  topics: readonly string[],
): Promise<{ eventId: string; key: string; rowId: number; place: number }[]> {
  const [rows] = await primary.query<RowDataPacket[]>(
    `SELECT id, ${OUTBOX_UNPACK_COLUMNS} FROM outbox WHERE topic IN (?) ORDER BY id`,
    [topics],
  );
  return rows.flatMap((r) =>
    unpackOutbox(storedOutboxRow(r)).map(({ key, value }, i) => ({
      eventId: decodeEvent(value).eventId,
      key,
      rowId: Number(r['id']),
      place: Number(r['id']) + i / 100_000,
    })),
  );
}

/** Outbox rows of these events still unsent. */
export async function unsentCount(stack: EventsStack, eventIds: readonly string[]): Promise<number> {
  const [rows] = await stack.mysql.primary.query<RowDataPacket[]>(
    'SELECT COUNT(*) AS n FROM outbox WHERE event_id IN (?) AND sent_at IS NULL',
    [eventIds],
  );
  return Number(rows[0]?.['n']);
}

export interface Received {
  topic: string;
  partition: number;
  key: string;
  event: EventEnvelope;
  /** The message's `x-request-id` header, if it has one. */
  requestId?: string;
  /** When it was received (performance.now()). */
  at: number;
}

/**
 * Reads this test's topics from the beginning with a fresh consumer group, until `stop()`. A consumer that
 * KafkaJS gives up on (a crash it does not restart, e.g. a broker lost while joining) is replaced by a new
 * one in the same group, which goes on from the group's committed offsets. Like `eventsStack`, it keeps a
 * Kafka client left reconnecting from holding the file past its end (`endWhenHeldOpen`).
 */
export async function collect(t: Test, stack: EventsStack) {
  endWhenHeldOpen();
  await topicsOnEveryBroker(stack);
  const groupId = uniq('test-collector-');
  const received: Received[] = [];
  let stopped = false;
  let crashes = 0;
  let consumer: Consumer;
  // A replacement scheduled by a crash: stop() waits for it, or it would start a consumer after stop()
  // disconnected the crashed one, and that consumer would keep the test file running until tap's timeout.
  let restarting: Promise<void> | undefined;
  const start = async (): Promise<void> => {
    // A short long-poll: quick disconnect.
    const current = stack.kafka.consumer({
      ...consumerDefaults,
      retry: { ...consumerDefaults.retry },
      groupId,
      maxWaitTimeInMs: 500,
    });
    consumer = current;
    current.on(current.events.CRASH, ({ payload }) => {
      crashes += 1;
      if (payload.restart || stopped || consumer !== current) return;
      restarting = sleep(500)
        .then(() => (stopped ? undefined : start()))
        .catch(() => undefined);
    });
    await current.connect();
    await current.subscribe({ topics: Object.values(stack.topics), fromBeginning: true });
    await current.run({
      eachMessage: async ({ topic, partition, message }) => {
        if (message.value === null) return;
        const requestId = message.headers?.['x-request-id']?.toString();
        received.push({
          topic,
          partition,
          key: String(message.key),
          event: decodeEvent(message.value),
          ...(requestId === undefined ? {} : { requestId }),
          at: performance.now(),
        });
      },
    });
  };
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await restarting;
    await consumer.disconnect();
    const admin = stack.kafka.admin();
    await admin.connect();
    await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.disconnect();
  };
  t.teardown(stop);
  await start();
  return { received, stop, crashes: () => crashes };
}

/** Polls `done` every 50 ms until it is true; fails after `timeoutMs` naming `what`. */
export async function waitFor(what: string, done: () => boolean | Promise<boolean>, timeoutMs = 30_000) {
  const until = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** A pino logger whose lines are kept in `lines` (parsed JSON), to assert on what was logged. */
export function capturingLogger(level: 'info' | 'debug' = 'info'): {
  logger: Logger;
  lines: { msg: string; [k: string]: unknown }[];
} {
  const lines: { msg: string; [k: string]: unknown }[] = [];
  const logger = pino(
    { level },
    { write: (line: string) => void lines.push(JSON.parse(line) as { msg: string }) },
  );
  return { logger, lines };
}

/** A relay of `stack` (its topics, a lock name of its own), started; stopped at teardown. */
export function startRelay(
  t: Test,
  stack: EventsStack,
  options: Partial<OutboxRelayOptions> = {},
): OutboxRelay {
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
export function makeEvents(products: readonly number[], count: number): EventEnvelope[] {
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
export function assertOrderPerProduct(
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
