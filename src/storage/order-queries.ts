import type { ExistingOrder, OrderStatus, OrderView } from '../domain/index.js';
import type { Pool, PoolConnection, RowDataPacket } from './mysql.js';

const ORDER_COLUMNS =
  'id, product_id, user_id, idempotency_key, quantity, unit_price_cents, status, created_at';

/** An order row's common fields (GET /orders/:id, idempotent replays); the row has the orders table's column names. */
export function orderFromRow(row: RowDataPacket): OrderView {
  return {
    orderId: String(row['id']),
    productId: Number(row['product_id']),
    userId: String(row['user_id']),
    quantity: Number(row['quantity']),
    unitPriceCents: Number(row['unit_price_cents']),
    status: String(row['status']) as OrderStatus,
    createdAt: (row['created_at'] as Date).toISOString(),
  };
}

export function toExistingOrder(row: RowDataPacket): ExistingOrder {
  return { ...orderFromRow(row), idempotencyKey: String(row['idempotency_key']) };
}

/** Orders already bought under any of these (user, idempotency key) pairs. */
export async function findOrdersByIdempotency(
  db: Pool | PoolConnection,
  keys: readonly { userId: string; idempotencyKey: string }[],
): Promise<ExistingOrder[]> {
  if (keys.length === 0) return [];
  const users = [...new Set(keys.map((k) => k.userId))];
  const idemKeys = [...new Set(keys.map((k) => k.idempotencyKey))];
  const [rows] = await db.query<RowDataPacket[]>(
    `SELECT ${ORDER_COLUMNS} FROM orders WHERE user_id IN (?) AND idempotency_key IN (?)`,
    [users, idemKeys],
  );
  const wanted = new Set(keys.map((k) => `${k.userId}\u0000${k.idempotencyKey}`));
  return rows.map(toExistingOrder).filter((o) => wanted.has(`${o.userId}\u0000${o.idempotencyKey}`));
}
