import t from 'tap';
import { pino } from 'pino';
import { Catalog } from '../../src/catalog/catalog.js';
import { RedisProductCache } from '../../src/storage/product-cache.js';
import type { Pool } from '../../src/storage/mysql.js';
import { startApp } from '../helpers/app.js';
import { uniq } from '../helpers/isolation.js';
import { sleep } from '../../src/timeouts.js';
import { waitFor } from '../../scripts/until.js';

t.test(
  'reads: MISS from the replica, then HIT from Redis; restock and purchases write through',
  async (t) => {
    const running = await startApp(t);
    const productId = await running.createProduct({ stock: 7, priceCents: 1234, name: 'Lamp' });
    // Drop what creation cached, to see the miss path.
    const cache = new RedisProductCache(running.infra.redis, { prefix: running.config.redis.keyPrefix });
    await running.infra.redis.del(cache.detailsKey(productId), cache.stockKey(productId));

    const miss = await running.get(`/products/${productId}`);
    t.equal(miss.status, 200);
    t.equal(miss.headers['x-cache'], 'MISS');
    t.match(miss.body, {
      id: productId,
      name: 'Lamp',
      priceCents: 1234,
      stock: 7,
      version: 0,
      strategy: 'actor',
    });
    const hit = await running.get(`/products/${productId}`);
    t.equal(hit.headers['x-cache'], 'HIT');
    t.same(hit.body, miss.body);
    t.ok(
      (await running.infra.redis.pttl(cache.stockKey(productId))) <= 5_000,
      'stock TTL is the 5 s safety net',
    );
    const detailsTtl = await running.infra.redis.ttl(cache.detailsKey(productId));
    t.ok(detailsTtl > 250 && detailsTtl <= 300, `details TTL is 300 s (${detailsTtl})`);

    t.equal((await running.purchase(productId, 2, uniq('u'), 'k')).status, 201);
    const afterPurchase = await running.get(`/products/${productId}`);
    t.equal(afterPurchase.headers['x-cache'], 'HIT');
    t.equal(afterPurchase.body.stock, 5, 'the buyer reads its own purchase at once');

    const restocked = await running.adminPost(`/products/${productId}/restock`, { quantity: 10 });
    // Versions: 1 the reservation, 2 the restock (the saga's confirmation leaves the product row alone).
    t.same(restocked.body, { id: productId, stock: 15, version: 2 });
    t.equal((await running.get(`/products/${productId}`)).body.stock, 15);

    const other = await running.createProduct({ stock: 1 });
    const list = await running.get(`/products?ids=${productId},${other},999999999`);
    t.equal(list.status, 200);
    t.same(
      list.body.products.map((p: { id: number }) => p.id),
      [productId, other],
    );
    t.same(list.body.missing, [999999999]);
  },
);

t.test('concurrent misses for one product share one replica query', async (t) => {
  const running = await startApp(t);
  const productId = await running.createProduct({ stock: 3 });
  let replicaQueries = 0;
  const replica = running.infra.mysql.replica;
  const counting = new Proxy(replica, {
    get(target, name, receiver) {
      if (name === 'query') {
        return (...args: Parameters<Pool['query']>) => {
          replicaQueries += 1;
          return (target.query as (...a: unknown[]) => unknown)(...args);
        };
      }
      return Reflect.get(target, name, receiver) as unknown;
    },
  });
  const cache = new RedisProductCache(running.infra.redis, { prefix: `${uniq('sf')}:` });
  const catalog = new Catalog({
    primary: running.infra.mysql.primary,
    replica: counting,
    cache,
    logger: pino({ level: 'silent' }),
  });
  const reads = await Promise.all(Array.from({ length: 100 }, () => catalog.getProducts([productId])));
  t.equal(replicaQueries, 1, '100 concurrent misses, one query');
  t.ok(reads.every((r) => r.products[0]?.stock === 3 && !r.hit));
  const again = await catalog.getProducts([productId]);
  t.ok(again.hit, 'the shared load filled the cache');
  t.equal(replicaQueries, 1);
});

t.test(
  'Redis failing: after one failed read, reads skip Redis for a second, then one tries it',
  async (t) => {
    const running = await startApp(t);
    const productId = await running.createProduct({ stock: 5 });
    const real = new RedisProductCache(running.infra.redis, { prefix: `${uniq('down')}:` });
    const calls = { getMany: 0, fill: 0 };
    let failing = true;
    // The real cache, failing on demand as a Redis cut off would (after its command timeout).
    const cache = new Proxy(real, {
      get(target, name, receiver) {
        const method = Reflect.get(target, name, receiver) as unknown;
        if (name !== 'getMany' && name !== 'setDetails' && name !== 'setStock') return method;
        return (...args: unknown[]) => {
          if (name === 'getMany') calls.getMany += 1;
          else calls.fill += 1;
          if (failing) return Promise.reject(new Error('Command timed out'));
          return (method as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        };
      },
    });
    const catalog = new Catalog({
      primary: running.infra.mysql.primary,
      replica: running.infra.mysql.replica,
      cache,
      logger: pino({ level: 'silent' }),
    });
    const first = await catalog.getProducts([productId]);
    t.match(first, { tier: 'replica', hit: false }, 'Redis failed: the replica answered');
    t.equal(first.products[0]?.stock, 5);
    t.same(calls, { getMany: 1, fill: 0 }, 'asked Redis once; no refill of a failing Redis');
    for (let i = 0; i < 5; i += 1)
      t.match(await catalog.getProducts([productId]), { tier: 'replica', products: [{ stock: 5 }] });
    t.same(calls, { getMany: 1, fill: 0 }, 'the next reads, within the second, went straight to the replica');
    failing = false;
    await new Promise((r) => setTimeout(r, 1_050));
    const probe = await catalog.getProducts([productId]);
    t.equal(calls.getMany, 2, 'a second later one read tries Redis again');
    t.equal(probe.tier, 'replica', 'a miss there (nothing was refilled), so the replica answered...');
    t.equal(calls.fill, 2, '...and refilled Redis, which answers again');
    t.match(
      await catalog.getProducts([productId]),
      { tier: 'redis', hit: true },
      'Redis answers reads again',
    );
  },
);

t.test('tiers: memory, then Redis, then the database; minVersion skips a tier that is older', async (t) => {
  const running = await startApp(t);
  const productId = await running.createProduct({ stock: 9 });
  const catalog = running.app.catalog;
  const first = await running.get(`/products/${productId}`);
  t.equal(first.headers['x-cache-tier'], 'redis', 'creation filled Redis, not memory');
  const second = await running.get(`/products/${productId}`);
  t.equal(second.headers['x-cache-tier'], 'memory');
  t.equal(second.headers['x-cache'], 'HIT');
  t.same(second.body, first.body);

  // Behind the service's back, the rows and Redis move to version 5; memory still says version 0.
  await running.infra.mysql.primary.query('UPDATE products SET stock = 4, version = 5 WHERE id = ?', [
    productId,
  ]);
  const cache = new RedisProductCache(running.infra.redis, { prefix: running.config.redis.keyPrefix });
  await cache.setStock(productId, 4, 5);
  t.match(
    (await running.get(`/products/${productId}`)).body,
    { stock: 9, version: 0 },
    'without minVersion, memory answers (within its TTL)',
  );
  const asked = await running.get(`/products/${productId}?minVersion=5`);
  t.match(asked.body, { stock: 4, version: 5 });
  t.equal(asked.headers['x-cache-tier'], 'redis', 'memory was older than asked: Redis answered');
  t.equal(catalog.memory.versionOf(productId), 5, 'and memory learned the newer stock');
  t.equal((await running.get(`/products/${productId}`)).headers['x-cache-tier'], 'memory');

  // Asked beyond what exists: the primary has the last word (its newest), from neither cache.
  const beyond = await running.get(`/products/${productId}?minVersion=6`);
  t.equal(beyond.status, 200);
  t.match(beyond.body, { stock: 4, version: 5 });
  t.equal(beyond.headers['x-cache-tier'], 'primary');
  t.equal(beyond.headers['x-cache'], 'MISS');

  for (const query of ['minVersion=-1', 'minVersion=x', 'minVersion=', 'minversion=1', 'minVersion=1&x=2']) {
    const bad = await running.get(`/products/${productId}?${query}`);
    t.equal(bad.status, 400, query);
    t.equal((bad.body as { error: { code: string } }).error.code, 'VALIDATION_FAILED', query);
  }
});

t.test('the memory tier is not served while the stock feed is down', async (t) => {
  const running = await startApp(t);
  const productId = await running.createProduct({ stock: 2 });
  await running.get(`/products/${productId}`);
  t.equal((await running.get(`/products/${productId}`)).headers['x-cache-tier'], 'memory');
  running.app.catalog.memory.setLive(false);
  t.equal((await running.get(`/products/${productId}`)).headers['x-cache-tier'], 'redis');
  running.app.catalog.memory.setLive(true);
  t.equal(
    (await running.get(`/products/${productId}`)).headers['x-cache-tier'],
    'redis',
    'entries from before the outage need confirming first',
  );
  t.equal((await running.get(`/products/${productId}`)).headers['x-cache-tier'], 'memory');
});

t.test('a product read all the time is reloaded before its trust ends: its reads never miss', async (t) => {
  const running = await startApp(t);
  const productId = await running.createProduct({ stock: 3 });
  const tier = async () => (await running.get(`/products/${productId}`)).headers['x-cache-tier'];
  await running.get(`/products/${productId}`);
  t.equal(await tier(), 'memory');
  // Redis's stock key expired (its 5 s TTL, nothing changed the product): a miss would go to the replica.
  const cache = new RedisProductCache(running.infra.redis, { prefix: running.config.redis.keyPrefix });
  await running.infra.redis.del(cache.stockKey(productId));
  await sleep(800); // past 75% of the memory tier's 1 s trust
  t.equal(await tier(), 'memory', 'still trusted: answered from memory, and a reload starts behind it');
  await waitFor(
    'the reload',
    async () => (await running.infra.redis.exists(cache.stockKey(productId))) === 1,
    5_000,
  );
  t.pass('the reload read the replica and filled Redis again');
  await sleep(300); // the entry's first trust would have ended by now
  t.equal(await tier(), 'memory', 'reloaded: still answered from memory');
});
