import type { BatchResult, BatchWrite, ProductRecord, ProductStore } from '../../actors/product/types.js';
import { writeBatch, type BatchWriterOptions } from './batch-writer.js';
import type { Pool, RowDataPacket } from './mysql.js';

/**
 * The product actor's storage: one transaction per batch, opened, written and committed by `writeBatch`
 * in one round trip.
 */
export class MysqlProductStore implements ProductStore {
  constructor(
    private readonly primary: Pool,
    private readonly options: Omit<BatchWriterOptions, 'ownerEpoch' | 'strategy'>,
    private readonly ownerEpoch: (productId: number) => number = () => 0,
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
    try {
      return await writeBatch(conn, batch, {
        ...this.options,
        ownerEpoch: this.ownerEpoch(batch.productId),
        strategy: 'actor',
        begin: true,
      });
    } catch (err) {
      await conn.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      conn.release();
    }
  }
}
