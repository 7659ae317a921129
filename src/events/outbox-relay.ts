import type { Logger } from '../logger.js';
import type { Kafka } from '../storage/kafka.js';
import type { Pool, PoolConnection, RowDataPacket } from '../storage/mysql.js';
import { AppError } from '../errors.js';
import { withTimeout } from '../timeouts.js';
import { OutboxProducer } from './outbox-producer.js';
import { deleteSent, readUnsentRows, unsentSpan } from './outbox-queries.js';
import type { TopicSettings } from './topics.js';

/** Sent rows stay this long for audit (and a replay by hand), then the relay deletes them. */
export const OUTBOX_RETENTION_MS = 24 * 60 * 60_000; // 24 h

export const relayDefaults = {
  // A node without the lock waits for it in MySQL (GET_LOCK with a timeout): it takes over the moment the
  // holder's connection goes, and wakes once per wait when nothing happens.
  lockWaitS: 5,
  lockRetryMs: 1_000, // 1 s: pause before trying again after MySQL failed
  firstBackoffMs: 50,
  maxBackoffMs: 1_000, // 1 s: retry cap while Kafka or MySQL is down
  // The poll backs off to this while the outbox stays empty: this node's commits wake it at once, so it is
  // how long another node's rows wait at most on an idle cluster.
  maxIdlePollMs: 2_000,
  stopWaitMs: 5_000, // 5 s: stop() waits this long for the batch in hand
  backlogRefreshMs: 1_000, // 1 s
  cleanupEveryMs: 10 * 60_000, // 10 min
  cleanupChunk: 1_000, // rows per DELETE, so no cleanup holds locks for long
  cleanupChunkPauseMs: 100,
} as const;

export interface OutboxRelayOptions {
  /** The primary: the relay takes one connection of it for the lock and all its queries. */
  primary: Pool;
  kafka: Kafka;
  /** `config.kafka`: the relay creates these topics if missing and publishes only rows of these topics. */
  topics: TopicSettings;
  /** Most events per Kafka send, but at least one row (config.outbox.batchSize). */
  batchSize: number;
  /**
   * Pause after a round that found rows, ms (config.outbox.pollMs). Rounds that find none double it up to
   * `maxIdlePollMs` (other nodes' commits are picked up within that); `nudge()` cuts any pause short.
   */
  pollMs: number;
  /** Longest pause while the outbox stays empty, ms. Default 2,000. */
  maxIdlePollMs?: number;
  logger: Logger;
  /** MySQL named lock (config.outbox.relayLock): the one relay holding it publishes, cluster-wide. */
  lockName: string;
  /**
   * How long a round woken by `nudge()` waits after the first commit that woke it, ms
   * (config.outbox.lingerMs; default 0): the commits of that window are read, sent to Kafka and stamped
   * sent in one round (three round trips for all of them), at any rate.
   */
  lingerMs?: number;
  /** Sent rows older than this are deleted, ms. Default OUTBOX_RETENTION_MS (24 h). */
  retentionMs?: number;
  /** Pause between cleanups, ms. Default 10 min. */
  cleanupEveryMs?: number;
}

export interface OutboxRelayStats {
  /** True while this node holds the relay lock, so it is the one publishing. */
  holdsLock: boolean;
  /** Events this node published since start. */
  published: number;
  /**
   * Unsent outbox rows (all topics), estimated from the id span, refreshed about once a second while rows
   * wait; 0 after a round that found none of this relay's topics' rows.
   */
  backlog: number | undefined;
  /** Sent rows deleted by the retention cleanup since start. */
  deleted: number;
  lastError: { message: string; at: string } | undefined;
  /** Since when Kafka or MySQL has been failing; undefined while healthy. */
  failingSince: string | undefined;
}

type Stage = 'kafka' | 'mysql';

const describe = (err: unknown): string => (err instanceof Error ? err.message || err.name : String(err));

/**
 * Publishes outbox rows to Kafka in id order, then stamps them sent. One relay publishes at a time
 * cluster-wide (MySQL GET_LOCK on a connection of its own: a crashed node's lock goes with its
 * connection). One serialized idempotent producer; rows wait in the outbox while Kafka is down.
 * At-least-once: a crash between send and stamp sends again, and consumers dedupe by event id.
 */
export class OutboxRelay {
  private readonly log: Logger;
  private readonly lockName: string;
  private readonly retentionMs: number;
  private readonly cleanupEveryMs: number;
  private readonly topicNames: string[];
  private lock: PoolConnection | undefined;
  /** The connection waiting in GET_LOCK (stop() interrupts the wait; once stopping, it is never pooled again). */
  private waiting: PoolConnection | undefined;
  private readonly producer: OutboxProducer;
  private loop: Promise<void> | undefined;
  private stopping = false;
  private nudged = false;
  private sleeper: { wake: () => void; wakeable: boolean } | undefined;
  private backoffMs: number = relayDefaults.firstBackoffMs;
  /** The next idle pause: pollMs after a round with rows, doubling while rounds find none. */
  private idlePollMs: number;
  private outage: { stage: Stage; since: number; attempts: number } | undefined;
  private lastError: OutboxRelayStats['lastError'];
  private published = 0;
  private deleted = 0;
  private backlog: number | undefined;
  private backlogAt = 0;
  private cleanupAt = 0;
  /** When the first commit not yet read by a round nudged (Date.now()). */
  private nudgedAt = 0;
  private readonly lingerMs: number;

  constructor(private readonly options: OutboxRelayOptions) {
    this.log = options.logger.child({ component: 'outbox-relay' });
    this.lockName = options.lockName;
    this.retentionMs = options.retentionMs ?? OUTBOX_RETENTION_MS;
    this.cleanupEveryMs = options.cleanupEveryMs ?? relayDefaults.cleanupEveryMs;
    this.lingerMs = options.lingerMs ?? 0;
    this.idlePollMs = options.pollMs;
    this.topicNames = [...new Set(Object.values(options.topics.topics))];
    this.producer = new OutboxProducer(options.kafka, options.topics);
  }

  /** Starts the loop: take the lock (or wait for it), then publish until stopped. */
  start(): void {
    if (this.loop) return;
    this.stopping = false;
    this.loop = this.run().catch((err: unknown) => {
      this.log.error({ err: describe(err) }, 'outbox relay loop stopped by a bug');
    });
  }

  /**
   * Ends a wait for the lock, finishes the batch in hand (waiting at most 5 s: a send may be retrying against a
   * dead broker), closes the producer and releases the lock. Rows of an abandoned send are sent again by the
   * next holder.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.sleeper?.wake();
    // Not awaited: the loop ends when the wait does, and the wait for the loop below is bounded.
    if (this.waiting !== undefined) void this.interruptWait(this.waiting);
    const finished =
      this.loop === undefined ||
      (await withTimeout(this.loop, relayDefaults.stopWaitMs, 'outbox relay stop').then(
        () => true,
        () => false,
      ));
    this.loop = undefined;
    await this.producer.close();
    const lock = this.lock;
    this.lock = undefined;
    if (lock === undefined) return;
    if (!finished) {
      lock.destroy(); // the loop may still use it: close it rather than hand it back to the pool
      return;
    }
    await lock.query('DO RELEASE_LOCK(?)', [this.lockName]).then(
      () => lock.release(),
      () => lock.destroy(),
    );
  }

  /**
   * Ends a GET_LOCK wait at once: MariaDB notices neither a closed socket nor a half-closed one until the wait
   * times out (`lockWaitS`), so stop() would take that long. KILL QUERY from another connection interrupts it
   * (a thread may kill its own user's queries); `tryTakeLock` then destroys the connection, as it does with
   * every connection it holds once stopping, so the id never names a pooled connection's next query.
   */
  private async interruptWait(conn: PoolConnection): Promise<void> {
    await this.options.primary.query('KILL QUERY ?', [conn.threadId]).catch((err: unknown) => {
      this.log.warn({ err: describe(err) }, 'could not interrupt the wait for the outbox relay lock');
      conn.destroy();
    });
  }

  /** Writers call this after committing outbox rows, so they are published without waiting a poll. */
  nudge(): void {
    if (!this.nudged) this.nudgedAt = Date.now();
    this.nudged = true;
    if (this.sleeper?.wakeable) this.sleeper.wake();
  }

  stats(): OutboxRelayStats {
    return {
      holdsLock: this.lock !== undefined,
      published: this.published,
      backlog: this.backlog,
      deleted: this.deleted,
      lastError: this.lastError,
      failingSince: this.outage ? new Date(this.outage.since).toISOString() : undefined,
    };
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      const lock = this.lock ?? (await this.tryTakeLock());
      if (lock === 'busy') continue; // the wait timed out: wait again
      if (lock === 'failed') {
        await this.pause(relayDefaults.lockRetryMs, false);
        continue;
      }
      const outcome = await this.publishBatch(lock);
      if (outcome === 'failed') {
        await this.pause(this.backoffMs, false);
        this.backoffMs = Math.min(this.backoffMs * 2, relayDefaults.maxBackoffMs);
      } else if (outcome !== 'full') {
        const maxIdle = Math.max(
          this.options.pollMs,
          this.options.maxIdlePollMs ?? relayDefaults.maxIdlePollMs,
        );
        this.idlePollMs = outcome === 'sent' ? this.options.pollMs : Math.min(this.idlePollMs * 2, maxIdle);
        await this.pause(this.idlePollMs, true);
        if (this.nudged) {
          this.idlePollMs = this.options.pollMs;
          // Woken by a commit: the commits of the next few ms join this round (one read, one Kafka send and
          // one stamp for all of them; at 100 purchases/s a round per commit cost ~8 round trips a purchase).
          const linger = this.nudgedAt + this.lingerMs - Date.now();
          if (linger > 0) await this.pause(linger, false);
        }
      }
    }
  }

  /** Waits up to lockWaitS for the lock: the lock's connection, 'busy' (held elsewhere), or 'failed'. */
  private async tryTakeLock(): Promise<PoolConnection | 'busy' | 'failed'> {
    let conn: PoolConnection | undefined;
    try {
      conn = await this.options.primary.getConnection();
      this.waiting = conn;
      if (this.stopping) throw new AppError('SHUTTING_DOWN', 'stopping');
      const [rows] = await conn.query<RowDataPacket[]>('SELECT GET_LOCK(?, ?) AS got', [
        this.lockName,
        relayDefaults.lockWaitS,
      ]);
      this.waiting = undefined;
      if (this.stopping) {
        // Taken as stop() ran: give it back (releasing the connection's named locks with it).
        conn.destroy();
        conn = undefined;
        return 'failed';
      }
      if (Number(rows[0]?.['got']) === 1) {
        this.lock = conn;
        conn = undefined;
        this.cleanupAt = Date.now() + Math.min(this.cleanupEveryMs, 60_000);
        this.log.info({ lock: this.lockName }, 'took the outbox relay lock; publishing from this node');
        this.recovered();
        return this.lock;
      }
      await this.refreshBacklog(conn);
      this.recovered();
      return 'busy';
    } catch (err) {
      this.waiting = undefined;
      conn?.destroy();
      conn = undefined;
      if (!this.stopping) this.failed('mysql', err);
      return 'failed';
    } finally {
      conn?.release();
    }
  }

  /** Drops the lock connection; the server releases the lock with it. */
  private dropLock(): void {
    this.lock?.destroy();
    this.lock = undefined;
    this.log.warn({ lock: this.lockName }, 'gave up the outbox relay lock after a MySQL error');
  }

  /** One round: read unsent rows, send them, stamp them sent; 'full' means more may be waiting. */
  private async publishBatch(lock: PoolConnection): Promise<'full' | 'sent' | 'idle' | 'failed'> {
    let stage: Stage = 'mysql';
    try {
      this.nudged = false; // rows committed before this read are in it; a later nudge wakes the next poll
      const rows = await readUnsentRows(lock, this.topicNames, this.options.batchSize);
      if (rows.length > 0) await this.refreshBacklog(lock);
      else this.noBacklog(); // an idle round costs one query
      if (rows.length > 0) {
        stage = 'kafka';
        await this.producer.send(rows);
        this.published += rows.reduce((n, r) => n + r.events.length, 0);
        stage = 'mysql';
        await lock.query('UPDATE outbox SET sent_at = NOW(3) WHERE id IN (?)', [rows.map((r) => r.id)]);
      }
      const full = rows.length >= this.options.batchSize;
      await this.cleanup(lock);
      this.recovered();
      return full ? 'full' : rows.length > 0 ? 'sent' : 'idle';
    } catch (err) {
      this.failed(stage, err);
      if (stage === 'mysql') this.dropLock();
      return 'failed';
    }
  }

  /** The outbox was just read empty (of this relay's topics). */
  private noBacklog(): void {
    this.backlog = 0;
    this.backlogAt = Date.now();
  }

  /** About once a second while rows wait: the unsent span (cheap, from the index). */
  private async refreshBacklog(conn: PoolConnection): Promise<void> {
    if (Date.now() - this.backlogAt < relayDefaults.backlogRefreshMs) return;
    this.backlog = await unsentSpan(conn);
    this.backlogAt = Date.now();
  }

  /** Deletes one chunk of rows sent before the retention; full chunks continue shortly after. */
  private async cleanup(conn: PoolConnection): Promise<void> {
    if (Date.now() < this.cleanupAt) return;
    const deleted = await deleteSent(conn, this.topicNames, this.retentionMs, relayDefaults.cleanupChunk);
    this.deleted += deleted;
    const more = deleted >= relayDefaults.cleanupChunk;
    this.cleanupAt = Date.now() + (more ? relayDefaults.cleanupChunkPauseMs : this.cleanupEveryMs);
  }

  /** Logs the first failure of an outage only; later attempts just update lastError. */
  private failed(stage: Stage, err: unknown): void {
    const message = describe(err);
    this.lastError = { message, at: new Date().toISOString() };
    if (this.outage?.stage === stage) {
      this.outage.attempts += 1;
      return;
    }
    this.outage = { stage, since: Date.now(), attempts: 1 };
    this.log.warn(
      { err: message, stage },
      stage === 'kafka'
        ? 'outbox relay cannot publish to Kafka; rows wait in the outbox, retrying'
        : 'outbox relay cannot use MySQL; retrying',
    );
  }

  private recovered(): void {
    this.backoffMs = relayDefaults.firstBackoffMs;
    if (this.outage === undefined) return;
    const { stage, since, attempts } = this.outage;
    this.outage = undefined;
    this.log.info({ stage, downMs: Date.now() - since, attempts }, 'outbox relay recovered');
  }

  /** Sleeps `ms`; stop() always wakes it, nudge() only when `wakeable` (not during backoff). */
  private pause(ms: number, wakeable: boolean): Promise<void> {
    if (this.stopping || (wakeable && this.nudged)) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.sleeper = undefined;
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleeper = { wake, wakeable };
    });
  }
}
