// The product actors' registry with a store and a stock cache in memory (pure unit tests; the real ones
// run in test/purchase and test/faults): what it does when the stock write-through fails or a commit loses
// to the row version.
import nact from 'nact';
import t, { type Test } from 'tap';
import { pino } from 'pino';
import { ProductActors, type ProductActorsOptions } from '../../actors/product/product-actors.js';
import type { ProductStore, StockCache } from '../../src/domain/index.js';
import { waitFor } from '../../scripts/until.js';
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
  extra: Partial<
    Pick<ProductActorsOptions, 'onWrittenElsewhere' | 'onStockChanged' | 'cacheWriteTimeoutMs'>
  > = {},
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

t.test(
  "a batch's replies wait for its write-through; the product's next batch commits beside it",
  async (t) => {
    const store = oneProduct();
    const writes: { version: number; release: () => void }[] = [];
    const cache: StockCache = {
      setStock: (_id, _stock, version) => new Promise<void>((release) => writes.push({ version, release })),
    };
    const changes: number[] = [];
    const { registry, buy } = actors(t, store, cache, {
      cacheWriteTimeoutMs: 5_000,
      onStockChanged: (_id, _stock, version) => changes.push(version),
    });
    const answered: string[] = [];
    const first = buy().then((o) => answered.push(`first ${o.kind}`));
    await waitFor('the first write-through', async () => writes.length === 1, 2_000);
    t.equal(store.committed.length, 1, 'the first batch committed; its write-through is held');
    const second = buy().then((o) => answered.push(`second ${o.kind}`));
    await waitFor('the second commit', async () => store.committed.length === 2, 2_000);
    t.pass('the second batch committed while the first write-through was still held');
    await new Promise((r) => setTimeout(r, 20));
    t.same(answered, [], 'neither purchase is answered before its stock is in the cache');
    t.equal(
      writes.length,
      1,
      "the second write-through waits for the first (the product's versions in order)",
    );
    writes[0]!.release();
    await first;
    await waitFor('the second write-through', async () => writes.length === 2, 2_000);
    t.same(
      answered,
      ['first created'],
      'the first is answered once its write-through is done, not the second',
    );
    writes[1]!.release();
    await second;
    t.same(answered, ['first created', 'second created']);
    t.same(
      writes.map((w) => w.version),
      [2, 3],
      'written through in commit order',
    );
    t.same(changes, [2, 3], 'reported to reads and subscribers in commit order');
    t.equal(registry.stats().outstanding, 0);
  },
);
