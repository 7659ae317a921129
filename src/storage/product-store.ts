import type { BatchResult, BatchWrite, ProductRecord, ProductStore, Settlement } from '../domain/index.js';
import type { CommitPipeline } from './commit-pipeline.js';
import type { Pool, RowDataPacket } from './mysql.js';

/**
 * The product actors' storage: rows loaded from the primary, batches written by the node's commit
 * pipeline (one transaction per cycle for every product ready, opened and committed in one round trip).
 */
export class MysqlProductStore implements ProductStore {
  constructor(
    private readonly primary: Pool,
    private readonly pipeline: CommitPipeline,
  ) {}

  async load(productId: number): Promise<ProductRecord | undefined> {
    const [rows] = await this.primary.query<RowDataPacket[]>(
      'SELECT id, name, price_cents, stock, version FROM products WHERE id = ?',
      [productId],
    );
    const row = rows[0];
    return row === undefined ? undefined : productRecordFromRow(row);
  }

  commitBatch(batch: BatchWrite): Promise<BatchResult> {
    return this.pipeline.commit(batch);
  }

  commitConfirmation(settlement: Settlement): Promise<BatchResult> {
    return this.pipeline.confirm([settlement], settlement.productId);
  }
}

/** A product row's record (id, name, price_cents, stock, version columns). */
export function productRecordFromRow(row: RowDataPacket): ProductRecord {
  return {
    id: Number(row['id']),
    name: String(row['name']),
    priceCents: Number(row['price_cents']),
    stock: Number(row['stock']),
    version: Number(row['version']),
  };
}
