import t from 'tap';
import { startApp } from '../helpers/app.js';
import { uniq } from '../helpers/isolation.js';
import { totals } from '../helpers/database.js';

t.test('a batch whose version check fails commits nothing and claims no success', async (t) => {
  const running = await startApp(t);
  const productId = await running.createProduct({ stock: 50 });
  const user = uniq('u');
  t.equal(
    (await running.purchase(productId, 1, user, 'before')).status,
    201,
    'the actor is active and loaded',
  );

  // Another owner writes the row behind this actor's back (as a new lease holder would).
  await running.infra.mysql.primary.query(
    'UPDATE products SET stock = stock - 3, version = version + 1 WHERE id = ?',
    [productId],
  );
  const before = await totals(running.infra.mysql.primary, productId);

  // Straight to this node's actors (no router, which would retry): the stale actor's batch.
  const deadline = Date.now() + 5_000;
  const fenced = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      running.app.actors.purchase({
        productId,
        quantity: 1,
        userId: user,
        idempotencyKey: `fenced-${i}`,
        deadline,
      }),
    ),
  );
  t.same(
    [...new Set(fenced.map((o) => (o.kind === 'refused' ? o.reason : o.kind)))],
    ['OWNERSHIP_LOST'],
    'every purchase of the fenced batch was refused as retryable; none claimed success',
  );
  t.same(await totals(running.infra.mysql.primary, productId), before, 'the fenced actor wrote nothing');

  // Over HTTP the router retries such a refusal: a fresh actor loads the row and sells from the real stock.
  const retried = await Promise.all(
    fenced.map((_, i) => running.purchase(productId, 1, user, `fenced-${i}`)),
  );
  t.same(new Set(retried.map((a) => a.status)), new Set([201]), 'the retries with the same keys succeed');
  const final = await totals(running.infra.mysql.primary, productId);
  t.equal(final.stock, 50 - 1 - 3 - 20);
  t.equal(final.orders, 21);
});

t.test('over HTTP a fenced actor is invisible: the router retries with a fresh actor', async (t) => {
  const running = await startApp(t);
  const productId = await running.createProduct({ stock: 10 });
  const user = uniq('u');
  t.equal((await running.purchase(productId, 1, user, 'a')).status, 201);
  await running.infra.mysql.primary.query('UPDATE products SET version = version + 1 WHERE id = ?', [
    productId,
  ]);
  const answer = await running.purchase(productId, 2, user, 'b');
  t.equal(answer.status, 201);
  const final = await totals(running.infra.mysql.primary, productId);
  t.same(
    { stock: final.stock, orders: final.orders },
    { stock: 7, orders: 2 },
    'sold once, from the real row',
  );
});
