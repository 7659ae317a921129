import t from 'tap';
import { pino } from 'pino';
import { Catalog } from '../../src/catalog/catalog.js';
import { RedisProductCache } from '../../src/storage/product-cache.js';
import type { Pool } from '../../src/storage/mysql.js';
import { startApp, uniq } from '../helpers/app.js';

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
    // Versions: 1 the reservation, 2 the saga's confirmation, 3 the restock.
    t.same(restocked.body, { id: productId, stock: 15, version: 3 });
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
