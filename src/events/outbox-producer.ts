import type { Message, Producer } from 'kafkajs';
import { AppError } from '../errors.js';
import { keyPartitioner, type Kafka } from '../storage/kafka.js';
import { withTimeout } from '../timeouts.js';
import { REQUEST_ID_HEADER, type OutboxEntry } from './envelope.js';
import { ensureTopicsWithNewAdmin, type TopicSettings } from './topics.js';

/** KafkaJS protocol errors after which the idempotent producer's id or sequences are unusable. */
const PRODUCER_STATE_ERRORS = new Set([
  'OUT_OF_ORDER_SEQUENCE_NUMBER',
  'DUPLICATE_SEQUENCE_NUMBER',
  'UNKNOWN_PRODUCER_ID',
  'INVALID_PRODUCER_EPOCH',
  'INVALID_PRODUCER_ID_MAPPING',
  'PRODUCER_FENCED',
]);

export const producerDefaults = {
  sendTimeoutMs: 30_000, // 30 s: a send hung longer than this is abandoned with its producer
  // KafkaJS's own retries of one send (~0.3 s), then the relay's backoff: a send keeps the brokers it chose
  // first through all its retries (producer/sendMessages.js), so after a partition leader dies only a new
  // send reaches the new leader. Few retries: the relay's next round does, within a second of the move.
  producerRetries: 2,
} as const;

/** An outbox row as the relay read it. */
export interface OutboxRow {
  id: number;
  topic: string;
  /** The row's encoded events in order, each with its key (one event, or a commit's packed events). */
  events: OutboxEntry[];
}

/** True when `err` or one of its causes says the producer's id or sequences are broken. */
function producerStateError(err: unknown): boolean {
  for (let e = err as { type?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (typeof e.type === 'string' && PRODUCER_STATE_ERRORS.has(e.type)) return true;
  }
  return false;
}

/**
 * The outbox relay's Kafka side: one idempotent producer, one send at a time (KafkaJS's idempotent producer
 * breaks with concurrent sends), the relay's topics created on first use, and a send that resolves without
 * writing all its partitions treated as failed. A hung send or a broken producer id drops the producer; the
 * next send starts a fresh one.
 */
export class OutboxProducer {
  private producer: Producer | undefined;
  /**
   * `topic:partition` of every message of the send in flight, as the partitioner assigned them (on every
   * attempt of KafkaJS's retries): each must be in the send's result, see `send`.
   */
  private readonly assigned = new Set<string>();
  private topicsEnsured = false;
  constructor(
    private readonly kafka: Kafka,
    private readonly topics: TopicSettings,
  ) {}

  /** One sendBatch at a time on one producer: KafkaJS's idempotent producer breaks with concurrent sends. */
  async send(rows: readonly OutboxRow[]): Promise<void> {
    if (!this.topicsEnsured) {
      await ensureTopicsWithNewAdmin(this.kafka, this.topics);
      this.topicsEnsured = true;
    }
    const producer = await this.connectedProducer();
    const byTopic = new Map<string, Message[]>();
    for (const row of rows) {
      let messages = byTopic.get(row.topic);
      if (messages === undefined) byTopic.set(row.topic, (messages = []));
      // key = product id: its events share a partition; the request id that made the event is a header
      for (const { key, value: e, requestId } of row.events) {
        const value = Buffer.from(e.buffer, e.byteOffset, e.byteLength);
        messages.push(
          requestId === undefined
            ? { key, value }
            : { key, value, headers: { [REQUEST_ID_HEADER]: requestId } },
        );
      }
    }
    const topicMessages = [...byTopic].map(([topic, messages]) => ({ topic, messages }));
    this.assigned.clear();
    try {
      const written = await withTimeout(
        producer.sendBatch({ acks: -1, topicMessages }),
        producerDefaults.sendTimeoutMs,
        'outbox send',
      );
      // KafkaJS 2.2.4 can resolve a send without writing some of its partitions (kafkajs#1303,
      // producer/sendMessages.js): when a partition leader dies, its retry skips every broker that answered
      // the first attempt, so the dead leader's partitions, now led by one of those, are never sent. A
      // partition missing from the result fails the send: its rows stay unsent and go again next round
      // (the partitions that were written get their events twice; consumers deduplicate by eventId).
      const answered = new Set(written.map((r) => `${r.topicName}:${r.partition}`));
      const dropped = [...this.assigned].filter((partition) => !answered.has(partition));
      if (dropped.length > 0)
        throw new AppError(
          'DEPENDENCY_UNAVAILABLE',
          `Kafka send resolved without writing ${dropped.join(', ')} (kafkajs#1303); sent again`,
        );
    } catch (err) {
      // A hung send or a broken producer id: the next attempt starts a fresh producer (new id, sequences).
      const hung = err instanceof AppError && err.code === 'DEADLINE_EXCEEDED';
      if (!hung && !producerStateError(err)) throw err;
      this.producer = undefined;
      void producer.disconnect().catch(() => undefined);
      throw err;
    }
  }

  private async connectedProducer(): Promise<Producer> {
    if (this.producer) return this.producer;
    const producer = this.kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      retry: { retries: producerDefaults.producerRetries },
      allowAutoTopicCreation: false,
      createPartitioner: () => {
        const partition = keyPartitioner();
        return (args) => {
          const chosen = partition(args);
          this.assigned.add(`${args.topic}:${chosen}`);
          return chosen;
        };
      },
    });
    try {
      await producer.connect();
    } catch (err) {
      void producer.disconnect().catch(() => undefined);
      throw err;
    }
    this.producer = producer;
    return producer;
  }

  /** Disconnects the producer, if any (the relay's stop). */
  async close(): Promise<void> {
    const producer = this.producer;
    this.producer = undefined;
    await producer?.disconnect().catch(() => undefined);
  }
}
