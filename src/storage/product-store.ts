import type {
  BatchResult,
  BatchWrite,
  ExistingOrder,
  ProductRecord,
  ProductStore,
} from '../../actors/product/types.js';
import type { Pool, PoolConnection, ResultSetHeader, RowDataPacket } from './mysql.js';

/** MySQL error number for a duplicate unique key. */
const ER_DUP_ENTRY = 1062;

const ORDER_COLUMNS =
  'id, product_id, user_id, idempotency_key, quantity, unit_price_cents, status, created_at';

export function toExistingOrder(row: RowDataPacket): ExistingOrder {
  return {
    orderId: String(row['id']),
    productId: Number(row['product_id']),
    userId: String(row['user_id']),
    idempotencyKey: String(row['idempotency_key']),
    quantity: Number(row['quantity']),
    unitPriceCents: Number(row['unit_price_cents']),
    status: String(row['status']),
    createdAt: (row['created_at'] as Date).toISOString(),
  };
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

/**
 * The product actor's storage: one transaction per batch. The stock update comes first and carries the
 * version check, so a fenced-out owner learns it before inserting anything; then the orders go in as
 * one multi-row insert.
 */
export class MysqlProductStore implements ProductStore {
  constructor(
    private readonly primary: Pool,
    private readonly ownerEpoch: () => number = () => 0,
  ) {}

  async load(productId: number): Promise<ProductRecord | undefined> {
    const [rows] = await this.primary.query<RowDataPacket[]>(
      'SELECT id, name, price_cents, stock, version FROM products WHERE id = ?',
      [productId],
    );
    const row = rows[0];
    if (row === undefined) return undefined;
    return {
      id: Number(row['id']),
      name: String(row['name']),
      priceCents: Number(row['price_cents']),
      stock: Number(row['stock']),
      version: Number(row['version']),
    };
  }

  async commitBatch(batch: BatchWrite): Promise<BatchResult> {
    const conn = await this.primary.getConnection();
    const epoch = this.ownerEpoch();
    try {
      await conn.query('START TRANSACTION');
      const [update] = await conn.query<ResultSetHeader>(
        'UPDATE products SET stock = ?, version = version + 1, owner_epoch = ? WHERE id = ? AND version = ?',
        [batch.newStock, epoch, batch.productId, batch.expectedVersion],
      );
      if (update.affectedRows !== 1) {
        await conn.query('ROLLBACK');
        return { kind: 'version_conflict' };
      }
      if (batch.orders.length > 0) {
        const rows = batch.orders.map((o) => [
          o.id,
          o.productId,
          o.userId,
          o.idempotencyKey,
          o.quantity,
          o.unitPriceCents,
          'CONFIRMED',
          'actor',
          epoch,
        ]);
        try {
          await conn.query(
            'INSERT INTO orders (id, product_id, user_id, idempotency_key, quantity, unit_price_cents, status, strategy, owner_epoch) VALUES ?',
            [rows],
          );
        } catch (err) {
          if ((err as { errno?: number }).errno !== ER_DUP_ENTRY) throw err;
          await conn.query('ROLLBACK');
          const existing = await findOrdersByIdempotency(this.primary, batch.orders);
          if (existing.length === 0) throw err;
          return { kind: 'duplicates', existing };
        }
      }
      await conn.query('COMMIT');
      return { kind: 'committed', version: batch.expectedVersion + 1, committedAt: new Date().toISOString() };
    } catch (err) {
      await conn.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      conn.release();
    }
  }
}
