import type { BatchWrite, ProductId, StockCache, StockPublication } from '../../src/domain/index.js';
import type { Logger } from '../../src/logger.js';
import { FailureBackoff, withTimeout } from '../../src/timeouts.js';

/** After a failed stock write-through, batches skip it this long (then one tries it again), ms. */
const WRITE_THROUGH_BACKOFF_MS = 250;

/** Longest wait for the stock write-through before a committed batch is acknowledged anyway, ms. */
const CACHE_WRITE_TIMEOUT_MS = 500;

export interface StockWriteThroughOptions {
  cache: StockCache;
  logger: Logger;
  /** Longest wait for the write before the batch is acknowledged anyway, ms. Default 500. */
  cacheWriteTimeoutMs?: number;
  /** The message for the other nodes, published by the write in the same round trip. */
  stockPublication?: (productId: ProductId, stock: number, version: number) => StockPublication;
  /**
   * Called after the write-through of a committed batch that changed the stock (subscribers' feed), before
   * its replies, with whether the write also published `stockPublication`'s message (false: it failed).
   * Must not throw.
   */
  onStockChanged?: (productId: ProductId, stock: number, version: number, published: boolean) => void;
}

/**
 * A committed batch's stock, written to the cache before any of its replies: a client never reads a stock
 * older than its own purchase. While the cache fails (Redis unreachable or failing over), batches skip the
 * write (one tries it every 250 ms) instead of each waiting out its timeout: the cached stock expires
 * within its TTL either way.
 */
export class StockWriteThrough {
  private readonly backoff = new FailureBackoff(WRITE_THROUGH_BACKOFF_MS);

  constructor(private readonly options: StockWriteThroughOptions) {}

  async write(batch: Pick<BatchWrite, 'productId' | 'newStock'>, version: number): Promise<void> {
    const { cache, logger, cacheWriteTimeoutMs = CACHE_WRITE_TIMEOUT_MS } = this.options;
    const { productId, newStock } = batch;
    const publication = this.options.stockPublication?.(productId, newStock, version);
    const written = await this.backoff.attempt(
      () =>
        withTimeout(
          cache.setStock(productId, newStock, version, publication),
          cacheWriteTimeoutMs,
          'stock write-through',
        ).then(() => true),
      (err) =>
        logger.warn(
          { productId, err: errorText(err) },
          'stock write-through failed; skipped for now, the cached stock expires within its TTL',
        ),
    );
    const published = written === true && publication !== undefined;
    this.options.onStockChanged?.(productId, newStock, version, published);
  }
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
