import t from 'tap';
import { startApp, totals, uniq } from '../helpers/app.js';

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

  const fenced = await Promise.all(
    Array.from({ length: 20 }, (_, i) => running.purchase(productId, 1, user, `fenced-${i}`)),
  );
  const statuses = new Set(fenced.map((a) => a.status));
  t.notOk(statuses.has(201), 'no purchase of the fenced batch answered success');
  const first = fenced[0]!;
  t.equal(first.status, 503);
  t.match(first.body, { error: { code: 'OWNERSHIP_LOST', retryable: true } });
  t.equal(first.headers['retry-after'], '1');
  const after = await totals(running.infra.mysql.primary, productId);
  t.same(after, before, 'the fenced actor wrote nothing: stock, version and orders unchanged');

  // The stale actor stopped; the next request loads the row afresh and sells from the real stock.
  const retried = await Promise.all(
    fenced.map((_, i) => running.purchase(productId, 1, user, `fenced-${i}`)),
  );
  t.same(new Set(retried.map((a) => a.status)), new Set([201]), 'the retries with the same keys succeed');
  const final = await totals(running.infra.mysql.primary, productId);
  t.equal(final.stock, 50 - 1 - 3 - 20);
  t.equal(final.orders, 21);
});
