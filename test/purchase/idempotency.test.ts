import t from 'tap';
import { startApp } from '../helpers/app.js';
import { uniq } from '../helpers/isolation.js';
import { totals } from '../helpers/database.js';

for (const strategy of ['actor', 'baseline'] as const) {
  t.test(
    `${strategy}: 50 concurrent requests with one key buy once and all get the first answer`,
    async (t) => {
      const running = await startApp(t, { PURCHASE_DEADLINE_MS: '20000', PURCHASE_TIMEOUT_MS: '30000' });
      const productId = await running.createProduct({ stock: 10, strategy });
      const user = uniq('u');
      const answers = await Promise.all(
        Array.from({ length: 50 }, () => running.purchase(productId, 2, user, 'same-key')),
      );
      t.same(new Set(answers.map((a) => a.status)), new Set([201]), 'every request answered 201');
      const orderIds = new Set(answers.map((a) => (a.body as { orderId: string }).orderId));
      t.equal(orderIds.size, 1, 'one order id in every answer');
      t.equal(
        answers.filter((a) => a.headers['idempotent-replayed'] === undefined).length,
        1,
        'one original, the rest replays',
      );
      const after = await totals(running.infra.mysql.primary, productId);
      t.same(
        { stock: after.stock, orders: after.orders, sold: after.sold },
        { stock: 8, orders: 1, sold: 2 },
      );

      const reused = await running.purchase(productId, 3, user, 'same-key');
      t.equal(reused.status, 422, 'the key with a different quantity is refused');
      t.match(reused.body, { error: { code: 'IDEMPOTENCY_KEY_REUSED', field: 'Idempotency-Key' } });
      const otherUser = await running.purchase(productId, 2, uniq('u'), 'same-key');
      t.equal(otherUser.status, 201, 'keys are per user');
      t.not((otherUser.body as { orderId: string }).orderId, [...orderIds][0]);
    },
  );
}

for (const strategy of ['actor', 'baseline'] as const) {
  t.test(`${strategy}: keys and users that differ only in case are different`, async (t) => {
    const running = await startApp(t);
    const productId = await running.createProduct({ stock: 10, strategy });
    const user = uniq('U');
    const lower = user.toLowerCase();
    t.not(lower, user);
    // Each of these is a purchase of its own: the service compares keys and users byte for byte, so must
    // the database's unique key (utf8mb4_unicode_ci took 'K' and 'k', or two users' 'K', for one entry).
    const buys: [string, string][] = [
      [user, 'K'],
      [user, 'k'],
      [lower, 'K'],
    ];
    const answers = [];
    for (const [u, key] of buys) answers.push(await running.purchase(productId, 1, u, key));
    t.same(
      answers.map((a) => [a.status, a.headers['idempotent-replayed']]),
      buys.map(() => [201, undefined]),
      'three fresh orders, none a replay',
    );
    t.equal(new Set(answers.map((a) => (a.body as { orderId: string }).orderId)).size, 3);
    // A header's surrounding whitespace is not part of its value (RFC 9110 5.5): 'k ' is the key 'k'.
    const again = await running.purchase(productId, 1, user, 'k ');
    t.equal(again.headers['idempotent-replayed'], 'true', "'k ' again is the key 'k': its replay");
    t.equal((again.body as { orderId: string }).orderId, (answers[1]!.body as { orderId: string }).orderId);
    const after = await totals(running.infra.mysql.primary, productId);
    t.same({ stock: after.stock, orders: after.orders }, { stock: 7, orders: 3 });
  });
}

t.test(
  'actor: a retry after the actor was passivated is answered from the database, not bought again',
  async (t) => {
    const running = await startApp(t, { ACTOR_PASSIVATE_AFTER_MS: '30' });
    const productId = await running.createProduct({ stock: 5 });
    const user = uniq('u');
    const first = await running.purchase(productId, 1, user, 'k1');
    t.equal(first.status, 201);
    const until = Date.now() + 5_000;
    while (running.app.actors.stats().actors > 0 && Date.now() < until)
      await new Promise((r) => setTimeout(r, 20));
    t.equal(running.app.actors.stats().actors, 0, 'the actor passivated and forgot the key');
    const retry = await running.purchase(productId, 1, user, 'k1');
    t.equal(retry.status, 201);
    t.equal(retry.headers['idempotent-replayed'], 'true');
    t.equal((retry.body as { orderId: string }).orderId, (first.body as { orderId: string }).orderId);
    // The duplicate was found inside a batch that also carries a fresh purchase: that one still commits.
    const [again, fresh] = await Promise.all([
      running.purchase(productId, 1, user, 'k1'),
      running.purchase(productId, 2, user, 'k2'),
    ]);
    t.equal(again.status, 201);
    t.equal(fresh.status, 201);
    const after = await totals(running.infra.mysql.primary, productId);
    t.same({ stock: after.stock, orders: after.orders }, { stock: 2, orders: 2 });
  },
);

t.test('an out-of-stock answer is replayed to a retry even after a restock', async (t) => {
  const running = await startApp(t);
  const productId = await running.createProduct({ stock: 1 });
  const user = uniq('u');
  t.equal((await running.purchase(productId, 2, user, 'big')).status, 409);
  t.equal((await running.adminPost(`/products/${productId}/restock`, { quantity: 5 })).status, 200);
  const retry = await running.purchase(productId, 2, user, 'big');
  t.equal(retry.status, 409, 'the first answer, not a new purchase');
  t.equal(
    (await running.purchase(productId, 2, user, 'new-key')).status,
    201,
    'a new key buys from the restocked stock',
  );
});
