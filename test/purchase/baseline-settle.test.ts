// The lock-per-request baseline settles sagas the cheapest correct way: a confirmation changes no stock,
// so it takes neither the product's Redis lock nor its row; a cancellation releases stock, so it does.
import type { RowDataPacket } from 'mysql2/promise';
import t from 'tap';
import { startApp } from '../helpers/app.js';
import { uniq } from '../helpers/isolation.js';
import { totals } from '../helpers/database.js';

async function orderStatus(pool: import('mysql2/promise').Pool, productId: number): Promise<string[]> {
  const [rows] = await pool.query<RowDataPacket[]>('SELECT status FROM orders WHERE product_id = ?', [
    productId,
  ]);
  return rows.map((r) => String(r['status']));
}

async function until(what: string, done: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Takes the product's Redis lock as "someone else". The reservation's row is visible a moment before its
 * holder deletes the lock (commit, then release), so this waits for the lock to be free first.
 */
async function takeLock(running: Awaited<ReturnType<typeof startApp>>, productId: number): Promise<string> {
  const lockKey = `${running.config.redis.keyPrefix}lock:product:${productId}`;
  await until(
    'the lock',
    async () => (await running.infra.redis.set(lockKey, 'someone-else', 'PX', 20_000, 'NX')) === 'OK',
  );
  return lockKey;
}

t.test('a confirmation commits while another holder has the product lock and row', async (t) => {
  // A slow provider leaves time to take the lock between the reservation and the confirmation.
  const running = await startApp(t, {}, { payment: { latencyMs: 600 } });
  const primary = running.infra.mysql.primary;
  const productId = await running.createProduct({ stock: 10, strategy: 'baseline' });
  const answer = running.purchase(productId, 3, uniq('u'), 'k1');
  await until('the reservation', async () => (await orderStatus(primary, productId)).length === 1);
  const reserved = await totals(primary, productId);
  t.same({ stock: reserved.stock, pending: reserved.pending }, { stock: 7, pending: 1 });

  const lockKey = await takeLock(running, productId);
  const holder = await primary.getConnection();
  await holder.query('START TRANSACTION');
  await holder.query('SELECT stock FROM products WHERE id = ? FOR UPDATE', [productId]);
  try {
    const confirmed = await answer;
    t.equal(confirmed.status, 201, 'confirmed while the lock and the row lock were held elsewhere');
    t.equal(confirmed.body.status, 'CONFIRMED');
  } finally {
    await holder.query('ROLLBACK');
    holder.release();
    await running.infra.redis.del(lockKey);
  }
  const after = await totals(primary, productId);
  t.same(
    { stock: after.stock, confirmed: after.confirmed, pending: after.pending, version: after.version },
    { stock: 7, confirmed: 1, pending: 0, version: reserved.version },
    'the confirmation left the product row alone',
  );
});

t.test('a cancellation releases the stock under the lock, and waits for it', async (t) => {
  // The purchase waits for its saga's end through the lock wait (10 s: past the default 2 s budget).
  const running = await startApp(
    t,
    { PURCHASE_WAIT_BUDGET_MS: '10000' },
    { payment: { latencyMs: 600, declineRate: 1 } },
  );
  const primary = running.infra.mysql.primary;
  // The lock must be taken within the payment's 600 ms; on a busy machine it sometimes is not (the
  // cancellation then commits first): such a try proves nothing, and the next one uses a new product.
  let productId = 0;
  let answer: ReturnType<typeof running.purchase> | undefined;
  let lockKey = '';
  for (let attempt = 1; attempt <= 5 && answer === undefined; attempt += 1) {
    productId = await running.createProduct({ stock: 10, strategy: 'baseline' });
    const pending = running.purchase(productId, 4, uniq('u'), 'k1');
    await until('the reservation', async () => (await orderStatus(primary, productId)).length === 1);
    lockKey = await takeLock(running, productId);
    if ((await orderStatus(primary, productId))[0] === 'PENDING') answer = pending;
    else {
      t.comment(`try ${attempt}: the cancellation committed before the lock was taken; again`);
      await running.infra.redis.del(lockKey);
      await pending;
    }
  }
  if (answer === undefined) throw new Error('the lock was never taken before the payment ended');
  // Past the payment: the cancellation must be waiting for the lock, with the stock still reserved.
  await new Promise((r) => setTimeout(r, 1_500));
  t.same(await orderStatus(primary, productId), ['PENDING'], 'not cancelled while the lock is held');
  t.equal((await totals(primary, productId)).stock, 6);
  await running.infra.redis.del(lockKey);
  const declined = await answer;
  t.equal(declined.status, 402, 'declined once the lock was free');
  const after = await totals(primary, productId);
  t.same(
    { stock: after.stock, pending: after.pending, cancelledQuantity: after.cancelledQuantity },
    {
      stock: 10,
      pending: 0,
      cancelledQuantity: 4,
    },
  );
});
