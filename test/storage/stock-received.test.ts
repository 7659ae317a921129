// products.stock_received, the ledger of units ever put on sale (migration 005): back-filled for rows that
// existed before it, a new row's stock at insert, and grown by exactly what each batch restocked.
import mysql, { type RowDataPacket } from 'mysql2/promise';
import t from 'tap';
import type { BatchWrite, NewOrder } from '../../src/domain/index.js';
import { writeBatch, writeCycle, type WriteBatchOptions } from '../../src/storage/batch-writer.js';
import { migrate, readMigrations } from '../../src/storage/migrate.js';
import { poolOptions } from '../../src/storage/mysql.js';
import { uniq } from '../helpers/isolation.js';
import { throwawayDatabase } from '../helpers/database.js';

const OPTIONS: WriteBatchOptions = {
  topics: { inventory: 't.inventory', orders: 't.orders', payments: 't.payments' },
  sagaDeadlineMs: 30_000,
  ownerEpoch: 1,
  strategy: 'actor',
  begin: true,
};

const order = (productId: number, quantity: number): NewOrder => ({
  id: uniq('order-'),
  productId,
  userId: 'u1',
  idempotencyKey: uniq('k'),
  quantity,
  unitPriceCents: 500,
});

t.test('stock_received: back-filled, set at insert, grown by restocks only', async (t) => {
  const { migration, endpoint } = await throwawayDatabase(t, 'ledger', { schema: false });
  const all = await readMigrations();
  await migrate(
    migration,
    all.filter((m) => m.version < 5),
  );
  const pool = mysql.createPool(poolOptions(endpoint, 1));
  t.teardown(() => pool.end());
  const conn = await pool.getConnection();
  t.teardown(() => conn.release());
  const insert = async (stock: number) =>
    (
      await conn.query<mysql.ResultSetHeader>(
        'INSERT INTO products (name, price_cents, stock) VALUES (?, 500, ?)',
        ['p', stock],
      )
    )[0].insertId;
  const received = async (id: number) =>
    Number(
      (await conn.query<RowDataPacket[]>('SELECT stock_received FROM products WHERE id = ?', [id]))[0][0]?.[
        'stock_received'
      ],
    );

  // Before 005: 20 put on sale, 2 pending + 3 confirmed + 4 cancelled (released) orders: stock 15.
  const old = await insert(15);
  for (const [status, quantity] of [
    ['PENDING', 2],
    ['CONFIRMED', 3],
    ['CANCELLED', 4],
  ] as const) {
    await conn.query(
      `INSERT INTO orders (id, product_id, user_id, idempotency_key, quantity, unit_price_cents, status, strategy)
       VALUES (?, ?, 'u', ?, ?, 500, ?, 'actor')`,
      [uniq('o-'), old, uniq('k'), quantity, status],
    );
  }
  await migrate(migration, all);
  t.equal(await received(old), 20, 'back-filled: stock + units of orders not cancelled');

  const fresh = await insert(7);
  t.equal(await received(fresh), 7, 'a new row starts at its stock');

  const restock: BatchWrite = {
    productId: fresh,
    expectedVersion: 0,
    previousStock: 7,
    newStock: 12,
    orders: [],
    settlements: [],
  };
  await writeBatch(conn, restock, OPTIONS);
  t.equal(await received(fresh), 12, 'a restock of 5 adds 5');

  const sale: BatchWrite = {
    productId: fresh,
    expectedVersion: 1,
    previousStock: 12,
    newStock: 12 - 2 - 1 + 3,
    orders: [order(fresh, 2), order(fresh, 1)],
    settlements: [],
  };
  await writeBatch(conn, sale, OPTIONS);
  t.equal(await received(fresh), 15, 'a batch selling 3 and restocking 3 adds 3');

  // Several products in one cycle (one UPDATE with CASE): only the restock moves the ledger.
  const other = await insert(4);
  const results = await writeCycle(
    conn,
    [
      {
        batch: {
          productId: fresh,
          expectedVersion: 2,
          previousStock: 12,
          newStock: 11,
          orders: [order(fresh, 1)],
          settlements: [],
        },
        ownerEpoch: 1,
      },
      {
        batch: {
          productId: other,
          expectedVersion: 0,
          previousStock: 4,
          newStock: 10,
          orders: [],
          settlements: [],
        },
        ownerEpoch: 1,
      },
    ],
    OPTIONS,
  );
  t.same(
    results.map((r) => r.kind),
    ['committed', 'committed'],
  );
  t.equal(await received(fresh), 15, 'a sale alone leaves it');
  t.equal(await received(other), 10, 'the restock of 6 in the same cycle adds 6');
});
