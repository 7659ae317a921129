import net from 'node:net';
import type { Logger } from '../logger.js';
import type { Membership, RedisShardLeases } from '../storage/shard-leases.js';

export interface DeadPeerOptions {
  leases: RedisShardLeases;
  nodeId: string;
  shardCount: number;
  /** Pause between lease renewals (and rebalances), ms: a member silent for two of them is a suspect. */
  renewMs: number;
  logger: Logger;
  /**
   * True when nothing listens at `address` (`host:port`: the connection is refused), so the node there is
   * dead. Default: a TCP connect with a 500 ms timeout (`refusesConnections`).
   */
  refusesConnections?: (address: string) => Promise<boolean>;
  /** A dead peer was evicted, freeing `freed` shard leases (metrics). */
  onEvicted?: (node: string, freed: number) => void;
}

/**
 * Evicts the members silent for two renewals whose port refuses connections (a paused, partitioned or
 * overloaded node still accepts them): their leases are freed now instead of after their TTL, so the next
 * rebalance can take their shards. Safety does not depend on it (MySQL versions fence writes). Returns the
 * membership without them (the same object when none was evicted).
 */
export async function evictDeadPeers(membership: Membership, options: DeadPeerOptions): Promise<Membership> {
  const { leases, nodeId, renewMs, shardCount, logger } = options;
  const silenceMs = 2 * renewMs;
  const now = Date.now();
  const refuses = options.refusesConnections ?? refusesConnections;
  let current = membership;
  for (const node of membership.nodes) {
    const seen = current.lastSeen.get(node);
    const address = current.addresses.get(node);
    if (node === nodeId || seen === undefined || now - seen < silenceMs || address === undefined) continue;
    if (!(await refuses(address))) continue;
    const freed = await leases.evict(node, silenceMs, shardCount);
    if (freed === undefined) continue;
    logger.warn(
      { node, address, silentMs: now - seen, freed },
      'evicted a dead node: silent and its port refuses connections',
    );
    options.onEvicted?.(node, freed);
    current = {
      nodes: current.nodes.filter((n) => n !== node),
      lastSeen: new Map([...current.lastSeen].filter(([n]) => n !== node)),
      addresses: new Map([...current.addresses].filter(([n]) => n !== node)),
    };
    await leases.announce(`evicted ${node}`).catch(() => undefined);
  }
  return current;
}

/** True when a TCP connect to `address` is refused: no process listens there. */
export function refusesConnections(address: string, timeoutMs = 500): Promise<boolean> {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(colon + 1));
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (refused: boolean): void => {
      socket.destroy();
      resolve(refused);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(false));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED'));
  });
}
