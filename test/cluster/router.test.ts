// The router between two routers in memory (pure unit tests; forwarding between real nodes:
// test/cluster/request-ids.test.ts, test/cluster/ownership.test.ts): a forwarded purchase brings its saga's
// outcome back in the same round trip.
import t from 'tap';
import type { PurchaseOutcome, PurchaseRequest, PurchaseRouter, SagaWait } from '../../src/domain/index.js';
import type { Ownership } from '../../src/cluster/ownership.js';
import { ClusterRouter, type PeerCaller } from '../../src/cluster/router.js';
import { AppError } from '../../src/errors.js';

const SHARDS = 4;

/** An ownership view: `mine` holds every shard, the other node none. */
function ownership(node: string, mine: boolean) {
  return {
    nodeId: node,
    leaving: false,
    cutOff: false,
    holds: () => mine,
    ownerOf: () => ({ node: mine ? node : 'owner', address: 'owner:1' }),
    peerAddresses: () => [],
    poke: () => undefined,
  } as unknown as Ownership;
}

const created = (orderId: string): PurchaseOutcome =>
  ({ kind: 'created', order: { orderId } }) as unknown as PurchaseOutcome;

/** The owner's router (its actors create the order; its saga ends after `sagaMs`) and a forwarding one. */
function pair(sagaMs: number, forwardSagaWaitMs: number) {
  const calls: { op: string; deadline: number }[] = [];
  const local = (orderId: string): PurchaseRouter =>
    ({ purchase: async () => created(orderId) }) as unknown as PurchaseRouter;
  const sagaWait = async (_orderId: string, budgetMs: number): Promise<SagaWait> =>
    new Promise((resolve) =>
      setTimeout(
        () => resolve(sagaMs <= budgetMs ? { status: 'CONFIRMED' } : { status: 'PENDING' }),
        Math.min(sagaMs, budgetMs),
      ),
    );
  // The wire: msgpack carries undefined as null.
  const wire = (value: unknown) => JSON.parse(JSON.stringify(value ?? null)) as unknown;
  const owner = new ClusterRouter({
    ownership: ownership('owner', true),
    shardCount: SHARDS,
    local: local('o-1'),
    peers: { call: async () => undefined },
    localSagaWait: sagaWait,
    timeoutMs: 1_000,
  });
  const peers: PeerCaller = {
    call: async (_address, op, body, deadline) => {
      calls.push({ op, deadline });
      return wire(await owner.handlePeer(op, wire(body), deadline));
    },
  };
  const forwarder = new ClusterRouter({
    ownership: ownership('front', false),
    shardCount: SHARDS,
    local: local('never'),
    peers,
    localSagaWait: async () => undefined,
    timeoutMs: 1_000,
    forwardSagaWaitMs,
  });
  return { forwarder, calls };
}

/** A router on a node that owns nothing: every request goes to `call`. */
const forwarding = (call: PeerCaller['call'], timeoutMs: number) =>
  new ClusterRouter({
    ownership: ownership('front', false),
    shardCount: SHARDS,
    local: {} as PurchaseRouter,
    peers: { call },
    localSagaWait: async () => undefined,
    timeoutMs,
  });

const request = (): PurchaseRequest => ({
  productId: 1,
  userId: 'u',
  idempotencyKey: 'k',
  quantity: 1,
  deadline: Date.now() + 2_000,
});

t.test('a forwarded purchase brings its saga outcome back: no saga-wait call after it', async (t) => {
  const { forwarder, calls } = pair(5, 2_000);
  const outcome = await forwarder.purchase(request());
  t.same(outcome, created('o-1'), 'the purchase outcome, without the saga field');
  t.same(await forwarder.sagaWait(1, 'o-1', 2_000), { status: 'CONFIRMED' });
  t.same(
    calls.map((c) => c.op),
    ['purchase'],
    'one round trip for both',
  );
});

t.test(
  'a saga slower than the call allows: the owner answers PENDING in time, then the wait goes on',
  async (t) => {
    // The forwarding attempt's deadline is at most 1 s away: the owner answers 100 ms before it.
    const { forwarder, calls } = pair(1_500, 2_000);
    const started = Date.now();
    t.same(await forwarder.purchase(request()), created('o-1'));
    t.ok(Date.now() - started < 1_000, 'answered before the attempt deadline (no retry of the purchase)');
    t.same(await forwarder.sagaWait(1, 'o-1', 2_000), { status: 'CONFIRMED' });
    t.same(
      calls.map((c) => c.op),
      ['purchase', 'saga-wait'],
      'the saga still running: asked again',
    );
  },
);

t.test('without forwardSagaWaitMs the owner answers at once, and the wait is its own call', async (t) => {
  const { forwarder, calls } = pair(5, 0);
  t.same(await forwarder.purchase(request()), created('o-1'));
  t.same(await forwarder.sagaWait(1, 'o-1', 2_000), { status: 'CONFIRMED' });
  t.same(
    calls.map((c) => c.op),
    ['purchase', 'saga-wait'],
  );
});

t.test(
  'giving up on an owner that never answered says the outcome is unknown (504), not that nobody owns it',
  async (t) => {
    const forwarder = (call: PeerCaller['call']) => forwarding(call, 300);
    const silent = forwarder(
      (_address, op, _body, deadline) =>
        new Promise((_resolve, reject) =>
          setTimeout(
            () => reject(new AppError('DEADLINE_EXCEEDED', `peer did not answer ${op}`)),
            Math.max(0, deadline - Date.now()),
          ),
        ),
    );
    const unknown = await silent.purchase({ ...request(), deadline: Date.now() + 300 });
    t.match(unknown, { kind: 'refused', reason: 'DEADLINE_EXCEEDED', message: /same Idempotency-Key/ });
    t.match(await silent.restock(1, 5), { kind: 'refused', reason: 'DEADLINE_EXCEEDED' });

    // An owner that answers, refusing: the product is moving and nothing was applied.
    const refusing = forwarder(async () => ({
      kind: 'refused',
      reason: 'OWNERSHIP_LOST',
      message: 'not mine',
    }));
    t.match(await refusing.purchase({ ...request(), deadline: Date.now() + 300 }), {
      kind: 'refused',
      reason: 'OWNERSHIP_LOST',
    });

    // One unanswered attempt, then a refusal from the next owner: the first may still have been applied.
    let attempts = 0;
    const both = forwarder(async () => {
      attempts += 1;
      if (attempts === 1) throw new AppError('PEER_UNAVAILABLE', 'connection lost; may have been applied');
      return { kind: 'refused', reason: 'OWNERSHIP_LOST', message: 'not mine' };
    });
    t.match(await both.purchase({ ...request(), deadline: Date.now() + 300 }), {
      kind: 'refused',
      reason: 'DEADLINE_EXCEEDED',
    });
    t.ok(attempts > 1, `looked again after the unanswered attempt (${attempts} attempts)`);

    // The owner's own actor refused with its write under way (its lease lost mid-write): the same.
    const local = new ClusterRouter({
      ownership: ownership('owner', true),
      shardCount: SHARDS,
      local: {
        purchase: async () => ({
          kind: 'refused',
          reason: 'OWNERSHIP_LOST',
          message: 'its write was under way',
          uncertain: true,
        }),
      } as unknown as PurchaseRouter,
      peers: { call: async () => undefined },
      localSagaWait: async () => undefined,
      timeoutMs: 300,
    });
    t.match(await local.purchase({ ...request(), deadline: Date.now() + 300 }), {
      kind: 'refused',
      reason: 'DEADLINE_EXCEEDED',
    });
  },
);

t.test(
  "an order found again after this request's own unanswered attempt is answered as made, not as a replay",
  async (t) => {
    const replayed = { kind: 'replayed', order: { orderId: 'o-1' } } as unknown as PurchaseOutcome;
    const forwarder = (call: PeerCaller['call']) => forwarding(call, 1_000);
    // The owner committed the first attempt but answered too late; the second attempt finds the order.
    let attempts = 0;
    const slowOwner = forwarder(async () => {
      attempts += 1;
      if (attempts === 1) throw new AppError('DEADLINE_EXCEEDED', 'peer did not answer purchase in time');
      return replayed;
    });
    t.same(await slowOwner.purchase(request()), created('o-1'), 'created: the client sent it once');
    t.equal(attempts, 2);

    // A first attempt answered as a replay is the client's own retry: it stays one.
    const answered = forwarder(async () => replayed);
    t.same(await answered.purchase(request()), replayed);

    // The owner's own actor refused with its write under way, then found it: the same as a late owner.
    let local = 0;
    const owner = new ClusterRouter({
      ownership: ownership('owner', true),
      shardCount: SHARDS,
      local: {
        purchase: async () =>
          (local += 1) === 1
            ? {
                kind: 'refused',
                reason: 'OWNERSHIP_LOST',
                message: 'its write was under way',
                uncertain: true,
              }
            : replayed,
      } as unknown as PurchaseRouter,
      peers: { call: async () => undefined },
      localSagaWait: async () => undefined,
      timeoutMs: 1_000,
    });
    t.same(await owner.purchase(request()), created('o-1'));
    t.equal(local, 2);
  },
);
