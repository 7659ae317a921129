import type { Consumer, ConsumerCrashEvent, EachBatchPayload, KafkaMessage } from 'kafkajs';
import {
  decodeEvent,
  EVENT_SCHEMA_VERSION,
  REQUEST_ID_HEADER,
  type EventEnvelope,
} from '../events/envelope.js';
import { ensureTopicsWithNewAdmin, type TopicSettings } from '../events/topics.js';
import type { Logger } from '../logger.js';
import { consumerDefaults, type Kafka } from '../storage/kafka.js';
import type { Pool } from '../storage/mysql.js';
import { ORDER_EVENT_TYPES, toOrderEvent, type OrderEvent } from './sales-rules.js';
import { applyOrderEvents } from './sales-store.js';

export const projectionDefaults = {
  chunkSize: 1_000, // events per MySQL transaction
  // A fetch waits for this much (or `fetchWaitMs`, a setting): under load, fuller batches and fewer
  // transactions.
  fetchMinBytes: 64 * 1024, // 64 KiB, about 400 events
  firstBackoffMs: 100,
  maxBackoffMs: 1_000, // 1 s: retry cap while MySQL or Kafka is down
} as const;

export interface SalesProjectionOptions {
  kafka: Kafka;
  /** Where the projection tables live (the primary). */
  primary: Pool;
  /** `config.kafka`: the orders and payments topics are consumed (all three are created if missing). */
  topics: TopicSettings;
  logger: Logger;
  /** Kafka consumer group (config.projection.groupId). */
  groupId: string;
  /** Events applied per MySQL transaction. Default 1,000. */
  chunkSize?: number;
  /**
   * Longest wait of a fetch for `fetchMinBytes`, and the heartbeat interval (config.projection.fetchWaitMs):
   * how long an idle consumer sleeps between fetches (each empty answer costs every broker a request and
   * this process a decode), how late a trickle of events is projected at most, and how long stop() may wait
   * for the fetch in flight. At most a third of the session timeout (10 s): heartbeats go out between
   * fetches only.
   */
  fetchWaitMs: number;
}

export interface SalesProjectionStats {
  /** Connected, subscribed and consuming. */
  running: boolean;
  /** Order events applied (first delivery of their event id). */
  applied: number;
  /** Redelivered event ids, skipped. */
  duplicates: number;
  /** Undecodable messages, unknown schema versions and invalid order events, logged and skipped. */
  skipped: number;
  /** Well-formed events this projection has no use for (payments). */
  ignored: number;
  /** Terminal events that met the opposite terminal status (logged; the first one stays). */
  conflicts: number;
  lastError: { message: string; at: string } | undefined;
}

const ORDER_TYPES: ReadonlySet<string> = new Set(ORDER_EVENT_TYPES);

const describe = (err: unknown): string => (err instanceof Error ? err.message || err.name : String(err));

/**
 * Consumes the orders and payments topics into product_sales and order_history. Each chunk of events
 * is one MySQL transaction that records the event ids (duplicates change nothing); offsets are
 * resolved only after it commits, and KafkaJS commits resolved offsets after each batch.
 */
export class SalesProjection {
  private readonly log: Logger;
  private readonly groupId: string;
  private readonly chunkSize: number;
  private consumer: Consumer | undefined;
  /** The consumer being started or running: its crash starts the next one (`consumer` is set once it runs). */
  private current: Consumer | undefined;
  private launching: Promise<void> | undefined;
  private stopped = true;
  private wakeSleeper: (() => void) | undefined;
  private failingSince: number | undefined;
  private readonly counts = { applied: 0, duplicates: 0, skipped: 0, ignored: 0, conflicts: 0 };
  private lastError: SalesProjectionStats['lastError'];

  constructor(private readonly options: SalesProjectionOptions) {
    this.groupId = options.groupId;
    this.chunkSize = options.chunkSize ?? projectionDefaults.chunkSize;
    this.log = options.logger.child({ component: 'sales-projection', groupId: this.groupId });
  }

  /** Connects and subscribes in the background, retrying while Kafka is down. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.launching = this.launch();
  }

  /** Lets the chunk in hand commit, commits its offsets, leaves the group and disconnects. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeSleeper?.();
    await this.launching;
    const consumer = this.consumer;
    this.consumer = undefined;
    this.current = undefined;
    await consumer?.disconnect().catch((err: unknown) => {
      this.log.warn({ err: describe(err) }, 'sales projection did not disconnect cleanly');
    });
  }

  stats(): SalesProjectionStats {
    return { running: this.consumer !== undefined, ...this.counts, lastError: this.lastError };
  }

  private async launch(): Promise<void> {
    let backoffMs: number = projectionDefaults.firstBackoffMs;
    while (!this.stopped) {
      const consumer = this.options.kafka.consumer({
        groupId: this.groupId,
        minBytes: projectionDefaults.fetchMinBytes,
        maxWaitTimeInMs: this.options.fetchWaitMs,
        ...consumerDefaults,
        heartbeatInterval: this.options.fetchWaitMs,
        retry: { ...consumerDefaults.retry },
      });
      this.current = consumer;
      try {
        await ensureTopicsWithNewAdmin(this.options.kafka, this.options.topics);
        consumer.on(consumer.events.CRASH, (event) => this.onCrash(event, consumer));
        await consumer.connect();
        const { orders, payments } = this.options.topics.topics;
        await consumer.subscribe({ topics: [orders, payments], fromBeginning: true });
        await consumer.run({
          autoCommit: true,
          eachBatchAutoResolve: false,
          eachBatch: (payload) => this.handleBatch(payload),
        });
        // run() resolves even when joining the group crashed (KafkaJS reports it as a CRASH event only).
        if (this.current !== consumer) return;
        this.consumer = consumer;
        this.recovered();
        return;
      } catch (err) {
        this.failed(err, 'sales projection cannot start consuming; retrying');
        await consumer.disconnect().catch(() => undefined);
        await this.sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, projectionDefaults.maxBackoffMs);
      }
    }
  }

  /**
   * KafkaJS restarts a consumer after retriable errors; after any other crash (a broker lost mid-join:
   * "Failed to find group coordinator", tulios/kafkajs#1445, #1630), it stops for good: start a new one.
   * Also when the crash came while the consumer was still joining, before `run()` resolved.
   */
  private onCrash(event: ConsumerCrashEvent, consumer: Consumer): void {
    const { error, restart } = event.payload;
    this.failed(error, 'sales projection consumer crashed');
    if (restart || this.stopped || this.current !== consumer) return;
    this.consumer = undefined;
    this.current = undefined;
    const previous = this.launching ?? Promise.resolve();
    this.launching = previous
      .then(() => this.sleep(projectionDefaults.maxBackoffMs))
      .then(() => this.launch());
  }

  private async handleBatch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    for (let start = 0; start < batch.messages.length; start += this.chunkSize) {
      if (!payload.isRunning() || payload.isStale()) return;
      const messages = batch.messages.slice(start, start + this.chunkSize);
      const events = messages.flatMap((m) => this.decode(m, batch.topic, batch.partition));
      if (events.length > 0 && !(await this.applyUntilDone(events, payload))) return;
      payload.resolveOffset(messages[messages.length - 1]!.offset);
      await payload.heartbeat();
    }
  }

  /** Retries the transaction while MySQL fails; false when the consumer stops or rebalances first. */
  private async applyUntilDone(events: OrderEvent[], payload: EachBatchPayload): Promise<boolean> {
    let backoffMs: number = projectionDefaults.firstBackoffMs;
    for (;;) {
      try {
        const result = await applyOrderEvents(this.options.primary, events);
        this.counts.applied += result.applied;
        this.counts.duplicates += result.duplicates;
        this.counts.conflicts += result.conflicts.length;
        if (result.conflicts.length > 0) {
          this.log.warn(
            { eventIds: result.conflicts },
            'order reached both CONFIRMED and CANCELLED; kept the first',
          );
        }
        this.recovered();
        return true;
      } catch (err) {
        this.failed(err, 'sales projection cannot write MySQL; retrying');
        if (!payload.isRunning() || payload.isStale()) return false;
        await this.sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, projectionDefaults.maxBackoffMs);
        await payload.heartbeat(); // throws when the group rebalances: KafkaJS redelivers from the last commit
      }
    }
  }

  /** Decodes one message; undecodable, unknown-version and invalid ones are logged, counted, skipped. */
  private decode(message: KafkaMessage, topic: string, partition: number): OrderEvent[] {
    const skip = (reason: string): OrderEvent[] => {
      this.counts.skipped += 1;
      // The request that made the event, from its header (README "Logs"), so this line joins its trail.
      const reqId = message.headers?.[REQUEST_ID_HEADER]?.toString();
      this.log.warn({ topic, partition, offset: message.offset, reqId, reason }, 'skipped an event');
      return [];
    };
    if (message.value === null) return skip('empty message');
    let envelope: EventEnvelope;
    try {
      envelope = decodeEvent(message.value);
    } catch (err) {
      return skip(`undecodable: ${describe(err)}`);
    }
    if (envelope.schemaVersion !== EVENT_SCHEMA_VERSION) {
      return skip(`unknown schema version ${String(envelope.schemaVersion)}`);
    }
    if (!ORDER_TYPES.has(envelope.type)) {
      this.counts.ignored += 1;
      return [];
    }
    const event = toOrderEvent(envelope);
    return typeof event === 'string' ? skip(`${envelope.type} ${envelope.eventId}: ${event}`) : [event];
  }

  /** Logs the first failure of an outage only; later ones just update lastError. */
  private failed(err: unknown, message: string): void {
    this.lastError = { message: describe(err), at: new Date().toISOString() };
    if (this.failingSince !== undefined) return;
    this.failingSince = Date.now();
    this.log.warn({ err: this.lastError.message }, message);
  }

  private recovered(): void {
    if (this.failingSince === undefined) return;
    this.log.info({ downMs: Date.now() - this.failingSince }, 'sales projection recovered');
    this.failingSince = undefined;
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.wakeSleeper = undefined;
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.wakeSleeper = wake;
    });
  }
}
