import type { TemplatedApp } from 'uWebSockets.js';
import type { Logger } from '../logger.js';
import { duplicateRedis, type Redis } from '../storage/redis.js';
import { encodeFrame, stockFrame } from './frames.js';
import { every, type Periodic } from '../timeouts.js';
import type { StockState, WireFormat } from './types.js';

/** Reads the current stock of products (the catalog: Redis, then the replica); undefined = no such product. */
export type ReadStocks = (ids: readonly number[]) => Promise<(StockState | undefined)[]>;

export interface StockFeedOptions {
  app: TemplatedApp;
  /** The shared client (publishes); the feed subscribes on a duplicate of it. */
  redis: Redis;
  /** Redis pub/sub channel every node publishes its committed changes to. */
  channel: string;
  readStocks: ReadStocks;
  logger: Logger;
  /** Products with local subscribers are re-read this often, healing a lost pub/sub message, ms. Default 5000. */
  resyncMs?: number;
  /** Every change another node committed, as it arrives (the node's memory tier of reads). Must not throw. */
  onChange?: (productId: number, stock: number, version: number) => void;
  /** The feed delivers every change (subscribed) or may have lost some (connection down). Must not throw. */
  onLive?: (live: boolean) => void;
}

/** The uWS topic of a product's changes in one wire format. */
export const topicOf = (format: WireFormat, productId: number): string =>
  `${format === 'json' ? 'j' : 'm'}:${productId}`;

const FORMATS: readonly WireFormat[] = ['json', 'msgpack'];

/** The pub/sub message of a change: `productId:stock:version:at`. */
const messageOf = (c: StockState): string => `${c.productId}:${c.stock}:${c.version}:${c.at}`;

/** Fractional epoch ms, comparable between processes of one machine (commit → subscriber latency). */
export const nowMs = (): number => Math.round((performance.timeOrigin + performance.now()) * 100) / 100;

/**
 * The newest committed stock of every product this node's subscribers follow, and its fan-out.
 * A change committed on its owner is published to the node's own subscribers at once and to Redis
 * pub/sub for the other nodes; each node publishes to its subscribers through uWS topics (one
 * `app.publish` per format, never a loop over sockets). Versions decide: an update not newer than the
 * one already published (the owner's own echo, a late message from a previous owner) is dropped.
 */
export class StockFeed {
  /** Latest state per product with at least one local subscriber. */
  private readonly latest = new Map<number, StockState>();
  /** Changes committed on this node in this event-loop turn; published together, off the commit path. */
  private queued: (StockState & { announced: boolean })[] = [];
  private subscriber: Redis | undefined;
  private resyncTimer: Periodic | undefined;
  private readonly counts = { committed: 0, received: 0, published: 0, stale: 0, publishFailures: 0 };

  constructor(private readonly options: StockFeedOptions) {}

  /** Subscribes to the channel (on a connection of its own); a reconnect re-reads every followed product. */
  async start(): Promise<void> {
    const { redis, channel, logger } = this.options;
    const subscriber = duplicateRedis(redis, { enableOfflineQueue: true, lazyConnect: false });
    this.subscriber = subscriber;
    subscriber.on('error', () => undefined); // reconnects by itself; the shared client reports Redis trouble
    subscriber.on('message', (_channel: string, message: string) => this.received(message));
    let connectedBefore = false;
    subscriber.on('close', () => this.options.onLive?.(false));
    subscriber.on('ready', () => {
      if (connectedBefore) {
        // Messages published while the connection was down are lost: read what they would have said.
        void this.resync();
        // ioredis sent SUBSCRIBE again on ready; a PING answered after it means changes flow again.
        subscriber.ping().then(
          () => this.options.onLive?.(true),
          () => undefined,
        );
      }
      connectedBefore = true;
    });
    await subscriber.subscribe(channel).then(
      () => this.options.onLive?.(true),
      (err: unknown) =>
        logger.warn({ err: (err as Error).message }, 'stock channel subscribe failed; retried on reconnect'),
    );
    const resyncMs = this.options.resyncMs ?? 5_000;
    this.resyncTimer = every(resyncMs, () => void this.resync(), { unref: true });
  }

  stop(): void {
    this.options.onLive?.(false);
    this.resyncTimer?.stop();
    this.subscriber?.disconnect();
    this.subscriber = undefined;
  }

  /**
   * A committed change on this node (the product's owner). Cheap: the publishing happens on the next turn.
   * `announced`: the write-through already published `publication(...)` to the other nodes.
   */
  committed(productId: number, stock: number, version: number, announced = false): void {
    this.counts.committed += 1;
    if (this.queued.length === 0) setImmediate(() => this.flushQueued());
    this.queued.push({ productId, stock, version, at: nowMs(), announced });
  }

  /** The other nodes' message of a change committed now (for a write-through to publish). */
  publication(productId: number, stock: number, version: number): { channel: string; message: string } {
    return { channel: this.options.channel, message: messageOf({ productId, stock, version, at: nowMs() }) };
  }

  /** Reads the current stock of products for snapshots (the catalog). */
  readStocks(ids: readonly number[]): Promise<(StockState | undefined)[]> {
    return this.options.readStocks(ids);
  }

  /** The newest state this node knows of a product it has subscribers for. */
  latestOf(productId: number): StockState | undefined {
    return this.latest.get(productId);
  }

  /** Records a state read for a new subscriber (a snapshot); returns the newest known, which it sends. */
  remember(state: StockState): StockState {
    const known = this.latest.get(state.productId);
    if (known !== undefined && known.version >= state.version) return known;
    this.latest.set(state.productId, state);
    return state;
  }

  /** The last local subscriber of a product left. */
  forget(productId: number): void {
    const { app } = this.options;
    if (FORMATS.every((f) => app.numSubscribers(topicOf(f, productId)) === 0)) this.latest.delete(productId);
  }

  stats() {
    return { followedProducts: this.latest.size, ...this.counts };
  }

  private flushQueued(): void {
    const changes = this.queued;
    this.queued = [];
    const { redis, channel, logger } = this.options;
    const failed = (err: unknown): void => {
      this.counts.publishFailures += 1;
      if (this.counts.publishFailures % 100 === 1)
        logger.warn({ err: (err as Error).message }, 'stock change not published to Redis');
    };
    // Changes their write-through announced already are not published again.
    const messages = changes.filter((c) => !c.announced).map(messageOf);
    if (messages.length === 1) redis.publish(channel, messages[0]!).catch(failed);
    else if (messages.length > 1) {
      // A turn's changes (a commit cycle of many products) go to Redis in one write.
      const pipeline = redis.pipeline();
      for (const message of messages) void pipeline.publish(channel, message);
      pipeline.exec().then((results) => {
        for (const [err] of results ?? []) if (err) failed(err);
      }, failed);
    }
    for (const change of changes) this.publishLocal(change);
  }

  private received(message: string): void {
    this.counts.received += 1;
    const [productId, stock, version, at] = message.split(':').map(Number);
    if (productId === undefined || stock === undefined || version === undefined) return;
    this.options.onChange?.(productId, stock, version);
    this.publishLocal({ productId, stock, version, ...(at === undefined ? {} : { at }) });
  }

  /** Publishes a state newer than the last one to this node's subscribers of the product. */
  private publishLocal(state: StockState): void {
    const { app } = this.options;
    const known = this.latest.get(state.productId);
    if (known === undefined) {
      // Nobody here follows it (a subscription in progress records its snapshot itself).
      const followed = FORMATS.some((f) => app.numSubscribers(topicOf(f, state.productId)) > 0);
      if (!followed) return;
    } else if (known.version >= state.version) {
      this.counts.stale += 1;
      return;
    }
    this.latest.set(state.productId, state);
    for (const format of FORMATS) {
      const topic = topicOf(format, state.productId);
      if (app.numSubscribers(topic) === 0) continue;
      app.publish(topic, encodeFrame(format, stockFrame(state)), format === 'msgpack');
      this.counts.published += 1;
    }
  }

  /** Re-reads every followed product and publishes what is newer than the last published state. */
  private async resync(): Promise<void> {
    const ids = [...this.latest.keys()];
    if (ids.length === 0) return;
    try {
      const states = await this.options.readStocks(ids);
      for (const state of states) if (state !== undefined) this.publishLocal(state);
    } catch (err) {
      this.options.logger.warn({ err: (err as Error).message }, 'stock resync failed; retried later');
    }
  }
}
