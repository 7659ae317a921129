import type { Config } from '../config.js';
import type { Admin, Kafka } from '../storage/kafka.js';

/** Topic names, partitions and replication factor: `config.kafka` fits. */
export type TopicSettings = Pick<Config['kafka'], 'topics' | 'partitions' | 'replicationFactor'>;

/** How long createTopics waits for the new topics' partition leaders, ms. */
const CREATE_TIMEOUT_MS = 10_000; // 10 s

/** True when every error inside `err` (an aggregate or a single protocol error) says the topic exists. */
function onlyAlreadyExists(err: unknown): boolean {
  const { type, errors } = err as { type?: unknown; errors?: unknown };
  if (Array.isArray(errors) && errors.length > 0) return errors.every(onlyAlreadyExists);
  return type === 'TOPIC_ALREADY_EXISTS';
}

/**
 * Creates the inventory, orders and payments topics that do not exist yet, with the configured
 * partitions and replication factor; existing topics are left as they are. Safe to call from several
 * nodes at once: losing the creation race to another node is success. `admin` must be connected.
 * Resolves with the topics that were missing (created now, by this call or by a racing node).
 */
export async function ensureTopics(admin: Admin, settings: TopicSettings): Promise<string[]> {
  const wanted = [...new Set(Object.values(settings.topics))];
  const present = new Set(await admin.listTopics());
  const missing = wanted.filter((topic) => !present.has(topic));
  if (missing.length === 0) return [];
  try {
    // KafkaJS answers false (no throw) when another node created all of them first.
    await admin.createTopics({
      topics: missing.map((topic) => ({
        topic,
        numPartitions: settings.partitions,
        replicationFactor: settings.replicationFactor,
      })),
      waitForLeaders: true,
      timeout: CREATE_TIMEOUT_MS,
    });
  } catch (err) {
    if (!onlyAlreadyExists(err)) throw err;
  }
  return missing;
}

/** `ensureTopics` through an admin client of its own, connected for the call and closed after. */
export async function ensureTopicsWithNewAdmin(kafka: Kafka, settings: TopicSettings): Promise<string[]> {
  const admin = kafka.admin();
  try {
    await admin.connect();
    return await ensureTopics(admin, settings);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}
