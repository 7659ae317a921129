/**
 * What keeps test files apart on the shared stack, without loading the app: unique names, Kafka topics, a
 * consumer group and an outbox lock of a test's own, and the cleanup of its unsent outbox rows. Test files
 * that start no app in-process import these from here, not from app.ts (whose imports cost a test process
 * ~0.5 s of CPU more to load).
 */
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import type { Test } from 'tap';
import { loadConfig } from '../../src/config.js';
import { createKafka } from '../../src/storage/kafka.js';
import type { Pool } from '../../src/storage/mysql.js';
import { QUICK_STOP_ENV } from './node-process.js';

/** A logger that writes nothing. */
export const silentLogger = pino({ level: 'silent' });

/** A unique prefix for ids and keys, so test files can share the stack and run in parallel. */
export const uniq = (label = 't'): string => `${label}${randomBytes(4).toString('hex')}`;

/**
 * Deletes the unsent outbox rows of a test's own topics, which go with it: no relay publishes them, and in the
 * shared outbox they would stay unsent for good. Only the unsent ones, by index (sent_at, topic, id): a delete by
 * topic alone scans the whole outbox, locking ranges other test files insert into.
 */
export async function deleteUnsentOutboxRows(primary: Pool, topics: Readonly<Record<string, string>>) {
  await primary.query('DELETE FROM outbox WHERE sent_at IS NULL AND topic IN (?)', [Object.values(topics)]);
}

/**
 * Environment giving an app (in-process or a node process) Kafka topics, a projection consumer group and
 * an outbox relay lock of its own, so it publishes and projects exactly its own events. At teardown the
 * topics and the group are deleted (best effort: a broker outage must not fail the teardown).
 */
export function ownEvents(t: Test, id: string): Record<string, string> {
  const env = {
    KAFKA_TOPIC_INVENTORY: `${id}.inventory`,
    KAFKA_TOPIC_ORDERS: `${id}.orders`,
    KAFKA_TOPIC_PAYMENTS: `${id}.payments`,
    KAFKA_TOPIC_PARTITIONS: '1',
    OUTBOX_RELAY_LOCK: `flashsale.outbox-relay.${id}`,
    PROJECTION_GROUP_ID: `${id}-projection`,
    ...QUICK_STOP_ENV,
  };
  t.teardown(async () => {
    const config = loadConfig({ LOG_LEVEL: 'silent', ...env });
    const admin = createKafka(config, silentLogger, { retries: 0 }).admin();
    try {
      await admin.connect();
      await admin.deleteGroups([env.PROJECTION_GROUP_ID]).catch(() => undefined);
      const existing = new Set(await admin.listTopics());
      const mine = Object.values(config.kafka.topics).filter((name) => existing.has(name));
      if (mine.length > 0) await admin.deleteTopics({ topics: mine, timeout: 5_000 });
    } catch {
      // left for the stack's reset
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  });
  return env;
}
