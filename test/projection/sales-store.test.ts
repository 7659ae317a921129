// The projection's transaction against the real MariaDB: two consumers (two nodes, two partitions)
// applying new events at once. Event ids are time-ordered (UUIDv7), so both lock the same gap at the end
// of projection_events' index before inserting into it: InnoDB picks one as a deadlock victim, which is
// sent again at once instead of failing the chunk.
import mysql from 'mysql2/promise';
import t from 'tap';
import { applyOrderEvents } from '../../src/projection/sales-store.js';
import type { OrderEvent } from '../../src/projection/sales-rules.js';
import { uuidv7 } from '../../src/ids.js';
import { poolOptions, type RowDataPacket } from '../../src/storage/mysql.js';
import { throwawayDatabase } from '../helpers/database.js';

const created = (productId: number): OrderEvent => ({
  eventId: uuidv7(),
  type: 'order.created',
  productId,
  orderId: uuidv7(),
  occurredAt: new Date(),
  quantity: 1,
  unitPriceCents: 100,
  userId: 'u',
});

t.test(
  'two consumers applying new events at once both succeed: a deadlock victim is sent again',
  async (t) => {
    const db = await throwawayDatabase(t, 'projection');
    const pool = mysql.createPool(poolOptions(db.endpoint, 8));
    t.teardown(() => pool.end());
    const rounds = 30;
    let applied = 0;
    for (let round = 0; round < rounds; round += 1) {
      // Each "consumer" its own product (its own partition), ten new orders per chunk.
      const chunks = [1, 2].map((productId) => Array.from({ length: 10 }, () => created(productId)));
      const results = await Promise.all(chunks.map((events) => applyOrderEvents(pool, events)));
      applied += results.reduce((n, r) => n + r.applied, 0);
    }
    t.equal(applied, rounds * 20, 'every event applied, none failed');
    const [rows] = await pool.query<RowDataPacket[]>(
      'SELECT product_id, confirmed_orders, cancelled_orders FROM product_sales ORDER BY product_id',
    );
    const [[events]] = await pool.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM projection_events');
    t.equal(Number(events?.['n']), rounds * 20, 'each event recorded once');
    t.same(rows, [], 'created orders change no totals (only confirmations and cancellations do)');
  },
);
