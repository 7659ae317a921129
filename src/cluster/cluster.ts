import type { Config } from '../config.js';
import { InvariantError } from '../errors.js';
import type { Logger } from '../logger.js';
import { connectRedis, type Redis } from '../storage/redis.js';
import { RedisShardLeases } from '../storage/shard-leases.js';
import { Ownership, type OwnershipChange } from './ownership.js';
import { shardOf } from './shards.js';

export interface ClusterDeps {
  config: Config;
  logger: Logger;
  redis: Redis;
  /** A dead peer evicted by this node (metrics). */
  onEvicted?: (node: string, freed: number) => void;
  /** This node acquired, handed off or lost shards (metrics). */
  onOwnershipChanged?: (change: OwnershipChange, shards: number) => void;
}

/** Which products a change of this node's shards concerns. */
export type ProductsOf = (productId: number) => boolean;

/** What is told of this node's shard changes, by product. */
export interface ShardListener {
  /** Before shards are handed off: stop admitting their products' requests and finish their in-flight work. */
  releasing?(which: ProductsOf): Promise<void>;
  /** Shards lost without a handoff (lease expired, Redis lost it, this process was paused): stop them now. */
  lost?(which: ProductsOf): void;
  /** Shards just taken over: resume their unfinished sagas. */
  acquired?(which: ProductsOf): void;
}

export interface Cluster {
  readonly ownership: Ownership;
  /** True when this node may write for the product now. */
  owns(productId: number): boolean;
  epochOf(productId: number): number;
  /** A write for the product lost to its row version: another node owns its shard now. */
  writtenElsewhere(productId: number): void;
  /** Tells `listener` of every change of this node's shards from `start` on; added before `start`. */
  onShards(listener: ShardListener): void;
  /** Joins: heartbeats, takes this node's share of the shards. `port` is the bound HTTP port. */
  start(port: number): Promise<void>;
  /** Leaves gracefully: out of the membership, every shard handed off (drained). Forwarding still works. */
  leave(): Promise<void>;
}

/**
 * This node's shard ownership, by product. Built before the product actors, which ask it who may write;
 * they, and the saga recovery, hear of the shards that move through `onShards`.
 */
export function createCluster(deps: ClusterDeps): Cluster {
  const { config, logger } = deps;
  const { shardCount } = config;
  const shard = (productId: number) => shardOf(productId, shardCount);
  const inShards = (shards: number[]): ProductsOf => {
    const set = new Set(shards);
    return (productId: number) => set.has(shard(productId));
  };
  const listeners: ShardListener[] = [];
  let started = false;
  let address = `${config.advertiseHost}:${config.port}`;
  const ownership = new Ownership({
    leases: new RedisShardLeases(deps.redis, config.redis.keyPrefix),
    nodeId: config.nodeId,
    address: () => address,
    shardCount,
    ttlMs: config.lease.ttlMs,
    renewMs: config.lease.renewMs,
    outageGraceMs: config.lease.outageGraceMs,
    logger: logger.child({ component: 'ownership' }),
    onReleasing: async (shards) => {
      const which = inShards(shards);
      await Promise.all(listeners.flatMap((listener) => listener.releasing?.(which) ?? []));
    },
    onLost: (shards) => {
      const which = inShards(shards);
      for (const listener of listeners) listener.lost?.(which);
    },
    onAcquired: (shards) => {
      const which = inShards(shards);
      for (const listener of listeners) listener.acquired?.(which);
    },
    ...(deps.onEvicted === undefined ? {} : { onEvicted: deps.onEvicted }),
    ...(deps.onOwnershipChanged === undefined ? {} : { onChanged: deps.onOwnershipChanged }),
  });
  return {
    ownership,
    owns: (productId) => ownership.holds(shard(productId)),
    epochOf: (productId) => ownership.epochOf(shard(productId)),
    writtenElsewhere: (productId) => ownership.writtenElsewhere(shard(productId)),
    onShards(listener) {
      // A listener added later would miss the first shards taken.
      if (started) throw new InvariantError('cluster.onShards after cluster.start');
      listeners.push(listener);
    },
    async start(port) {
      started = true;
      address = `${config.advertiseHost}:${port}`;
      // The first rebalance must reach Redis: a node that starts without shards would forward everything.
      await connectRedis(deps.redis).catch((err: unknown) =>
        logger.warn(
          { err: (err as Error).message },
          'Redis unreachable at start; shards are taken once it answers',
        ),
      );
      await ownership.start();
    },
    async leave() {
      await ownership.stop();
    },
  };
}
