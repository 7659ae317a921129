// The product actors' registry with a store and a stock cache in memory (pure unit tests; the real ones
// run in test/purchase and test/faults): what it does when the stock write-through fails or a commit loses
// to the row version.
import nact from 'nact';
import t, { type Test } from 'tap';
import { pino } from 'pino';
import { ProductActors } from '../../actors/product/product-actors.js';
import type { ProductStore, StockCache } from '../../src/domain/index.js';
import { MemoryProductStore } from '../helpers/fake-ports.js';

/** One product with stock to spare, in the memory store of test/helpers/fake-ports.ts. */
function oneProduct(): MemoryProductStore {
  const store = new MemoryProductStore();
  store.add({ id: 1, name: 'p', priceCents: 100, stock: 1_000 });
  return store;
}

function actors(
  t: Test,
  store: ProductStore,
  cache: StockCache,
  extra: { onWrittenElsewhere?: (id: number) => void } = {},
) {
  const system = nact.start();
  t.teardown(() => nact.stop(system));
  const registry = new ProductActors({
    system,
    store,
    cache,
    logger: pino({ level: 'silent' }),
    mailboxLimit: 1_000,
    passivateAfterMs: 60_000,
    cacheWriteTimeoutMs: 50,
    ...extra,
  });
  t.teardown(() => registry.drain(1_000));
  let key = 0;
  const buy = () =>
    registry.purchase({
      productId: 1,
      userId: 'u',
      idempotencyKey: `k${(key += 1)}`,
      quantity: 1,
      deadline: Date.now() + 5_000,
    });
  return { registry, buy };
}

t.test('a failing write-through is skipped for 250 ms after it fails, then tried again', async (t) => {
  let writes = 0;
  let failing = true;
  const cache: StockCache = {
    setStock: () => {
      writes += 1;
      return failing ? new Promise(() => undefined) : Promise.resolve(); // a cut: never answered
    },
  };
  const { buy } = actors(t, oneProduct(), cache);
  t.match(await buy(), { kind: 'created' }, 'answered once the write-through timed out');
  t.equal(writes, 1);
  for (let i = 0; i < 5; i += 1) t.match(await buy(), { kind: 'created' });
  t.equal(writes, 1, 'the next batches, within 250 ms of the failure, did not try it');
  failing = false;
  await new Promise((r) => setTimeout(r, 300));
  t.match(await buy(), { kind: 'created' });
  t.equal(writes, 2, 'then one batch tried it again, and it answered');
  t.match(await buy(), { kind: 'created' });
  t.equal(writes, 3, 'every batch writes through again');
});

t.test('a commit lost to the row version is reported, and answered OWNERSHIP_LOST', async (t) => {
  const store = oneProduct();
  const reported: number[] = [];
  const { buy } = actors(
    t,
    store,
    { setStock: async () => undefined },
    { onWrittenElsewhere: (id) => reported.push(id) },
  );
  t.match(await buy(), { kind: 'created' });
  store.writeElsewhere(1);
  t.match(await buy(), { kind: 'refused', reason: 'OWNERSHIP_LOST' });
  t.same(reported, [1], 'the product written elsewhere is reported once');
});
