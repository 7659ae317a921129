import { readFileSync } from 'node:fs';
import { decode, encode } from '@msgpack/msgpack';
import type { StockCache, StockPublication } from '../domain/index.js';
import { storageAsset } from './assets.js';
import type { Redis } from './redis.js';

/** Product details as cached (everything but the stock, which has its own short-lived key). */
export interface CachedProduct {
  id: number;
  name: string;
  priceCents: number;
  strategy: PurchaseStrategy;
  createdAt: string;
}

export type PurchaseStrategy = 'actor' | 'baseline';

export interface CachedStock {
  stock: number;
  version: number;
}

export interface ProductCacheOptions {
  /** Key prefix, e.g. `fs:`. */
  prefix: string;
  /** Lifetime of cached product details, seconds. Default 300. */
  detailsTtlSeconds?: number;
  /** Lifetime of a cached stock: a safety net, since every committed stock change writes it through, ms. Default 5000. */
  stockTtlMs?: number;
}

const lua = (name: string): string => readFileSync(storageAsset(`lua/${name}.lua`), 'utf8');

interface StockScripts {
  setStockIfNewer(
    key: string,
    version: number,
    stock: number,
    ttlMs: number,
    ...publish: [] | [channel: string, message: string]
  ): Promise<number>;
  decrementStock(key: string, quantity: number, version: number, ttlMs: number): Promise<number>;
  deleteStockIfUnchanged(key: string, value: string): Promise<number>;
}

/**
 * Redis cache of the catalog: details as msgpack (TTL 300 s), stock as `version:stock` (TTL 5 s) set
 * only by newer versions, so a late cache fill from a lagging replica cannot overwrite a fresher stock.
 */
interface StockWrite {
  key: string;
  stock: number;
  version: number;
  publish: [] | [channel: string, message: string];
  done: (err?: Error) => void;
}

export class RedisProductCache implements StockCache {
  private readonly scripts: StockScripts;
  /** Write-throughs asked for in this turn of the event loop, sent together. */
  private stockWrites: StockWrite[] = [];
  private readonly detailsTtlSeconds: number;
  private readonly stockTtlMs: number;

  constructor(
    private readonly redis: Redis,
    private readonly options: ProductCacheOptions,
  ) {
    this.detailsTtlSeconds = options.detailsTtlSeconds ?? 300;
    this.stockTtlMs = options.stockTtlMs ?? 5_000;
    if (!('setStockIfNewer' in redis)) {
      redis.defineCommand('setStockIfNewer', { numberOfKeys: 1, lua: lua('set-stock-if-newer') });
      redis.defineCommand('decrementStock', { numberOfKeys: 1, lua: lua('decrement-stock') });
    }
    if (!('deleteStockIfUnchanged' in redis)) {
      redis.defineCommand('deleteStockIfUnchanged', {
        numberOfKeys: 1,
        lua: lua('delete-stock-if-unchanged'),
      });
    }
    this.scripts = redis as unknown as StockScripts;
  }

  detailsKey(id: number): string {
    return `${this.options.prefix}product:${id}`;
  }

  stockKey(id: number): string {
    return `${this.options.prefix}stock:${id}`;
  }

  /**
   * Writes a committed stock through (only if newer than the cached one). The write-throughs asked for
   * in one turn of the event loop (a commit cycle's products) go to Redis as one pipeline. With `publish`,
   * the script also publishes the message when it writes (one round trip for both).
   */
  setStock(productId: number, stock: number, version: number, publish?: StockPublication): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.stockWrites.length === 0) process.nextTick(() => this.writeStocks());
      this.stockWrites.push({
        key: this.stockKey(productId),
        stock,
        version,
        publish: publish === undefined ? [] : [publish.channel, publish.message],
        done: (err) => (err ? reject(err) : resolve()),
      });
    });
  }

  private writeStocks(): void {
    const writes = this.stockWrites;
    this.stockWrites = [];
    const ttl = this.stockTtlMs;
    if (writes.length === 1) {
      const [w] = writes as [StockWrite];
      this.scripts.setStockIfNewer(w.key, w.version, w.stock, ttl, ...w.publish).then(
        () => w.done(),
        (err: Error) => w.done(err),
      );
      return;
    }
    const pipeline = this.redis.pipeline();
    const scripts = pipeline as unknown as StockScripts;
    for (const w of writes) void scripts.setStockIfNewer(w.key, w.version, w.stock, ttl, ...w.publish);
    pipeline.exec().then(
      (results) => writes.forEach((w, i) => w.done(results?.[i]?.[0] ?? undefined)),
      (err: Error) => writes.forEach((w) => w.done(err)),
    );
  }

  /** Layer 4 of the baseline: atomic check-and-decrement; -1 short, -2 nothing cached. */
  decrementStock(productId: number, quantity: number, newVersion: number): Promise<number> {
    return this.scripts.decrementStock(this.stockKey(productId), quantity, newVersion, this.stockTtlMs);
  }

  async setDetails(product: CachedProduct): Promise<void> {
    await this.redis.set(
      this.detailsKey(product.id),
      Buffer.from(encode(product)),
      'EX',
      this.detailsTtlSeconds,
    );
  }

  /** Details and stock of each id in one round trip; absent entries are cache misses. */
  async getMany(
    ids: readonly number[],
  ): Promise<Map<number, { details?: CachedProduct; stock?: CachedStock }>> {
    const keys = ids.flatMap((id) => [this.detailsKey(id), this.stockKey(id)]);
    const values = await this.redis.mgetBuffer(...keys);
    const out = new Map<number, { details?: CachedProduct; stock?: CachedStock }>();
    ids.forEach((id, i) => {
      const entry: { details?: CachedProduct; stock?: CachedStock } = {};
      const details = values[2 * i];
      const stock = values[2 * i + 1];
      if (details) entry.details = decode(details) as CachedProduct;
      if (stock) entry.stock = parseStock(stock.toString());
      out.set(id, entry);
    });
    return out;
  }

  /** The cached stocks of `ids` in one round trip, each with its raw value (absent: not cached). */
  async getStocks(ids: readonly number[]): Promise<Map<number, CachedStock & { raw: string }>> {
    const out = new Map<number, CachedStock & { raw: string }>();
    if (ids.length === 0) return out;
    const values = await this.redis.mget(...ids.map((id) => this.stockKey(id)));
    ids.forEach((id, i) => {
      const raw = values[i];
      if (raw !== null && raw !== undefined) out.set(id, { ...parseStock(raw), raw });
    });
    return out;
  }

  /**
   * Rewrites a cached stock from the primary's committed row, with the write-through's own version guard
   * (a newer cached version wins); nothing is published. True when written.
   */
  async repairStock(productId: number, stock: number, version: number): Promise<boolean> {
    return (
      (await this.scripts.setStockIfNewer(this.stockKey(productId), version, stock, this.stockTtlMs)) === 1
    );
  }

  /** Deletes the cached stock if it still holds `raw` (as `getStocks` read it); true when deleted. */
  async dropStockIfUnchanged(productId: number, raw: string): Promise<boolean> {
    return (await this.scripts.deleteStockIfUnchanged(this.stockKey(productId), raw)) === 1;
  }

  async getStock(productId: number): Promise<CachedStock | undefined> {
    const value = await this.redis.get(this.stockKey(productId));
    return value === null ? undefined : parseStock(value);
  }
}

function parseStock(value: string): CachedStock {
  const [version, stock] = value.split(':');
  return { version: Number(version), stock: Number(stock) };
}
