/**
 * A run's own Kafka events (topics, relay lock, projection group of its own, deleted at cleanup), so that its
 * checks read exactly its events: the chaos run's rig (faults.ts) and the bench's store checks use them.
 */
import { pino } from 'pino';
import { loadConfig, type Config } from '../../src/config.js';
import { ensureTopicsWithNewAdmin } from '../../src/events/topics.js';
import { createKafka, type Admin, type Kafka } from '../../src/storage/kafka.js';
import type { Lifecycle } from '../cluster.js';
import { storeConfig, withMysql } from '../stores.js';

/** Kafka topics, clients and the nodes' env of a run's own events (`ownEvents`), or of the stack's. */
export interface EventsOf {
  readonly config: Config;
  readonly topics: readonly string[];
  readonly kafka: Kafka;
  readonly admin: Admin;
}

/**
 * Kafka topics, a relay lock and a projection group of the run's own (its events are exactly these topics'),
 * created now; deleted, with their outbox rows, at cleanup. `env` is the nodes'.
 */
export async function ownEvents(tag: string, life: Pick<Lifecycle, 'onCleanup'>) {
  const env = {
    KAFKA_TOPIC_INVENTORY: `${tag}.inventory`,
    KAFKA_TOPIC_ORDERS: `${tag}.orders`,
    KAFKA_TOPIC_PAYMENTS: `${tag}.payments`,
    OUTBOX_RELAY_LOCK: `flashsale.outbox-relay.${tag}`.slice(0, 64),
    PROJECTION_GROUP_ID: `${tag}-projection`,
  };
  const events = eventsOf(loadConfig({ ...process.env, ...env, LOG_LEVEL: 'silent' }));
  const { config, topics, kafka, admin } = events;
  life.onCleanup(async () => {
    await admin.deleteGroups([config.projection.groupId]).catch(() => undefined);
    await admin.deleteTopics({ topics: [...topics], timeout: 10_000 }).catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
    await withMysql((conn) => conn.query('DELETE FROM outbox WHERE topic IN (?)', [topics]));
  });
  await admin.connect();
  await ensureTopicsWithNewAdmin(kafka, config.kafka);
  return { env, ...events };
}

/** The clients of `config`'s topics (the stack's by default); the admin not connected yet. */
export function eventsOf(config = storeConfig()): EventsOf {
  const kafka = createKafka(config, pino({ level: 'silent' }));
  return { config, topics: Object.values(config.kafka.topics), kafka, admin: kafka.admin() };
}
