// A node cut off Redis while the others still reach it: unit tests of the ownership and routing decisions,
// with a lease table in memory standing in for Redis (the real cut, with real processes and the stack's
// Redis behind TCP relays: test/cluster/redis-cut.test.ts and `npm run chaos -- --param faults=app-redis-cut`).
import t, { type Test } from 'tap';
import { pino } from 'pino';
import type { PurchaseOutcome, PurchaseRequest, PurchaseRouter, Refusal } from '../../src/domain/index.js';
import { Ownership } from '../../src/cluster/ownership.js';
import { ClusterRouter, type PeerCaller } from '../../src/cluster/router.js';
import { desiredShards, shardOf } from '../../src/cluster/shards.js';
import type { RedisShardLeases, ShardOwner, TickResult } from '../../src/storage/shard-leases.js';

const SHARDS = 16;
const logger = pino({ level: 'silent' });

/** Shard leases and heartbeats in memory; `reachable = false` makes every call fail, as a cut does. */
class MemoryLeases {
  reachable = true;
  /** The live nodes a tick reports (the other node's heartbeats keep arriving unless the test says not). */
  nodes = ['node-a', 'node-b'];
  readonly owner = new Map<number, string>();
  readonly acquireCalls: number[][] = [];

  private check(): void {
    if (!this.reachable) throw new Error('Command timed out');
  }

  async tick(
    node: string,
    _address: string,
    _ttl: number,
    owned: ReadonlyMap<number, number>,
  ): Promise<TickResult> {
    this.check();
    const lost = [...owned.keys()].filter((s) => this.owner.get(s) !== node);
    for (const s of owned.keys()) if (!lost.includes(s)) this.owner.set(s, node);
    const now = Date.now();
    return {
      lost,
      nodes: [...this.nodes],
      lastSeen: new Map(this.nodes.map((n) => [n, now])),
      addresses: new Map(this.nodes.map((n) => [n, `${n}:1`])),
    };
  }

  async addresses(): Promise<Map<string, string>> {
    this.check();
    return new Map(this.nodes.map((n) => [n, `${n}:1`]));
  }

  async acquire(node: string, _ttl: number, shards: readonly number[]): Promise<Map<number, number>> {
    this.check();
    this.acquireCalls.push([...shards]);
    const granted = new Map<number, number>();
    for (const s of shards)
      if (!this.owner.has(s)) {
        this.owner.set(s, node);
        granted.set(s, 1);
      }
    return granted;
  }

  async owners(count: number): Promise<(ShardOwner | undefined)[]> {
    this.check();
    return Array.from({ length: count }, (_, s) => {
      const node = this.owner.get(s);
      return node === undefined ? undefined : { node, epoch: 1 };
    });
  }

  async subscribe(): Promise<() => void> {
    return () => undefined;
  }

  async announce(): Promise<void> {
    this.check();
  }

  async evict(): Promise<undefined> {
    return undefined;
  }

  async leave(): Promise<void> {}

  async release(): Promise<number> {
    return 0;
  }
}

/** node-a's ownership over `leases`, holding its share of the shards (node-b holds the rest). */
async function nodeA(t: Test, leases: MemoryLeases, lost: number[][] = []) {
  for (const s of desiredShards('node-b', leases.nodes, SHARDS)) leases.owner.set(s, 'node-b');
  const ownership = new Ownership({
    leases: leases as unknown as RedisShardLeases,
    nodeId: 'node-a',
    address: () => 'node-a:1',
    shardCount: SHARDS,
    // Long enough that nothing here waits on a TTL; the ticks are driven by `poke`.
    ttlMs: 60_000,
    renewMs: 60_000,
    outageGraceMs: 60_000,
    logger,
    onReleasing: async () => undefined,
    onLost: (shards) => lost.push(shards),
    onAcquired: () => undefined,
    refusesConnections: async () => false,
  });
  await ownership.start();
  t.teardown(() => ownership.stop().catch(() => undefined));
  return ownership;
}

/** Pokes until `done` holds (a rebalance runs in the background). */
async function until(ownership: Ownership, done: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !done(); i += 1) {
    ownership.poke();
    await new Promise((r) => setTimeout(r, 5));
  }
}

const mine = desiredShards('node-a', ['node-a', 'node-b'], SHARDS);

t.test('cut off Redis: a shard written by another owner is dropped at once, the others kept', async (t) => {
  const leases = new MemoryLeases();
  const lost: number[][] = [];
  const a = await nodeA(t, leases, lost);
  t.ok(mine.length >= 2 && mine.every((s) => a.holds(s)), `node-a holds its ${mine.length} shards`);
  leases.reachable = false;
  await until(a, () => a.cutOff);
  t.ok(a.cutOff, 'a failed renewal: node-a knows it is cut off');
  t.ok(
    mine.every((s) => a.holds(s)),
    'the outage grace keeps every shard',
  );
  t.same(a.peerAddresses(), ['node-b:1'], 'the peer last seen, to ask');

  const [taken, kept] = mine as [number, number];
  a.writtenElsewhere(taken);
  t.notOk(a.holds(taken), 'the shard whose commit lost to the row version is dropped');
  t.ok(a.holds(kept), 'the others are kept');
  t.same(lost, [[taken]], 'its products are retired (onLost)');
  t.equal(a.ownerOf(taken), undefined, 'and this node no longer names itself its owner');
});

t.test('while Redis answers, a lost commit does not drop the shard: the renewal decides', async (t) => {
  const leases = new MemoryLeases();
  const lost: number[][] = [];
  const a = await nodeA(t, leases, lost);
  const [shard] = mine as [number];
  a.writtenElsewhere(shard);
  await until(a, () => false); // a few rebalances
  t.ok(a.holds(shard), 'still held: Redis says it is ours');
  leases.owner.set(shard, 'node-b');
  a.writtenElsewhere(shard); // rebalances now
  await until(a, () => !a.holds(shard));
  t.notOk(a.holds(shard), 'lost at the renewal once Redis says another node holds it');
  t.same(lost, [[shard]]);
});

t.test('back from a cut that was its alone, a node takes its shards at once', async (t) => {
  const leases = new MemoryLeases();
  const a = await nodeA(t, leases);
  const [taken] = mine as [number];
  leases.reachable = false;
  await until(a, () => a.cutOff);
  a.writtenElsewhere(taken);
  leases.owner.set(taken, 'node-b'); // node-b took it meanwhile...
  leases.reachable = true;
  await until(a, () => !a.cutOff);
  leases.owner.delete(taken); // ...and hands it back once it sees node-a again
  await until(a, () => a.holds(taken));
  t.ok(a.holds(taken), 'taken back without waiting a lease TTL (60 s here): node-b was live all along');
});

t.test('back from an outage of Redis for all, a node waits before taking shards', async (t) => {
  const leases = new MemoryLeases();
  const a = await nodeA(t, leases);
  leases.reachable = false;
  await until(a, () => a.cutOff);
  // Redis comes back; node-b has not renewed yet (its heartbeat is as old as the outage).
  leases.nodes = ['node-a'];
  const theirs = desiredShards('node-b', ['node-a', 'node-b'], SHARDS);
  for (const s of theirs) leases.owner.delete(s); // their leases expired in Redis meanwhile
  leases.reachable = true;
  await until(a, () => !a.cutOff);
  const before = leases.acquireCalls.length;
  await until(a, () => false);
  t.ok(leases.acquireCalls.length > before, 'rebalances ran');
  t.ok(
    leases.acquireCalls.slice(before).every((shards) => shards.length === 0),
    "node-b's shards, free in Redis, are not taken while node-b may still be renewing",
  );
  t.notOk(theirs.some((s) => a.holds(s)));
});

const refused: Refusal = { kind: 'refused', reason: 'OWNERSHIP_LOST', message: 'not here' };

t.test('the router asks every peer in turn while Redis cannot tell the owner', async (t) => {
  const productId = 7;
  const shard = shardOf(productId, SHARDS);
  let cut = true;
  const ownership = {
    nodeId: 'node-a',
    leaving: false,
    get cutOff() {
      return cut;
    },
    holds: () => false,
    // The last view read from Redis: this node (which has since dropped the shard).
    ownerOf: (s: number) => (s === shard ? { node: 'node-a', address: 'node-a:1' } : undefined),
    peerAddresses: () => ['node-b:1', 'node-c:1'],
    poke: () => undefined,
  };
  const asked: string[] = [];
  const created: PurchaseOutcome = {
    kind: 'created',
    order: { orderId: 'o1' },
  } as unknown as PurchaseOutcome;
  const peers: PeerCaller = {
    call: async (address) => {
      asked.push(address);
      return address === 'node-c:1' ? created : refused;
    },
  };
  const local: PurchaseRouter = {
    purchase: async () => refused,
    restock: async () => refused,
    settle: async () => refused,
  };
  const router = new ClusterRouter({
    ownership: ownership as unknown as Ownership,
    shardCount: SHARDS,
    local,
    peers,
    localSagaWait: async () => undefined,
    timeoutMs: 1_000,
  });
  const request = { productId, deadline: Date.now() + 1_000 } as unknown as PurchaseRequest;
  t.equal(await router.purchase(request), created, 'served by the peer that holds the shard');
  t.same(asked, ['node-b:1', 'node-c:1'], 'node-b refused (not its shard), node-c served');

  cut = false;
  asked.length = 0;
  const late = await router.purchase({ ...request, deadline: Date.now() + 100 });
  t.match(late, { kind: 'refused', reason: 'OWNERSHIP_LOST' }, 'Redis answers: wait for its view instead');
  t.same(asked, [], 'no peer asked at random');
});
