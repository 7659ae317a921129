import type { TemplatedApp } from 'uWebSockets.js';
import type { ProductActors } from '../../actors/product/product-actors.js';
import type { StageObserver } from '../domain/index.js';
import type { SagaCoordinators } from '../../actors/saga/saga-coordinators.js';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import { connectRedis, type Redis } from '../storage/redis.js';
import { RedisShardLeases } from '../storage/shard-leases.js';
import { attachPeerServer } from './channel/server.js';
import { PeerClient } from './channel/client.js';
import { Ownership, type OwnershipChange } from './ownership.js';
import { ClusterRouter, type PeerOp } from './router.js';
import { shardOf } from './shards.js';

export interface ClusterDeps {
  config: Config;
  logger: Logger;
  redis: Redis;
  /** The uWS app the peer channel is served on (the HTTP port). */
  app: TemplatedApp;
  actors: ProductActors;
  /** Resumes the unfinished sagas of the products of shards this node takes over. */
  onTakeover: (which: (productId: number) => boolean) => void;
  sagas: SagaCoordinators;
  /** Each routing attempt: served here or forwarded to the owner (metrics). */
  onRouted?: (op: PeerOp, where: 'local' | 'forwarded') => void;
  /** A dead peer evicted by this node (metrics). */
  onEvicted?: (node: string, freed: number) => void;
  /** This node acquired, handed off or lost shards (metrics). */
  onOwnershipChanged?: (change: OwnershipChange, shards: number) => void;
  /** The reply stage of purchases routed by this node (metrics). */
  onStage?: StageObserver;
}

export interface Cluster {
  readonly router: ClusterRouter;
  readonly ownership: Ownership;
  /** True when this node may write for the product now. */
  owns(productId: number): boolean;
  epochOf(productId: number): number;
  /** A write for the product lost to its row version: another node owns its shard now. */
  writtenElsewhere(productId: number): void;
  /** Joins: heartbeats, takes this node's share of the shards. `port` is the bound HTTP port. */
  start(port: number): Promise<void>;
  /** Leaves gracefully: out of the membership, every shard handed off (drained). Forwarding still works. */
  leave(): Promise<void>;
  /** Closes the peer channel (after the node's last request). */
  close(): Promise<void>;
}

/** Shard ownership, forwarding to owners and the peer channel, put together for one node. */
export function createCluster(deps: ClusterDeps, handOffTimeoutMs: number): Cluster {
  const { config, logger } = deps;
  const { shardCount } = config;
  const shard = (productId: number) => shardOf(productId, shardCount);
  const inShards = (shards: number[]) => {
    const set = new Set(shards);
    return (productId: number) => set.has(shard(productId));
  };
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
    onReleasing: (shards) => deps.actors.release(inShards(shards), handOffTimeoutMs),
    onLost: (shards) => deps.actors.retireWhere(inShards(shards)),
    onAcquired: (shards) => deps.onTakeover(inShards(shards)),
    ...(deps.onEvicted === undefined ? {} : { onEvicted: deps.onEvicted }),
    ...(deps.onOwnershipChanged === undefined ? {} : { onChanged: deps.onOwnershipChanged }),
  });
  const peers = new PeerClient({
    secret: config.peerSecret,
    logger: logger.child({ component: 'peer-client' }),
  });
  const router = new ClusterRouter({
    ownership,
    shardCount,
    local: deps.actors,
    peers,
    localSagaWait: (orderId, budgetMs) => deps.sagas.waitFor(orderId, budgetMs),
    timeoutMs: config.purchase.timeoutMs,
    forwardSagaWaitMs: config.purchase.waitBudgetMs,
    logger: logger.child({ component: 'router' }),
    ...(deps.onRouted === undefined ? {} : { onAttempt: deps.onRouted }),
    ...(deps.onStage === undefined ? {} : { onStage: deps.onStage }),
  });
  const peerServer = attachPeerServer(deps.app, {
    secret: config.peerSecret,
    handle: (op, body, deadline) => router.handlePeer(op, body, deadline),
    logger: logger.child({ component: 'peer-server' }),
  });
  return {
    router,
    ownership,
    owns: (productId) => ownership.holds(shard(productId)),
    epochOf: (productId) => ownership.epochOf(shard(productId)),
    writtenElsewhere: (productId) => ownership.writtenElsewhere(shard(productId)),
    async start(port) {
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
    async close() {
      peerServer.close();
      await peers.close();
    },
  };
}
