import t from 'tap';
import type { RowDataPacket } from '../../src/storage/mysql.js';
import { projectionMatches, startApp } from '../helpers/app.js';
import { uniq } from '../helpers/isolation.js';
import { totals } from '../helpers/database.js';
import { asUser } from '../helpers/tokens.js';

const INITIAL = 800;

t.test(
  '30% declines over 1,000 purchases: every order ends, every cancelled reservation is released',
  async (t) => {
    const running = await startApp(t, {}, { payment: { declineRate: 0.3, latencyMs: 2 }, projection: true });
    const productId = await running.createProduct({ stock: INITIAL, priceCents: 250 });
    const user = uniq('u');
    const statuses: Record<number, number> = {};
    for (let wave = 0; wave < 5; wave += 1) {
      const answers = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          running.purchase(productId, 1 + (i % 3), `${user}-${i % 50}`, `w${wave}-${i}`),
        ),
      );
      for (const a of answers) statuses[a.status] = (statuses[a.status] ?? 0) + 1;
      const declined = answers.find((a) => a.status === 402);
      if (declined)
        t.match(declined.body, {
          error: { code: 'PAYMENT_DECLINED' },
          status: 'CANCELLED',
          reason: /declined/,
        });
    }
    t.same(
      Object.keys(statuses).filter((s) => !['201', '402', '409'].includes(s)),
      [],
      `answers ${JSON.stringify(statuses)}`,
    );
    // Declines are random draws: 30% of the purchases that reached payment, give or take the dice.
    const declinedShare = (statuses[402] ?? 0) / ((statuses[402] ?? 0) + (statuses[201] ?? 0));
    t.ok(
      declinedShare > 0.2 && declinedShare < 0.4,
      `about 30% declined (${Math.round(declinedShare * 100)}%)`,
    );

    const db = await totals(running.infra.mysql.primary, productId);
    t.equal(db.pending, 0, 'no order is left pending');
    t.equal(db.stock + db.sold, INITIAL, 'stock + confirmed quantity = initial');
    t.equal(db.confirmed, statuses[201], 'every 201 is a confirmed order');

    const [rows] = await running.infra.mysql.primary.query<RowDataPacket[]>(
      `SELECT o.status, s.state, COUNT(*) AS n,
            SUM(EXISTS (SELECT 1 FROM saga_steps st WHERE st.order_id = o.id AND st.step = 'release_inventory')) AS released,
            SUM(EXISTS (SELECT 1 FROM saga_steps st WHERE st.order_id = o.id AND st.step = 'confirm_order')) AS confirmed_step
       FROM orders o JOIN sagas s ON s.order_id = o.id WHERE o.product_id = ? GROUP BY o.status, s.state`,
      [productId],
    );
    const byStatus = Object.fromEntries(rows.map((r) => [String(r['status']), r]));
    t.equal(Number(byStatus['CANCELLED']?.['n']), statuses[402], 'every 402 is a cancelled order');
    t.equal(byStatus['CANCELLED']?.['state'], 'CANCELLED');
    t.equal(
      Number(byStatus['CANCELLED']?.['released']),
      Number(byStatus['CANCELLED']?.['n']),
      'every cancelled order released its stock',
    );
    t.equal(byStatus['CONFIRMED']?.['state'], 'CONFIRMED');
    t.equal(Number(byStatus['CONFIRMED']?.['confirmed_step']), db.confirmed);

    const stats = running.provider.stats();
    t.equal(stats.charges - stats.refunded, db.confirmed, 'each confirmed order was charged exactly once');
    // A call that timed out under load is retried with the same key (attempts may exceed 1); the money
    // moved is what counts: exactly the confirmed orders' value, nothing charged twice.
    const [[confirmed]] = await running.infra.mysql.primary.query<RowDataPacket[]>(
      "SELECT COALESCE(SUM(quantity * unit_price_cents), 0) AS cents FROM orders WHERE product_id = ? AND status = 'CONFIRMED'",
      [productId],
    );
    t.equal(
      stats.totalChargedCents - stats.totalRefundedCents,
      Number(confirmed?.['cents']),
      `the money charged is the confirmed orders' value (most attempts on one key: ${stats.chargeAttemptsByKeyMax})`,
    );

    // The actor's memory agrees with MySQL: exactly the remaining stock can still be bought.
    const product = await running.get(`/products/${productId}`);
    t.equal(product.body.stock, db.stock, 'the cache shows the stock MySQL has');

    const { want, got } = await projectionMatches(running, productId);
    t.same(got, want, 'the sales projection (from Kafka) equals MySQL');
  },
);

t.test('GET /orders/:id shows the saga steps with their times', async (t) => {
  const running = await startApp(t, {}, { payment: { declineRate: 1 } });
  const productId = await running.createProduct({ stock: 5 });
  const buyer = uniq('u');
  const answer = await running.purchase(productId, 2, buyer, 'k');
  t.equal(answer.status, 402);
  const order = await running.get(`/orders/${answer.body.orderId}`, await asUser(buyer));
  t.equal(order.status, 200);
  t.match(order.body, {
    status: 'CANCELLED',
    quantity: 2,
    saga: { state: 'CANCELLED', version: 1, reason: /declined/ },
  });
  t.same(
    order.body.saga.steps.map((s: { step: string; outcome: string }) => `${s.step}:${s.outcome}`),
    [
      'reserve_inventory:done',
      'create_order:done',
      'process_payment:declined',
      'cancel_order:done',
      'release_inventory:done',
    ],
  );
  t.ok(
    order.body.saga.steps.every((s: { at: string }) => !Number.isNaN(Date.parse(s.at))),
    'every step has a time',
  );
  t.equal((await running.get(`/products/${productId}`)).body.stock, 5, 'the stock came back');
  t.equal((await running.get('/orders/not-a-uuid', await asUser(buyer))).status, 400);
  t.equal(
    (await running.get('/orders/01a20000-0000-7000-8000-000000000000', await asUser(buyer))).status,
    404,
  );
});

t.test(
  'a purchase whose saga outlasts the wait budget answers 202, and a retry later gets the end',
  async (t) => {
    const running = await startApp(t, { PURCHASE_WAIT_BUDGET_MS: '50' }, { payment: { latencyMs: 400 } });
    const productId = await running.createProduct({ stock: 5 });
    const user = uniq('u');
    const first = await running.purchase(productId, 1, user, 'slow');
    t.equal(first.status, 202);
    t.match(first.body, { status: 'PENDING' });
    t.equal(first.headers['location'], `/orders/${first.body.orderId}`);
    await new Promise((r) => setTimeout(r, 800));
    const retry = await running.purchase(productId, 1, user, 'slow');
    t.equal(retry.status, 201);
    t.equal(retry.body.orderId, first.body.orderId);
    t.equal(retry.body.status, 'CONFIRMED');
  },
);
