import { readFileSync } from 'node:fs';
import { storageAsset } from './assets.js';
import { duplicateRedis, type Redis } from './redis.js';

export interface ShardOwner {
  node: string;
  epoch: number;
}

export interface Membership {
  /** Live node ids (heartbeat within the TTL), sorted. */
  nodes: string[];
  /** Each live node's last heartbeat (epoch ms, its own clock). */
  lastSeen: Map<string, number>;
  /** Internal address (`host:port`) of each live node. */
  addresses: Map<string, string>;
}

interface LeaseScripts {
  acquireShards(...args: (string | number)[]): Promise<number[]>;
  releaseShards(...args: (string | number)[]): Promise<number>;
  evictNode(...args: (string | number)[]): Promise<number>;
  heartbeatRenew(...args: (string | number)[]): Promise<[number[], string[], string[]]>;
}

/** One ownership tick's answer: the leases lost, who is alive, and (when asked) every node's address. */
export interface TickResult {
  lost: number[];
  nodes: string[];
  lastSeen: Map<string, number>;
  addresses: Map<string, string> | undefined;
}

const lua = (name: string): string => readFileSync(storageAsset(`lua/${name}.lua`), 'utf8');

/**
 * Shard leases and node membership in Redis: `shard:{n}` = `node|epoch` with a TTL, epochs from a per-shard
 * counter; `nodes` a sorted set of heartbeats; `node-addr` the nodes' internal addresses; a pub/sub
 * channel that tells every node to rebalance now. Redis only says who *should* own a shard: MySQL row
 * versions fence every write.
 */
export class RedisShardLeases {
  private readonly scripts: LeaseScripts;
  /** Lease sets already encoded for the renewal script (`shard:epoch shard:epoch …`). */
  private readonly encoded = new WeakMap<ReadonlyMap<number, number>, string>();

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {
    if (!('acquireShards' in redis)) {
      redis.defineCommand('acquireShards', { numberOfKeys: 0, lua: lua('acquire-shards') });
      redis.defineCommand('releaseShards', { numberOfKeys: 0, lua: lua('release-shards') });
      redis.defineCommand('evictNode', { numberOfKeys: 0, lua: lua('evict-node') });
      redis.defineCommand('heartbeatRenew', { numberOfKeys: 0, lua: lua('heartbeat-renew') });
    }
    this.scripts = redis as unknown as LeaseScripts;
  }

  get channel(): string {
    return `${this.prefix}cluster-events`;
  }

  /** Tries to take free shards; resolves with the granted (or already held) ones and their epochs. */
  async acquire(node: string, ttlMs: number, shards: readonly number[]): Promise<Map<number, number>> {
    if (shards.length === 0) return new Map();
    const epochs = await this.scripts.acquireShards(this.prefix, node, ttlMs, Date.now(), ...shards);
    const granted = new Map<number, number>();
    shards.forEach((shard, i) => {
      const epoch = Number(epochs[i]);
      if (epoch > 0) granted.set(shard, epoch);
    });
    return granted;
  }

  /**
   * One ownership tick in one round trip (a script): records this node as alive at `address`, renews
   * `owned` (every lease still held at its epoch; `lost` are the others), and returns who is alive
   * (heartbeats within `ttlMs`) and, with `withAddresses`, every node's address. `owned` is encoded once
   * per Map object (ticks run twice a second with the same set): pass a new Map when the set changes,
   * never a mutated one.
   */
  async tick(
    node: string,
    address: string,
    ttlMs: number,
    owned: ReadonlyMap<number, number>,
    withAddresses: boolean,
  ): Promise<TickResult> {
    const now = Date.now();
    const [lost, live, addresses] = await this.scripts.heartbeatRenew(
      this.prefix,
      node,
      ttlMs,
      now,
      address,
      now - ttlMs,
      now - 10 * ttlMs,
      this.encode(owned),
      withAddresses ? 1 : 0,
    );
    const lastSeen = new Map<string, number>();
    for (let i = 0; i + 1 < live.length; i += 2) lastSeen.set(live[i]!, Number(live[i + 1]));
    return {
      lost: lost.length === 0 ? NONE : lost.map(Number),
      nodes: [...lastSeen.keys()].sort(),
      lastSeen,
      addresses: withAddresses ? pairsToMap(addresses) : undefined,
    };
  }

  /** Every node's internal address (one HGETALL). */
  async addresses(): Promise<Map<string, string>> {
    return new Map(Object.entries(await this.redis.hgetall(`${this.prefix}node-addr`)));
  }

  /** `shard:epoch shard:epoch …`, encoded once per Map object. */
  private encode(owned: ReadonlyMap<number, number>): string {
    let pairs = this.encoded.get(owned);
    if (pairs === undefined) {
      pairs = [...owned].map(([shard, epoch]) => `${shard}:${epoch}`).join(' ');
      this.encoded.set(owned, pairs);
    }
    return pairs;
  }

  async release(node: string, owned: ReadonlyMap<number, number>): Promise<number> {
    if (owned.size === 0) return 0;
    const pairs = [...owned].flatMap(([shard, epoch]) => [shard, epoch]);
    return Number(await this.scripts.releaseShards(this.prefix, node, ...pairs));
  }

  /** Who holds each shard now (one MGET). */
  async owners(shardCount: number): Promise<(ShardOwner | undefined)[]> {
    const keys = Array.from({ length: shardCount }, (_, shard) => `${this.prefix}shard:${shard}`);
    const values = await this.redis.mget(...keys);
    return values.map((value) => {
      if (value === null) return undefined;
      const bar = value.lastIndexOf('|');
      return { node: value.slice(0, bar), epoch: Number(value.slice(bar + 1)) };
    });
  }

  /**
   * Takes a dead node out at once: its membership and address, and frees every shard lease it holds.
   * Only when its last heartbeat is at least `silenceMs` old (the caller has seen its port refuse
   * connections). Resolves with the leases freed, or undefined when the node was not evictable.
   */
  async evict(node: string, silenceMs: number, shardCount: number): Promise<number | undefined> {
    const freed = Number(await this.scripts.evictNode(this.prefix, node, silenceMs, Date.now(), shardCount));
    return freed < 0 ? undefined : freed;
  }

  /** Takes a node out of the membership at once (a graceful leave). */
  async leave(node: string): Promise<void> {
    await this.redis.multi().zrem(`${this.prefix}nodes`, node).hdel(`${this.prefix}node-addr`, node).exec();
  }

  /** Calls `onMessage` for every announcement, on a connection of its own; resolves with an unsubscribe. */
  async subscribe(onMessage: (message: string) => void): Promise<() => void> {
    const subscriber = duplicateRedis(this.redis, { enableOfflineQueue: true, lazyConnect: false });
    subscriber.on('error', () => undefined); // reconnects by itself; the renewal loop reports Redis trouble
    subscriber.on('message', (_channel: string, message: string) => onMessage(message));
    await subscriber.subscribe(this.channel);
    return () => subscriber.disconnect();
  }

  /** Tells every node to rebalance now (after a join, a leave or a release). */
  async announce(reason: string): Promise<void> {
    await this.redis.publish(this.channel, reason);
  }
}

const NONE: number[] = [];

function pairsToMap(flat: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) map.set(flat[i]!, flat[i + 1]!);
  return map;
}
