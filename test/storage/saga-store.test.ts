// The saga store against a real MariaDB (a throwaway database): an unfinished saga comes back for recovery
// with the request id of the purchase that made its order (README "Logs"), so a resumed saga's log lines
// join its purchase's; an order made without one comes back without.
import mysql from 'mysql2/promise';
import t from 'tap';
import type { NewOrder } from '../../src/domain/index.js';
import { writeBatch } from '../../src/storage/batch-writer.js';
import { migrate } from '../../src/storage/migrate.js';
import { poolOptions } from '../../src/storage/mysql.js';
import { SagaStore } from '../../src/storage/saga-store.js';
import { uniq } from '../helpers/isolation.js';
import { throwawayDatabase } from '../helpers/database.js';

t.test('pending sagas carry their purchase’s request id', async (t) => {
  const { endpoint } = await throwawayDatabase(t, 'sagas');
  await migrate(endpoint);
  const pool = mysql.createPool(poolOptions(endpoint, 2));
  t.teardown(() => pool.end());
  const [created] = await pool.query<mysql.ResultSetHeader>(
    'INSERT INTO products (name, price_cents, stock) VALUES (?, ?, ?)',
    ['p', 500, 10],
  );
  const productId = created.insertId;
  const order = (requestId?: string): NewOrder => ({
    id: uniq('order-'),
    productId,
    userId: 'u1',
    idempotencyKey: uniq('k'),
    quantity: 1,
    unitPriceCents: 500,
    ...(requestId === undefined ? {} : { requestId }),
  });
  const traced = order('abc-123');
  const untraced = order();
  const conn = await pool.getConnection();
  try {
    await writeBatch(
      conn,
      {
        productId,
        expectedVersion: 0,
        previousStock: 10,
        newStock: 8,
        orders: [traced, untraced],
        settlements: [],
      },
      {
        topics: { inventory: 't.inventory', orders: 't.orders', payments: 't.payments' },
        sagaDeadlineMs: 30_000,
        ownerEpoch: 1,
        strategy: 'actor',
        begin: true,
      },
    );
  } finally {
    conn.release();
  }
  const pending = await new SagaStore(pool).pending({ limit: 10, productIds: [productId] });
  t.same(
    Object.fromEntries(pending.map((s) => [s.orderId, s.requestId ?? null])),
    { [traced.id]: 'abc-123', [untraced.id]: null },
    'the id the order was bought under, or none',
  );
});
