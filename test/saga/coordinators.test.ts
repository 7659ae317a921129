// The saga coordinators (one nact actor per order), recovery and the product actors wired together with
// their ports in memory (test/helpers/fake-ports.ts): the purchase path's logic end to end in milliseconds.
// The same paths against MariaDB, Redis and the payment provider run in test/purchase, test/saga and
// test/faults.
import nact from 'nact';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { ProductActors } from '../../actors/product/product-actors.js';
import { SagaCoordinators } from '../../actors/saga/saga-coordinators.js';
import { SagaRecovery } from '../../actors/saga/recovery.js';
import type { PurchaseOutcome, SagaEnd, SagaOrder } from '../../src/domain/index.js';
import {
  FakePaymentError,
  FakePayments,
  MemoryProductStore,
  MemoryStockCache,
  recordingSettle,
} from '../helpers/fake-ports.js';

const silent = pino({ level: 'silent' });

function sagaOrder(orderId: string, productId = 1): SagaOrder {
  return {
    orderId,
    productId,
    userId: 'u',
    quantity: 1,
    unitPriceCents: 100,
    version: 0,
    paymentKey: orderId,
    deadline: Date.now() + 30_000,
  };
}

function coordinators(t: Test, payments: FakePayments, settle = recordingSettle().settle) {
  const system = nact.start();
  t.teardown(() => nact.stop(system));
  const ends: (SagaEnd | 'INTERRUPTED')[] = [];
  const sagas = new SagaCoordinators({
    system,
    payments,
    settle,
    logger: silent,
    onEnd: (status) => ends.push(status),
  });
  return { sagas, ends };
}

t.test('a saga runs once per order, and its end can be waited for', async (t) => {
  const payments = new FakePayments();
  const { sagas, ends } = coordinators(t, payments);
  let release!: () => void;
  payments.gate = new Promise((resolve) => (release = resolve));
  sagas.start(sagaOrder('a'));
  sagas.start(sagaOrder('a'));
  t.ok(sagas.isRunning('a'));
  t.same(await sagas.waitFor('a', 20), { status: 'PENDING' }, 'still paying when the budget ends');
  t.equal(await sagas.waitFor('unknown', 20), undefined, 'a saga not running here: undefined');
  release();
  t.same(await sagas.waitFor('a', 5_000), { status: 'CONFIRMED' });
  t.equal(payments.count('charge'), 1, 'started twice, charged once');
  t.same(ends, ['CONFIRMED']);
  await t.resolveMatch(sagas.drain(1_000), true);
  t.notOk(sagas.isRunning('a'), 'gone once ended');
});

t.test('drain stops new sagas and leaves running ones off, to be resumed', async (t) => {
  const payments = new FakePayments();
  const { sagas, ends } = coordinators(t, payments);
  let release!: () => void;
  payments.gate = new Promise((resolve) => (release = resolve));
  payments.failures = [new FakePaymentError('provider down', true)];
  sagas.start(sagaOrder('b'));
  await new Promise((r) => setTimeout(r, 10));
  t.equal(await sagas.drain(30), false, 'the saga in its payment step outlives a short drain');
  sagas.start(sagaOrder('c'));
  t.notOk(sagas.isRunning('c'), 'no new saga once draining');
  release();
  t.equal(await sagas.drain(5_000), true);
  t.same(ends, ['INTERRUPTED'], 'the running one left off between steps, unsettled');
  t.equal(payments.count('charge'), 1, 'it did not charge again after leaving off');
});

t.test(
  'recovery resumes the pending sagas this node owns that nothing runs, one sweep at a time',
  async (t) => {
    const payments = new FakePayments();
    const settle = recordingSettle();
    const { sagas } = coordinators(t, payments, settle.settle);
    let release!: () => void;
    payments.gate = new Promise((resolve) => (release = resolve));
    sagas.start(sagaOrder('running', 1));
    const open = [
      sagaOrder('running', 1),
      sagaOrder('mine', 1),
      sagaOrder('theirs', 2),
      sagaOrder('mine-2', 3),
    ];
    let queries = 0;
    let failing = false;
    const recovery = new SagaRecovery({
      sagas,
      pending: async () => {
        queries += 1;
        if (failing) throw new Error('replica down');
        await new Promise((r) => setTimeout(r, 20));
        // As the saga store answers: the sagas not settled yet.
        const settled = new Set(settle.settlements.map((x) => x.orderId));
        return open.filter((o) => !settled.has(o.orderId));
      },
      logger: silent,
      intervalMs: 60_000,
      idleForMs: 10_000,
      owns: (productId) => productId !== 2,
    });
    const [first, second] = await Promise.all([recovery.resumeAll(), recovery.resumeAll()]);
    t.equal(queries, 1, 'a sweep asked for while one runs joins it');
    t.equal(first, 2, "resumed: 'mine' and 'mine-2'; not the running one, not another node's");
    t.equal(second, 2);
    t.ok(sagas.isRunning('mine') && sagas.isRunning('mine-2') && !sagas.isRunning('theirs'));
    release();
    t.same(await sagas.waitFor('mine', 5_000), { status: 'CONFIRMED' });
    t.same(
      payments.calls.filter((c) => c.key === 'mine').map((c) => c.op),
      ['lookup', 'charge'],
      'a resumed saga asks the provider before charging',
    );
    await sagas.waitFor('mine-2', 5_000);
    open.push(sagaOrder('late-1', 4), sagaOrder('late-3', 3));
    t.equal(
      await recovery.resumeWhere((productId) => productId === 3),
      1,
      'shards taken over: only their sagas',
    );
    t.ok(sagas.isRunning('late-3') && !sagas.isRunning('late-1'), 'late-3 resumed, late-1 left');
    t.same(await sagas.waitFor('late-3', 5_000), { status: 'CONFIRMED' });
    failing = true;
    t.equal(await recovery.resumeAll(), 0, 'a failed query resumes nothing and does not throw');
  },
);

t.test(
  'purchases through the product actors and their sagas: never oversold, declines release stock',
  async (t) => {
    const store = new MemoryProductStore();
    store.add({ id: 1, name: 'p', priceCents: 100, stock: 100 });
    // Every third charge is declined.
    let charges = 0;
    const payments = new FakePayments(() => ((charges += 1) % 3 === 0 ? 'declined' : 'succeeded'));
    const system = nact.start();
    t.teardown(() => nact.stop(system));
    const actors = new ProductActors({
      system,
      store,
      cache: new MemoryStockCache(),
      logger: silent,
      mailboxLimit: 10_000,
      passivateAfterMs: 60_000,
      cacheWriteTimeoutMs: 100,
    });
    const sagas = new SagaCoordinators({ system, payments, settle: (s) => actors.settle(s), logger: silent });
    actors.onCommitted(({ orders }) => {
      for (const o of orders)
        sagas.start({ ...sagaOrder(o.orderId, o.productId), quantity: o.quantity, userId: o.userId });
    });
    t.teardown(() => actors.drain(1_000));

    const buy = (i: number): Promise<PurchaseOutcome> =>
      actors.purchase({
        productId: 1,
        userId: `u${i % 40}`,
        idempotencyKey: `k${i}`,
        quantity: 1,
        deadline: Date.now() + 10_000,
      });
    const outcomes = await Promise.all(Array.from({ length: 300 }, (_, i) => buy(i)));
    const created = outcomes.filter((o) => o.kind === 'created');
    t.equal(created.length, 100, '300 buyers for 100 units: exactly 100 orders');
    t.equal(
      outcomes.filter((o) => o.kind === 'out_of_stock').length,
      200,
      'the rest are told it is sold out',
    );

    const replay = await buy(0);
    t.match(replay, {
      kind: 'replayed',
      order: { orderId: (outcomes[0] as { order: { orderId: string } }).order.orderId },
    });

    const ends = await Promise.all(
      created.map((o) => sagas.waitFor((o as { order: { orderId: string } }).order.orderId, 10_000)),
    );
    const confirmed = ends.filter((e) => e?.status === 'CONFIRMED').length;
    const cancelled = ends.filter((e) => e?.status === 'CANCELLED').length;
    t.equal(confirmed + cancelled, 100, 'every saga ended');
    t.ok(cancelled > 0, `${cancelled} declined`);
    const row = (await store.load(1))!;
    t.equal(store.held(1, 'CONFIRMED'), confirmed);
    t.equal(store.held(1, 'PENDING'), 0, 'no order left pending');
    t.equal(row.stock, 100 - confirmed, 'stock = initial - confirmed: cancelled units went back');
    t.equal(payments.count('charge'), 100, 'one charge per order');

    // Another writer takes the row: the actor stops answering success for it.
    store.writeElsewhere(1);
    const fenced = await buy(1_000);
    t.match(fenced, { kind: 'refused', reason: 'OWNERSHIP_LOST' }, 'a fenced commit never answers success');
  },
);
