import type { Config } from '../config.js';
import type { Admin, Kafka } from '../storage/kafka.js';
import { AppError } from '../errors.js';

/** Topic names, partitions and replication factor: `config.kafka` fits. */
export type TopicSettings = Pick<Config['kafka'], 'topics' | 'partitions' | 'replicationFactor'>;

/** How long createTopics waits for the new topics' partition leaders, ms. */
const CREATE_TIMEOUT_MS = 10_000; // 10 s
/** Pause between looks at a new topic's metadata while its leaders are not known everywhere yet, ms. */
const LEADER_POLL_MS = 100;
/** What a broker answers about a topic created a moment ago, until the new metadata reaches it. */
const NOT_YET_KNOWN = new Set(['UNKNOWN_TOPIC_OR_PARTITION', 'LEADER_NOT_AVAILABLE']);

/**
 * `min.insync.replicas` of the topics the service creates: every replica but one must have an event before
 * an acks=all send is answered, so losing one broker loses no acknowledged event and stops no write
 * (3 replicas: 2; 2 replicas: 1; 1: 1).
 */
export function minInSyncReplicas(replicationFactor: number): number {
  return Math.max(1, replicationFactor - 1);
}

/** True when every error inside `err` (an aggregate or a single protocol error) says the topic exists. */
function onlyAlreadyExists(err: unknown): boolean {
  const { type, errors } = err as { type?: unknown; errors?: unknown };
  if (Array.isArray(errors) && errors.length > 0) return errors.every(onlyAlreadyExists);
  return type === 'TOPIC_ALREADY_EXISTS';
}

/**
 * Waits until every partition of `topics` has a leader. KafkaJS's own wait (createTopics' waitForLeaders)
 * fails at once when the broker it asks has not heard of the new topic yet, which happens on a cluster
 * of several brokers: the controller's metadata reaches each broker a moment later.
 */
async function waitForLeaders(admin: Admin, topics: string[]): Promise<void> {
  const deadline = Date.now() + CREATE_TIMEOUT_MS;
  for (;;) {
    try {
      const { topics: found } = await admin.fetchTopicMetadata({ topics });
      if (found.every((topic) => topic.partitions.every((p) => p.leader >= 0))) return;
    } catch (err) {
      if (!NOT_YET_KNOWN.has(String((err as { type?: unknown }).type)) || Date.now() > deadline) throw err;
    }
    if (Date.now() > deadline)
      throw new AppError(
        'DEPENDENCY_UNAVAILABLE',
        `topics ${topics.join(', ')} have no leader after ${CREATE_TIMEOUT_MS} ms`,
      );
    await new Promise((resolve) => setTimeout(resolve, LEADER_POLL_MS));
  }
}

/**
 * Creates the inventory, orders and payments topics that do not exist yet, with the configured
 * partitions and replication factor (and min.insync.replicas from it), and waits for their leaders;
 * existing topics are left as they are. Safe to call from several nodes at once: losing the creation
 * race to another node is success. `admin` must be connected. Resolves with the topics that were
 * missing (created now, by this call or by a racing node).
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
        configEntries: [
          { name: 'min.insync.replicas', value: String(minInSyncReplicas(settings.replicationFactor)) },
        ],
      })),
      waitForLeaders: false,
      timeout: CREATE_TIMEOUT_MS,
    });
  } catch (err) {
    if (!onlyAlreadyExists(err)) throw err;
  }
  await waitForLeaders(admin, missing);
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
