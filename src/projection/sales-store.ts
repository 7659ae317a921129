import type { Pool, PoolConnection, ResultSetHeader, RowDataPacket } from '../storage/mysql.js';
import {
  foldOrderEvents,
  ORDER_STATUSES,
  type OrderEvent,
  type OrderRow,
  type OrderStatus,
  type SalesDelta,
} from './sales-rules.js';
import { AppError } from '../errors.js';
import { lockRetryPause, retriesLockError } from '../storage/batch-writer.js';

export interface ApplyResult {
  applied: number;
  duplicates: number;
  /** Event ids of confirmed/cancelled events that met the opposite terminal status. */
  conflicts: string[];
}

/**
 * Applies `events` in one transaction, a few statements for the whole chunk: the event ids already
 * recorded are locked and skipped, the new ones recorded (INSERT IGNORE), the touched orders locked and
 * folded forward in memory, then order_history and product_sales written in one upsert each.
 *
 * Two consumers (nodes) writing at once lock the same gap at the end of projection_events' index (event
 * ids are time-ordered) before inserting into it, so InnoDB often picks one as a deadlock victim: its
 * transaction, rolled back whole, is sent again at once (up to `lockRetryLimit` times), as the commit
 * pipeline's cycles are.
 */
export async function applyOrderEvents(pool: Pool, events: readonly OrderEvent[]): Promise<ApplyResult> {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await applyOnce(pool, events);
    } catch (err) {
      if (!retriesLockError(err, attempt)) throw err;
      await lockRetryPause(attempt);
    }
  }
}

async function applyOnce(pool: Pool, events: readonly OrderEvent[]): Promise<ApplyResult> {
  const conn = await pool.getConnection();
  try {
    await conn.beginTransaction();
    const [seen] = await conn.query<RowDataPacket[]>(
      'SELECT event_id FROM projection_events WHERE event_id IN (?) FOR UPDATE',
      [events.map((e) => e.eventId)],
    );
    const done = new Set(seen.map((r) => String(r['event_id'])));
    const fresh: OrderEvent[] = [];
    for (const event of events) {
      if (done.has(event.eventId)) continue; // recorded before, or twice in this chunk
      done.add(event.eventId);
      fresh.push(event);
    }
    const result: ApplyResult = {
      applied: fresh.length,
      duplicates: events.length - fresh.length,
      conflicts: [],
    };
    if (fresh.length > 0) {
      const [recorded] = await conn.query<ResultSetHeader>(
        'INSERT IGNORE INTO projection_events (event_id, event_type, product_id, order_id, occurred_at) VALUES ?',
        [fresh.map((e) => [e.eventId, e.type, e.productId, e.orderId, e.occurredAt])],
      );
      // Only another consumer recording the same ids between our lock and insert could cause this.
      if (recorded.affectedRows !== fresh.length)
        throw new AppError('DEPENDENCY_UNAVAILABLE', 'events recorded concurrently; retrying');
      const folded = foldOrderEvents(await lockOrders(conn, fresh), fresh);
      result.conflicts = folded.conflicts;
      await writeOrders(conn, folded.changed);
      await addToProductSales(conn, folded.deltas);
    }
    await conn.commit();
    return result;
  } catch (err) {
    await conn.rollback().catch(() => undefined);
    throw err;
  } finally {
    conn.release();
  }
}

/** The current rows of the events' orders, locked until commit. */
async function lockOrders(
  conn: PoolConnection,
  events: readonly OrderEvent[],
): Promise<Map<string, OrderRow>> {
  const [rows] = await conn.query<RowDataPacket[]>(
    `SELECT order_id, product_id, user_id, status, quantity, unit_price_cents, created_at
       FROM order_history WHERE order_id IN (?) FOR UPDATE`,
    [[...new Set(events.map((e) => e.orderId))]],
  );
  const orders = new Map<string, OrderRow>();
  for (const r of rows) {
    const status = String(r['status']) as OrderStatus;
    orders.set(String(r['order_id']), {
      productId: Number(r['product_id']),
      userId: r['user_id'] === null ? null : String(r['user_id']),
      status: ORDER_STATUSES.includes(status) ? status : 'PENDING',
      quantity: Number(r['quantity']),
      unitPriceCents: Number(r['unit_price_cents']),
      createdAt: r['created_at'] as Date,
    });
  }
  return orders;
}

/** The rows were computed from locked current rows, so the upsert writes them whole. */
async function writeOrders(conn: PoolConnection, changed: ReadonlyMap<string, OrderRow>): Promise<void> {
  if (changed.size === 0) return;
  const values = [...changed].map(([orderId, o]) => [
    orderId,
    o.productId,
    o.userId,
    o.status,
    o.quantity,
    o.unitPriceCents,
    o.createdAt,
  ]);
  await conn.query(
    `INSERT INTO order_history (order_id, product_id, user_id, status, quantity, unit_price_cents, created_at)
     VALUES ?
     ON DUPLICATE KEY UPDATE user_id = VALUES(user_id), status = VALUES(status), quantity = VALUES(quantity),
       unit_price_cents = VALUES(unit_price_cents), created_at = VALUES(created_at)`,
    [values],
  );
}

/** One upsert for all products of the transaction, in product id order (a stable lock order). */
async function addToProductSales(
  conn: PoolConnection,
  deltas: ReadonlyMap<number, SalesDelta>,
): Promise<void> {
  if (deltas.size === 0) return;
  const rows = [...deltas]
    .sort(([a], [b]) => a - b)
    .map(([productId, d]) => [
      productId,
      d.confirmedOrders,
      d.confirmedQuantity,
      d.revenueCents,
      d.cancelledOrders,
      d.cancelledQuantity,
    ]);
  await conn.query(
    `INSERT INTO product_sales
       (product_id, confirmed_orders, confirmed_quantity, revenue_cents, cancelled_orders, cancelled_quantity)
     VALUES ?
     ON DUPLICATE KEY UPDATE
       confirmed_orders = confirmed_orders + VALUES(confirmed_orders),
       confirmed_quantity = confirmed_quantity + VALUES(confirmed_quantity),
       revenue_cents = revenue_cents + VALUES(revenue_cents),
       cancelled_orders = cancelled_orders + VALUES(cancelled_orders),
       cancelled_quantity = cancelled_quantity + VALUES(cancelled_quantity)`,
    [rows],
  );
}

/** A product's totals as GET /stats/products/:id shows them; zeros before its first order. */
export interface ProductSales {
  productId: number;
  confirmedOrders: number;
  soldQuantity: number;
  revenueCents: number;
  cancelledOrders: number;
  cancelledQuantity: number;
  updatedAt: string | null;
}

export async function readProductSales(pool: Pool, productId: number): Promise<ProductSales> {
  const [rows] = await pool.query<RowDataPacket[]>(
    `SELECT confirmed_orders, confirmed_quantity, revenue_cents, cancelled_orders, cancelled_quantity, updated_at
       FROM product_sales WHERE product_id = ?`,
    [productId],
  );
  const row = rows[0];
  return {
    productId,
    confirmedOrders: Number(row?.['confirmed_orders'] ?? 0),
    soldQuantity: Number(row?.['confirmed_quantity'] ?? 0),
    revenueCents: Number(row?.['revenue_cents'] ?? 0),
    cancelledOrders: Number(row?.['cancelled_orders'] ?? 0),
    cancelledQuantity: Number(row?.['cancelled_quantity'] ?? 0),
    updatedAt: row === undefined ? null : (row['updated_at'] as Date).toISOString(),
  };
}
