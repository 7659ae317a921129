import t from 'tap';
import { ProductCore, type CoreEffects } from '../../actors/product/product-core.js';
import type { BatchWrite, PurchaseOutcome, PurchaseRequest } from '../../src/domain/index.js';

function harness(stock = 10, now = 1_000) {
  const flushes: BatchWrite[] = [];
  const retired: string[] = [];
  const committed: number[] = [];
  const effects: CoreEffects = {
    startFlush: (batch) => flushes.push(batch),
    retire: (reason) => retired.push(reason),
    committed: (info) => committed.push(info.orders.length),
    now: () => now,
  };
  const core = new ProductCore(7, effects);
  core.loaded({ id: 7, name: 'x', priceCents: 100, stock, version: 3 });
  const outcomes: PurchaseOutcome[] = [];
  const buy = (quantity: number, key: string, extra: Partial<PurchaseRequest> = {}) => {
    const request: PurchaseRequest = {
      productId: 7,
      userId: 'u',
      idempotencyKey: key,
      quantity,
      deadline: now + 100,
      ...extra,
    };
    core.purchases([{ request, reply: (o) => outcomes.push(o) }]);
  };
  return { core, flushes, retired, committed, outcomes, buy };
}

t.test('reserves in memory, answers out-of-stock without I/O, and replies only after commit', async (t) => {
  const h = harness(5);
  h.buy(3, 'a');
  t.equal(h.flushes.length, 1, 'the first purchase starts a flush');
  h.buy(2, 'b');
  h.buy(1, 'c');
  t.equal(h.flushes.length, 1, 'while one batch is written, others accumulate');
  t.same(
    h.outcomes.map((o) => o.kind),
    ['out_of_stock'],
    'only the one that does not fit is answered, at once',
  );
  t.match(h.outcomes[0], { kind: 'out_of_stock', requested: 1, available: 0 });
  t.match(h.flushes[0], { productId: 7, expectedVersion: 3, newStock: 2 });

  h.core.flushed({ kind: 'committed', version: 4, committedAt: 'now' });
  t.match(h.outcomes[1], {
    kind: 'created',
    order: { quantity: 3, unitPriceCents: 100, status: 'PENDING' },
  });
  t.equal(h.flushes.length, 2, 'the accumulated purchases form the next batch');
  t.match(h.flushes[1], { expectedVersion: 4, newStock: 0 });
  t.equal(h.flushes[1]!.orders.length, 1);
  h.core.flushed({ kind: 'committed', version: 5, committedAt: 'now' });
  t.same(h.committed, [1, 1]);
  t.ok(h.core.isIdle);
});

t.test('drops expired requests before they touch stock', async (t) => {
  const h = harness(5, 1_000);
  h.buy(1, 'late', { deadline: 999 });
  t.match(h.outcomes[0], { kind: 'refused', reason: 'DEADLINE_EXCEEDED' });
  t.equal(h.core.availableStock, 5);
  t.equal(h.flushes.length, 0);
});

t.test('a duplicate racing the original waits for and shares its answer', async (t) => {
  const h = harness(5);
  h.buy(2, 'same');
  h.buy(2, 'same');
  h.buy(3, 'same');
  t.match(
    h.outcomes,
    [{ kind: 'refused', reason: 'IDEMPOTENCY_KEY_REUSED' }],
    'a different quantity under the key is refused',
  );
  t.equal(h.core.availableStock, 3, 'reserved once');
  h.core.flushed({ kind: 'committed', version: 4, committedAt: 'now' });
  const [, first, second] = h.outcomes;
  t.equal(first?.kind, 'created');
  t.equal(second?.kind, 'replayed');
  t.equal(
    first?.kind === 'created' && second?.kind === 'replayed' && first.order.orderId === second.order.orderId,
    true,
  );
  h.buy(2, 'same');
  t.equal(h.outcomes[3]?.kind, 'replayed', 'a later retry is answered from memory');
  t.equal(h.flushes.length, 1);
});

t.test('a version conflict answers nobody with success and retires the actor', async (t) => {
  const h = harness(10);
  h.buy(1, 'a');
  h.buy(1, 'b');
  h.core.flushed({ kind: 'version_conflict' });
  t.same(
    h.outcomes.map((o) => (o.kind === 'refused' ? o.reason : o.kind)),
    ['OWNERSHIP_LOST', 'OWNERSHIP_LOST'],
  );
  t.same(h.retired, ['OWNERSHIP_LOST']);
  h.buy(1, 'c');
  t.match(
    h.outcomes[2],
    { kind: 'refused', reason: 'OWNERSHIP_LOST' },
    'a message reaching the retired actor is refused',
  );
  t.equal(h.flushes.length, 1, 'nothing more is written');
});

t.test('a failed write is not reported as success', async (t) => {
  const h = harness(10);
  h.buy(1, 'a');
  h.core.flushed({ kind: 'failed', error: 'connection lost' });
  t.match(h.outcomes[0], { kind: 'refused', reason: 'DEPENDENCY_UNAVAILABLE', uncertain: true });
  t.same(h.retired, ['DEPENDENCY_UNAVAILABLE']);
});

t.test('a write the database rolled back is refused as certain: nothing was sold', async (t) => {
  const h = harness(10);
  h.buy(1, 'a');
  h.core.flushed({
    kind: 'failed',
    error: 'the database refused the write and rolled it back',
    rolledBack: true,
  });
  t.match(h.outcomes[0], { kind: 'refused', reason: 'DEPENDENCY_UNAVAILABLE', message: /rolled it back\)$/ });
  t.equal((h.outcomes[0] as { uncertain?: boolean }).uncertain, undefined);
  t.same(h.retired, ['DEPENDENCY_UNAVAILABLE']);
});

t.test('refusals say whether the write they held may have been applied', async (t) => {
  const fenced = harness(10);
  fenced.buy(1, 'a');
  fenced.core.flushed({ kind: 'version_conflict' });
  t.equal(
    (fenced.outcomes[0] as { uncertain?: boolean }).uncertain,
    undefined,
    'rolled back by the version guard: certain that nothing was sold',
  );

  // Stopped from outside (a lease lost) while a batch is written, with more waiting behind it.
  const stopped = harness(10);
  stopped.buy(1, 'in-flight');
  stopped.buy(1, 'queued');
  stopped.core.stop('OWNERSHIP_LOST', 'product 7 is no longer owned here; retry');
  t.match(
    stopped.outcomes,
    [
      { kind: 'refused', reason: 'OWNERSHIP_LOST', uncertain: true, message: /may have been applied/ },
      { kind: 'refused', reason: 'OWNERSHIP_LOST', message: /no longer owned here; retry$/ },
    ],
    'the written one may have been sold; the queued one was not',
  );
  t.equal((stopped.outcomes[1] as { uncertain?: boolean }).uncertain, undefined);
});

t.test('orders found already in the database are replayed, the rest retried', async (t) => {
  const h = harness(10);
  h.buy(2, 'old');
  h.buy(1, 'new');
  h.core.flushed({
    kind: 'duplicates',
    existing: [
      {
        orderId: 'o-1',
        productId: 7,
        userId: 'u',
        idempotencyKey: 'old',
        quantity: 2,
        unitPriceCents: 100,
        status: 'CONFIRMED',
        createdAt: 'x',
      },
    ],
  });
  t.match(h.outcomes[0], { kind: 'replayed', order: { orderId: 'o-1' } });
  t.equal(h.flushes.length, 2);
  t.match(h.flushes[1], { newStock: 9, expectedVersion: 3 }, 'the retried batch holds only the new purchase');
});

t.test('purchases and restocks that arrive while loading wait for the row', async (t) => {
  const flushes: BatchWrite[] = [];
  const core = new ProductCore(1, {
    startFlush: (b) => flushes.push(b),
    retire: () => undefined,
    committed: () => undefined,
    now: () => 0,
  });
  const outcomes: PurchaseOutcome[] = [];
  core.purchases([
    {
      request: { productId: 1, userId: 'u', idempotencyKey: 'k', quantity: 4, deadline: 10 },
      reply: (o) => outcomes.push(o),
    },
  ]);
  core.restock(5, () => undefined);
  t.equal(flushes.length, 0);
  core.loaded({ id: 1, name: 'x', priceCents: 1, stock: 0, version: 0 });
  t.equal(flushes.length, 1);
  t.match(flushes[0], { newStock: 1 }, 'the restock made room for the purchase');
  t.same(outcomes, []);
});

t.test('an unknown product answers not found', async (t) => {
  const retired: string[] = [];
  const core = new ProductCore(1, {
    startFlush: () => undefined,
    retire: (r) => retired.push(r),
    committed: () => undefined,
    now: () => 0,
  });
  const outcomes: PurchaseOutcome[] = [];
  core.purchases([
    {
      request: { productId: 1, userId: 'u', idempotencyKey: 'k', quantity: 1, deadline: 10 },
      reply: (o) => outcomes.push(o),
    },
  ]);
  core.loaded(undefined);
  t.match(outcomes, [{ kind: 'refused', reason: 'PRODUCT_NOT_FOUND' }]);
  t.same(retired, ['PRODUCT_NOT_FOUND']);
});
