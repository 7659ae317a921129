import type {
  OrderView,
  PurchaseOutcome,
  PurchaseRefusal,
  PurchaseRequest,
  Refusal,
  RestockOutcome,
} from '../../actors/product/types.js';
import { uuidv7 } from '../ids.js';
import type { Logger } from '../logger.js';
import type { Pool, PoolConnection, ResultSetHeader, RowDataPacket } from '../storage/mysql.js';
import type { RedisProductCache } from '../storage/product-cache.js';
import { findOrdersByIdempotency } from '../storage/product-store.js';
import type { RedisLock } from '../storage/redis-lock.js';

const ER_DUP_ENTRY = 1062;

export interface BaselineDeps {
  primary: Pool;
  cache: RedisProductCache;
  lock: RedisLock;
  logger: Logger;
  keyPrefix: string;
  /** Lock lifetime, ms: longer than any transaction, short enough to recover from a crashed holder. Default 5000. */
  lockTtlMs?: number;
}

/**
 * The specification's lock-per-request purchase path, kept so benchmarks can compare it with the actor
 * path on the same stack: (1) Redis lock per product, (2) SELECT ... FOR UPDATE, (3) optimistic
 * version check in the UPDATE, (4) Lua check-and-decrement of the cached stock.
 */
export class BaselinePurchases {
  constructor(private readonly deps: BaselineDeps) {}

  async purchase(request: PurchaseRequest): Promise<PurchaseOutcome> {
    return this.underLock(request.productId, request.deadline, async (conn) => {
      const row = await this.lockRow(conn, request.productId);
      if (row === undefined)
        return refused('PRODUCT_NOT_FOUND', `product ${request.productId} does not exist`);
      if (row.stock < request.quantity) {
        await conn.query('ROLLBACK');
        return {
          kind: 'out_of_stock',
          productId: request.productId,
          requested: request.quantity,
          available: row.stock,
        };
      }
      const [update] = await conn.query<ResultSetHeader>(
        'UPDATE products SET stock = stock - ?, version = version + 1 WHERE id = ? AND version = ? AND stock >= ?',
        [request.quantity, request.productId, row.version, request.quantity],
      );
      if (update.affectedRows !== 1) {
        await conn.query('ROLLBACK');
        return refused('OWNERSHIP_LOST', `product ${request.productId} changed during the purchase; retry`);
      }
      const id = uuidv7();
      try {
        await conn.query(
          `INSERT INTO orders (id, product_id, user_id, idempotency_key, quantity, unit_price_cents, status, strategy)
           VALUES (?, ?, ?, ?, ?, ?, 'CONFIRMED', 'baseline')`,
          [id, request.productId, request.userId, request.idempotencyKey, request.quantity, row.priceCents],
        );
      } catch (err) {
        if ((err as { errno?: number }).errno !== ER_DUP_ENTRY) throw err;
        await conn.query('ROLLBACK');
        return this.replay(request);
      }
      await conn.query('COMMIT');
      await this.decrementCachedStock(
        request.productId,
        request.quantity,
        row.version + 1,
        row.stock - request.quantity,
      );
      const order: OrderView = {
        orderId: id,
        productId: request.productId,
        userId: request.userId,
        quantity: request.quantity,
        unitPriceCents: row.priceCents,
        status: 'CONFIRMED',
        createdAt: new Date().toISOString(),
      };
      return { kind: 'created', order };
    });
  }

  async restock(productId: number, quantity: number, deadline: number): Promise<RestockOutcome> {
    return this.underLock(productId, deadline, async (conn): Promise<RestockOutcome> => {
      const row = await this.lockRow(conn, productId);
      if (row === undefined) return refused('PRODUCT_NOT_FOUND', `product ${productId} does not exist`);
      await conn.query('UPDATE products SET stock = stock + ?, version = version + 1 WHERE id = ?', [
        quantity,
        productId,
      ]);
      await conn.query('COMMIT');
      const stock = row.stock + quantity;
      await this.deps.cache.setStock(productId, stock, row.version + 1).catch(() => undefined);
      return { kind: 'restocked', productId, stock, version: row.version + 1 };
    });
  }

  private async underLock<T>(
    productId: number,
    deadline: number,
    work: (conn: PoolConnection) => Promise<T | Refusal>,
  ): Promise<T | Refusal> {
    const key = `${this.deps.keyPrefix}lock:product:${productId}`;
    const token = await this.deps.lock.acquire(key, this.deps.lockTtlMs ?? 5_000, deadline);
    if (token === undefined)
      return refused('DEADLINE_EXCEEDED', `could not lock product ${productId} before the deadline`);
    const conn = await this.deps.primary.getConnection();
    try {
      await conn.query('START TRANSACTION');
      return await work(conn);
    } catch (err) {
      await conn.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      conn.release();
      await this.deps.lock
        .release(key, token)
        .catch((err: unknown) =>
          this.deps.logger.warn(
            { productId, err: (err as Error).message },
            'lock release failed; it expires with its TTL',
          ),
        );
    }
  }

  private async lockRow(conn: PoolConnection, productId: number) {
    const [rows] = await conn.query<RowDataPacket[]>(
      'SELECT stock, version, price_cents FROM products WHERE id = ? FOR UPDATE',
      [productId],
    );
    const row = rows[0];
    if (row === undefined) {
      await conn.query('ROLLBACK');
      return undefined;
    }
    return {
      stock: Number(row['stock']),
      version: Number(row['version']),
      priceCents: Number(row['price_cents']),
    };
  }

  private async decrementCachedStock(
    productId: number,
    quantity: number,
    version: number,
    stock: number,
  ): Promise<void> {
    try {
      const left = await this.deps.cache.decrementStock(productId, quantity, version);
      // Nothing cached, or a cache that disagrees with the row we just locked: the row wins.
      if (left !== stock) await this.deps.cache.setStock(productId, stock, version);
    } catch (err) {
      this.deps.logger.warn({ productId, err: (err as Error).message }, 'cached stock decrement failed');
    }
  }

  private async replay(request: PurchaseRequest): Promise<PurchaseOutcome> {
    const [existing] = await findOrdersByIdempotency(this.deps.primary, [request]);
    if (existing === undefined) throw new Error('duplicate order key but no order found');
    const { idempotencyKey: _key, ...order } = existing;
    if (order.productId !== request.productId || order.quantity !== request.quantity) {
      return refused(
        'IDEMPOTENCY_KEY_REUSED',
        `Idempotency-Key ${JSON.stringify(request.idempotencyKey)} was already used for a different purchase`,
      );
    }
    return { kind: 'replayed', order };
  }
}

function refused(reason: PurchaseRefusal, message: string): Refusal {
  return { kind: 'refused', reason, message };
}
