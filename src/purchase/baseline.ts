import { orderView, refused } from '../domain/index.js';
import type {
  BatchResult,
  BatchWrite,
  PurchaseOutcome,
  PurchaseRequest,
  Refusal,
  RestockOutcome,
  SettleOutcome,
  Settlement,
} from '../domain/index.js';
import { uuidv7 } from '../ids.js';
import type { Logger } from '../logger.js';
import { writeBatch, type BatchWriterOptions } from '../storage/batch-writer.js';
import type { Pool, PoolConnection, RowDataPacket } from '../storage/mysql.js';
import type { RedisProductCache } from '../storage/product-cache.js';
import type { RedisLock } from '../storage/redis-lock.js';

export interface BaselineDeps {
  primary: Pool;
  cache: RedisProductCache;
  lock: RedisLock;
  logger: Logger;
  keyPrefix: string;
  writer: Omit<BatchWriterOptions, 'ownerEpoch' | 'strategy'>;
  /** Lock lifetime, ms: longer than any transaction, short enough to recover from a crashed holder. Default 5000. */
  lockTtlMs?: number;
  /** Called after each commit (wakes the outbox relay). */
  onCommit?: () => void;
  /** Called after a commit that changed the stock (WebSocket subscribers), like the actor path's hook. */
  onStockChanged?: (productId: number, stock: number, version: number) => void;
}

interface LockedRow {
  stock: number;
  version: number;
  priceCents: number;
}

/**
 * The specification's lock-per-request purchase path, kept so benchmarks can compare it with the actor
 * path on the same stack: (1) Redis lock per product, (2) SELECT ... FOR UPDATE, (3) optimistic
 * version check in the UPDATE, (4) Lua check-and-decrement of the cached stock. It writes the same rows
 * and events as the actor path (one request per transaction instead of one batch). Its sagas' cancellations
 * (which release stock) take the same lock; confirmations take none (see `settle`).
 */
export class BaselinePurchases {
  constructor(private readonly deps: BaselineDeps) {}

  async purchase(request: PurchaseRequest): Promise<PurchaseOutcome> {
    return this.underLock(request.productId, request.deadline, async (conn, row) => {
      if (row.stock < request.quantity) {
        return {
          kind: 'out_of_stock',
          productId: request.productId,
          requested: request.quantity,
          available: row.stock,
        };
      }
      const order = {
        id: uuidv7(),
        productId: request.productId,
        userId: request.userId,
        idempotencyKey: request.idempotencyKey,
        quantity: request.quantity,
        unitPriceCents: row.priceCents,
        requestId: request.requestId,
      };
      const result = await this.write(conn, row, request.productId, {
        orders: [order],
        newStock: row.stock - request.quantity,
      });
      switch (result.kind) {
        case 'committed':
          await this.decrementCachedStock(
            request.productId,
            request.quantity,
            result.version,
            row.stock - request.quantity,
          );
          return {
            kind: 'created',
            order: orderView(order, result.committedAt),
            stock: { stock: row.stock - request.quantity, version: result.version },
          };
        case 'duplicates': {
          const { idempotencyKey: _key, ...existing } = result.existing[0]!;
          if (existing.productId !== request.productId || existing.quantity !== request.quantity) {
            return refused(
              'IDEMPOTENCY_KEY_REUSED',
              `Idempotency-Key ${JSON.stringify(request.idempotencyKey)} was already used for a different purchase`,
            );
          }
          return { kind: 'replayed', order: existing };
        }
        default:
          return refused('OWNERSHIP_LOST', `product ${request.productId} changed during the purchase; retry`);
      }
    });
  }

  /**
   * A saga's decision. A cancellation releases stock, so it is written under the product's lock like any
   * other stock change; a confirmation changes no stock and takes no lock: the saga row's version check
   * alone makes it happen once (the lock would only make every purchase queue for it twice).
   */
  async settle(settlement: Settlement, deadline: number): Promise<SettleOutcome> {
    if (settlement.outcome === 'confirm') return this.confirm(settlement);
    return this.underLock(settlement.productId, deadline, async (conn, row): Promise<SettleOutcome> => {
      const result = await this.write(conn, row, settlement.productId, {
        settlements: [settlement],
        newStock: row.stock + settlement.quantity,
      });
      if (result.kind === 'committed') {
        await this.setCachedStock(settlement.productId, row.stock + settlement.quantity, result.version);
        return { kind: 'settled', status: 'CANCELLED' };
      }
      return this.settleRefused(settlement, result);
    });
  }

  private async confirm(settlement: Settlement): Promise<SettleOutcome> {
    const conn = await this.deps.primary.getConnection();
    try {
      const batch: BatchWrite = {
        productId: settlement.productId,
        expectedVersion: 0, // not checked: the product row is not touched
        previousStock: 0,
        newStock: 0,
        orders: [],
        settlements: [settlement],
      };
      const result = await writeBatch(conn, batch, {
        ...this.deps.writer,
        ownerEpoch: 0,
        strategy: 'baseline',
        begin: true,
        touchProduct: false,
      });
      if (result.kind !== 'committed') return this.settleRefused(settlement, result);
      this.deps.onCommit?.();
      return { kind: 'settled', status: 'CONFIRMED' };
    } catch (err) {
      await conn.query('ROLLBACK').catch(() => undefined); // a failed statement may leave it open
      throw err;
    } finally {
      conn.release();
    }
  }

  private settleRefused(settlement: Settlement, result: BatchResult): SettleOutcome {
    if (result.kind === 'settled_elsewhere')
      return { kind: 'already', status: result.sagas[0]?.status ?? 'PENDING' };
    return refused('OWNERSHIP_LOST', `product ${settlement.productId} changed during the settlement; retry`);
  }

  async restock(productId: number, quantity: number, deadline: number): Promise<RestockOutcome> {
    return this.underLock(productId, deadline, async (conn, row): Promise<RestockOutcome> => {
      const result = await this.write(conn, row, productId, { newStock: row.stock + quantity });
      if (result.kind !== 'committed')
        return refused('OWNERSHIP_LOST', `product ${productId} changed during the restock; retry`);
      await this.setCachedStock(productId, row.stock + quantity, result.version);
      return { kind: 'restocked', productId, stock: row.stock + quantity, version: result.version };
    });
  }

  /** One version-checked write of the locked row, committed in the same round trip when it goes through. */
  private async write(
    conn: PoolConnection,
    row: LockedRow,
    productId: number,
    change: Partial<Pick<BatchWrite, 'orders' | 'settlements'>> & { newStock: number },
  ) {
    const batch: BatchWrite = {
      productId,
      expectedVersion: row.version,
      previousStock: row.stock,
      newStock: change.newStock,
      orders: change.orders ?? [],
      settlements: change.settlements ?? [],
    };
    const result = await writeBatch(conn, batch, {
      ...this.deps.writer,
      ownerEpoch: 0,
      strategy: 'baseline',
      begin: false, // underLock opened it with the row lock
    });
    if (result.kind === 'committed') {
      this.deps.onCommit?.();
      if (change.newStock !== row.stock)
        this.deps.onStockChanged?.(productId, change.newStock, result.version);
    }
    return result;
  }

  /** Takes the Redis lock, opens a transaction and locks the row; PRODUCT_NOT_FOUND if there is none. */
  private async underLock<T>(
    productId: number,
    deadline: number,
    work: (conn: PoolConnection, row: LockedRow) => Promise<T | Refusal>,
  ): Promise<T | Refusal> {
    const key = `${this.deps.keyPrefix}lock:product:${productId}`;
    const token = await this.deps.lock.acquire(key, this.deps.lockTtlMs ?? 5_000, deadline);
    if (token === undefined)
      return refused('DEADLINE_EXCEEDED', `could not lock product ${productId} before the deadline`);
    const conn = await this.deps.primary.getConnection();
    try {
      await conn.query('START TRANSACTION');
      const [rows] = await conn.query<RowDataPacket[]>(
        'SELECT stock, version, price_cents FROM products WHERE id = ? FOR UPDATE',
        [productId],
      );
      const found = rows[0];
      if (found === undefined) return refused('PRODUCT_NOT_FOUND', `product ${productId} does not exist`);
      const outcome = await work(conn, {
        stock: Number(found['stock']),
        version: Number(found['version']),
        priceCents: Number(found['price_cents']),
      });
      await conn.query('ROLLBACK'); // no-op after COMMIT; ends a transaction the work left open (out of stock)
      return outcome;
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

  private async setCachedStock(productId: number, stock: number, version: number): Promise<void> {
    await this.deps.cache
      .setStock(productId, stock, version)
      .catch((err: unknown) =>
        this.deps.logger.warn({ productId, err: (err as Error).message }, 'stock write-through failed'),
      );
  }
}
