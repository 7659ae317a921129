import type { Membership, ShardOwner } from '../storage/shard-leases.js';
import { evictDeadPeers, type DeadPeerOptions } from './dead-peers.js';
import { desiredShards } from './shards.js';
import { every, type Periodic } from '../timeouts.js';

/** With the dead-peer eviction's options: leases, nodeId, shardCount, renewMs, logger (dead-peers.ts). */
export interface OwnershipOptions extends DeadPeerOptions {
  /** Where other nodes reach this one (`host:port`; known once the server listens). */
  address: () => string;
  /** Lease lifetime, ms. */
  ttlMs: number;
  /**
   * While Redis cannot be reached, the shards held are kept this long after it was lost, ms (0: until
   * their leases could have expired, as after a pause). Default 0.
   */
  outageGraceMs?: number;
  /** Before a shard is handed off: stop admitting its requests and finish its in-flight work. */
  onReleasing(shards: number[]): Promise<void>;
  /** Shards lost without a handoff (lease expired, Redis lost it, this process was paused): stop them now. */
  onLost(shards: number[]): void;
  /** Shards just taken over: load their state, resume their sagas. */
  onAcquired(shards: number[]): void;
  /** This node's shards changed: `shards` acquired, handed off (released) or lost without a handoff (metrics). */
  onChanged?: (change: OwnershipChange, shards: number) => void;
}

export type OwnershipChange = 'acquired' | 'released' | 'lost';

interface Held {
  epoch: number;
  /** performance.now() after which this node must not write for the shard (a margin before the lease ends). */
  validUntil: number;
}

/** Every shard's owner is read at least once per this many lease TTLs (besides after every change). */
const OWNERS_REFRESH_TTLS = 10;

/** Share of the TTL a node trusts its lease for after the renewal that started at `t`. */
const TRUSTED_SHARE = 0.8;

/**
 * This node's shard ownership: heartbeats into the membership, renews all its leases in one round trip,
 * takes the shards rendezvous hashing gives it when they are free, hands off the ones it should no
 * longer own (draining them first), and keeps a view of every shard's owner for forwarding.
 *
 * A lease is trusted locally only until a margin before it could have expired in Redis (monotonic
 * clock), so a paused process that wakes up stops writing before it has even talked to Redis. Safety
 * does not rest on this: the product row's version fences every write.
 */
export class Ownership {
  private readonly held = new Map<number, Held>();
  private readonly releasing = new Set<number>();
  private owners: (ShardOwner | undefined)[] = [];
  private membership: Membership = { nodes: [], lastSeen: new Map(), addresses: new Map() };
  private renewals: Periodic | undefined;
  private ticking: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private unsubscribe: (() => void) | undefined;
  /** The leases renewed each tick (held, not releasing), rebuilt only after `held` or `releasing` change. */
  private steady: ReadonlyMap<number, number> = new Map();
  private steadyStale = true;
  /** The shards rendezvous hashing gives this node, for the membership they were computed from. */
  private desired: { nodes: string; shards: Set<number> } = { nodes: '', shards: new Set() };
  /** performance.now() of the last read of every node's address (with a tick, at least once per TTL). */
  private addressesAt = -Infinity;
  /** The addresses must be read at the next tick (an announcement: a node may have restarted elsewhere). */
  private addressesStale = true;
  /** performance.now() of the last read of every shard's owner. */
  private ownersAt = -Infinity;
  /** The owners must be read again at the next tick (something moved, or may have). */
  private ownersStale = true;
  /** performance.now() of the first failed renewal since the last one that worked; undefined while Redis answers. */
  private unreachableSince: number | undefined;
  /** performance.now() until which this node takes no shards: just back from a Redis outage, see `reachable`. */
  private noTakeoverUntil = -Infinity;
  /** The live nodes when Redis was lost: once all of them are seen again, the wait above ends early. */
  private nodesBeforeOutage: readonly string[] = [];

  constructor(private readonly options: OwnershipOptions) {}

  get nodeId(): string {
    return this.options.nodeId;
  }

  /** True once this node has begun leaving the cluster. */
  get leaving(): boolean {
    return this.stopped;
  }

  /** True while lease renewals fail (Redis unreachable): the view of the owners cannot be refreshed. */
  get cutOff(): boolean {
    return this.unreachableSince !== undefined;
  }

  /** The other live nodes' addresses as last read from Redis (whom to ask while the owners cannot be read). */
  peerAddresses(): string[] {
    const peers: string[] = [];
    for (const node of this.membership.nodes) {
      const address = this.membership.addresses.get(node);
      if (node !== this.options.nodeId && address !== undefined) peers.push(address);
    }
    return peers;
  }

  /**
   * A write for a product of the shard lost to the row version: another node has written it since, so it
   * owns the shard now. While Redis answers, the next renewal says so: rebalance at once. While it does
   * not, the shard is held only by the outage grace and nothing will tell this node: drop it now, so its
   * requests go to the peers (the router asks them in turn) instead of losing to the version until the
   * grace ends.
   */
  writtenElsewhere(shard: number): void {
    if (!this.held.has(shard) || this.releasing.has(shard)) return;
    if (this.unreachableSince === undefined) {
      this.poke();
      return;
    }
    this.owners[shard] = undefined;
    this.lose([shard], 'written by another owner while Redis is unreachable');
  }

  /** Joins the cluster: the first rebalance completes before this resolves. */
  async start(): Promise<void> {
    await this.tick();
    this.unsubscribe = await this.options.leases
      .subscribe((message) => {
        if (!message.endsWith(` ${this.options.nodeId}`)) this.poke();
      })
      .catch(() => undefined); // without it, rebalances still happen every renewal
    await this.options.leases.announce(`joined ${this.options.nodeId}`).catch(() => undefined);
    this.renewals = every(this.options.renewMs, () => void this.tick());
  }

  /** Rebalances now, reading every shard's owner again (another node joined, left, took or released shards). */
  poke(): void {
    this.ownersStale = true;
    this.addressesStale = true;
    void this.tick();
  }

  /** True while this node may write for the shard. */
  holds(shard: number): boolean {
    const held = this.held.get(shard);
    return held !== undefined && !this.releasing.has(shard) && performance.now() < held.validUntil;
  }

  epochOf(shard: number): number {
    return this.held.get(shard)?.epoch ?? 0;
  }

  /** The shard's current owner as last seen in Redis, with its address; undefined while none holds it. */
  ownerOf(shard: number): { node: string; address: string | undefined } | undefined {
    if (this.holds(shard)) return { node: this.options.nodeId, address: this.options.address() };
    const owner = this.owners[shard];
    if (owner === undefined) return undefined;
    return { node: owner.node, address: this.membership.addresses.get(owner.node) };
  }

  stats(): { held: number; releasing: number; nodes: string[] } {
    return { held: this.held.size, releasing: this.releasing.size, nodes: this.membership.nodes };
  }

  /** Graceful leave: out of the membership, every shard drained and released, the others told at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.renewals?.stop();
    await this.ticking;
    const { leases, nodeId } = this.options;
    await leases.leave(nodeId).catch(() => undefined);
    await leases.announce(`leaving ${nodeId}`).catch(() => undefined);
    await this.handOff([...this.held.keys()]);
    this.unsubscribe?.();
  }

  /** One rebalance at a time; a request during one runs another right after. */
  private tick(): Promise<void> {
    if (this.ticking) {
      this.again = true;
      return this.ticking;
    }
    this.ticking = this.rebalance()
      .catch((err: unknown) =>
        this.options.logger.warn({ err: (err as Error).message }, 'ownership rebalance failed'),
      )
      .finally(() => {
        this.ticking = undefined;
        if (this.again) {
          this.again = false;
          void this.tick();
        }
      });
    return this.ticking;
  }

  private async rebalance(): Promise<void> {
    // A leaving node holds nothing and takes nothing, but its view of the owners must follow the handoff:
    // its sagas still settle, forwarded to whoever took their products' shards.
    if (this.stopped) {
      this.owners = await this.options.leases.owners(this.options.shardCount);
      return;
    }
    const { leases, nodeId, ttlMs, shardCount, logger } = this.options;
    const started = performance.now();
    this.dropExpired();
    const steady = this.steadyLeases();
    // Heartbeat, renewal and the live nodes in one script; the nodes' addresses only now and then.
    const withAddresses = this.addressesStale || performance.now() - this.addressesAt >= ttlMs;
    let tick: Awaited<ReturnType<typeof leases.tick>>;
    try {
      tick = await leases.tick(nodeId, this.options.address(), ttlMs, steady, withAddresses);
    } catch (err) {
      this.unreachable(started, err as Error);
      return;
    }
    if (this.unreachableSince !== undefined) this.reachable(started);
    const lost = tick.lost;
    let addresses = tick.addresses;
    if (addresses === undefined && tick.nodes.join('\n') !== this.membership.nodes.join('\n'))
      addresses = await leases.addresses(); // a node joined or left: where is it?
    if (addresses !== undefined) {
      this.addressesAt = performance.now();
      this.addressesStale = false;
    }
    this.membership = {
      nodes: tick.nodes,
      lastSeen: tick.lastSeen,
      addresses: addresses ?? this.membership.addresses,
    };
    const renewedUntil = started + ttlMs * TRUSTED_SHARE;
    this.held.forEach((held, shard) => {
      if (steady.has(shard)) held.validUntil = renewedUntil;
    });
    if (lost.length > 0) this.lose(lost, 'lease no longer ours in Redis');
    await this.evictDead(); // after our own renewal: a slow probe must not delay it

    const desired = this.desiredShards();
    // Settled (every desired shard held, nothing else): nothing to hand off or take, no lists to build.
    const settled = this.held.size === desired.size && this.releasing.size === 0 && this.holdsAll(desired);
    const surplus = settled
      ? []
      : [...this.held.keys()].filter((s) => !desired.has(s) && !this.releasing.has(s));
    if (surplus.length > 0) void this.handOff(surplus);
    if (started < this.noTakeoverUntil && this.nodesBeforeOutage.every((n) => tick.nodes.includes(n)))
      this.noTakeoverUntil = -Infinity; // every node renewed since: nobody's shards look free by mistake
    const wanted =
      settled || started < this.noTakeoverUntil ? [] : [...desired].filter((s) => !this.held.has(s));
    const granted = await leases.acquire(nodeId, ttlMs, wanted);
    if (granted.size > 0) {
      for (const [shard, epoch] of granted) this.held.set(shard, { epoch, validUntil: renewedUntil });
      this.changed();
      logger.info({ shards: granted.size, held: this.held.size }, 'acquired shards');
      this.options.onChanged?.('acquired', granted.size);
      this.options.onAcquired([...granted.keys()]);
      // The others read the owners only when told (or every 10 TTLs): tell them where these shards are now.
      await leases.announce(`acquired by ${nodeId}`).catch(() => undefined);
    }
    // Owners change only through acquisitions, releases, evictions and expiries: the first three are
    // announced (poke) or done here; an expiry nobody took changes nothing worth forwarding to, and a
    // forward that finds the owner gone pokes. So the owners are read when something moved, and every
    // OWNERS_REFRESH_TTLS lease TTLs as a safety net, not at every renewal.
    if (this.ownersStale || performance.now() - this.ownersAt >= ttlMs * OWNERS_REFRESH_TTLS) {
      this.ownersStale = false;
      this.ownersAt = performance.now();
      this.owners = await leases.owners(shardCount);
    }
  }

  /** The leases to renew: held and not being handed off (the same Map object while nothing changed). */
  private steadyLeases(): ReadonlyMap<number, number> {
    if (this.steadyStale) {
      this.steadyStale = false;
      this.steady = new Map(
        [...this.held].filter(([shard]) => !this.releasing.has(shard)).map(([s, h]) => [s, h.epoch]),
      );
    }
    return this.steady;
  }

  /** The shards this node should own among the live nodes, computed again only when the nodes change. */
  private desiredShards(): Set<number> {
    const nodes = this.membership.nodes.join('\n');
    if (nodes !== this.desired.nodes) {
      const { nodeId, shardCount } = this.options;
      this.desired = { nodes, shards: new Set(desiredShards(nodeId, this.membership.nodes, shardCount)) };
      this.ownersStale = true; // a node joined or left: shards are about to move
    }
    return this.desired.shards;
  }

  /**
   * A renewal failed: Redis is unreachable (a Sentinel failover, an outage) or failing. Nobody can take
   * this node's shards without Redis, and a node that can reach it takes them only once their leases have
   * expired there; a write by that other owner, or by this node after it, is refused by the product row's
   * version either way. So the shards held are kept (trusted as if renewed at `started`) for up to
   * `outageGraceMs` after Redis was lost, instead of failing every purchase for the length of a failover.
   * Only a renewal that failed while this process ran can extend it: after a pause, `dropExpired` has run
   * first.
   */
  private unreachable(started: number, err: Error): void {
    const { logger, ttlMs } = this.options;
    const graceMs = this.options.outageGraceMs ?? 0;
    if (this.unreachableSince === undefined) {
      this.unreachableSince = started;
      this.nodesBeforeOutage = this.membership.nodes;
      logger.warn(
        { err: err.message, shards: this.held.size, graceMs },
        'lease renewal failed: Redis unreachable; keeping the shards held through the grace period',
      );
    }
    const until = Math.min(started + ttlMs * TRUSTED_SHARE, this.unreachableSince + graceMs);
    this.held.forEach((held) => {
      if (held.validUntil < until) held.validUntil = until;
    });
  }

  /**
   * The first renewal that worked after an outage. The renewal script gave back every lease nobody took
   * meanwhile (they may have expired in Redis), but if Redis was down for all, the others' heartbeats are
   * as old as this node's: for one TTL this node takes no shards, so that every node renews its own before
   * anyone counts it dead. The wait ends as soon as every node live before the outage is live again (at
   * once when this node alone was cut off: the others, which took its shards meanwhile, hand them back
   * when they see it, and it must take them).
   */
  private reachable(started: number): void {
    const outageMs = Math.round(started - (this.unreachableSince ?? started));
    this.unreachableSince = undefined;
    this.noTakeoverUntil = started + this.options.ttlMs;
    this.options.logger.info(
      { outageMs, shards: this.held.size },
      'lease renewal works again: Redis reachable',
    );
  }

  /** `held` or `releasing` changed: the renewal set and the owners must be read again. */
  private changed(): void {
    this.steadyStale = true;
    this.ownersStale = true;
  }

  /** Frees the leases of dead members (dead-peers.ts) so that this rebalance can take their shards. */
  private async evictDead(): Promise<void> {
    const after = await evictDeadPeers(this.membership, this.options);
    if (after === this.membership) return;
    this.membership = after;
    this.ownersStale = true;
  }

  /** Leases whose local trust ran out (this process was paused or Redis unreachable): stop writing now. */
  private dropExpired(): void {
    const now = performance.now();
    let expired: number[] | undefined;
    this.held.forEach((h, shard) => {
      if (h.validUntil <= now && !this.releasing.has(shard)) (expired ??= []).push(shard);
    });
    if (expired !== undefined) this.lose(expired, 'lease not renewed in time');
  }

  /** True when every shard of `shards` is held. */
  private holdsAll(shards: ReadonlySet<number>): boolean {
    for (const shard of shards) if (!this.held.has(shard)) return false;
    return true;
  }

  private lose(shards: number[], why: string): void {
    for (const shard of shards) this.held.delete(shard);
    this.changed();
    this.options.logger.warn({ shards: shards.length, why }, 'lost shards');
    this.options.onChanged?.('lost', shards.length);
    this.options.onLost(shards);
  }

  private async handOff(shards: number[]): Promise<void> {
    const { leases, nodeId, logger } = this.options;
    for (const shard of shards) this.releasing.add(shard);
    this.changed();
    try {
      await this.options.onReleasing(shards);
      const owned = new Map(
        shards.flatMap((s) => (this.held.has(s) ? [[s, this.held.get(s)!.epoch] as const] : [])),
      );
      await leases.release(nodeId, owned);
      logger.info({ shards: owned.size }, 'handed off shards');
      this.options.onChanged?.('released', owned.size);
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'handoff incomplete; the leases will expire instead');
    } finally {
      for (const shard of shards) {
        this.held.delete(shard);
        this.releasing.delete(shard);
      }
      this.changed();
    }
    await leases.announce(`released by ${nodeId}`).catch(() => undefined);
  }
}
