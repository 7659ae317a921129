import type { TemplatedApp } from 'uWebSockets.js';
import type { Config } from '../config.js';
import type { PurchaseRouter, SagaWait, StageObserver } from '../domain/index.js';
import type { Logger } from '../logger.js';
import { attachPeerServer } from './channel/server.js';
import { PeerClient } from './channel/client.js';
import type { Cluster } from './cluster.js';
import { ClusterRouter, type PeerOp } from './router.js';

export interface RoutingDeps {
  config: Config;
  logger: Logger;
  cluster: Cluster;
  /** The uWS app the peer channel is served on (the HTTP port). */
  app: TemplatedApp;
  /** This node's product actors. */
  local: PurchaseRouter;
  /** Waits for a saga running on this node (the owner of its product runs it). */
  localSagaWait: (orderId: string, budgetMs: number) => Promise<SagaWait>;
  /** Each routing attempt: served here or forwarded to the owner (metrics). */
  onRouted?: (op: PeerOp, where: 'local' | 'forwarded') => void;
  /** The reply stage of purchases routed by this node (metrics). */
  onStage?: StageObserver;
}

export interface Routing {
  readonly router: ClusterRouter;
  /** Closes the peer channel (after the node's last request). */
  close(): Promise<void>;
}

/** Forwarding to each product's owner, and the peer channel that serves the other nodes' forwards here. */
export function createRouting(deps: RoutingDeps): Routing {
  const { config, logger } = deps;
  const peers = new PeerClient({
    secret: config.peerSecret,
    logger: logger.child({ component: 'peer-client' }),
  });
  const router = new ClusterRouter({
    ownership: deps.cluster.ownership,
    shardCount: config.shardCount,
    local: deps.local,
    peers,
    localSagaWait: deps.localSagaWait,
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
    async close() {
      peerServer.close();
      await peers.close();
    },
  };
}
