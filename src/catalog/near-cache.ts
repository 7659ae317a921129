import type { CachedProduct } from '../storage/product-cache.js';

/** A product as the node's memory holds it: details, then the newest stock it knows and its version. */
export interface NearProduct extends CachedProduct {
  stock: number;
  version: number;
}

export interface NearCacheOptions {
  /** Products kept; past it the longest-unrefreshed is dropped; 0 turns the tier off. Default 50,000. */
  maxProducts?: number;
  /**
   * How long a stock stays trusted with nothing confirming it, ms. Default 1000. The stock-change feed
   * refreshes a changing product long before; this bounds staleness only when a feed message was lost.
   */
  stockTtlMs?: number;
  /**
   * Share of `stockTtlMs` after which a read of a trusted entry asks for it to be confirmed ahead of its end
   * (`onAging`). Default 0.75: a hot product's reads never wait for the confirmation.
   */
  refreshAfterShare?: number;
  /** Clock, ms (tests). */
  now?: () => number;
}

interface Entry {
  details: CachedProduct | undefined;
  stock: number;
  version: number;
  /** When the stock was last written or confirmed, ms. */
  checkedAt: number;
  /** The feed generation it was checked in: an entry of an older one missed messages. */
  generation: number;
  /** The answer body of this version (its bytes), made on the first read that needs it. */
  body: Uint8Array | undefined;
  /** When a read last told `onAging` of it, ms (0: never). */
  agingToldAt?: number;
}

export const nearCacheDefaults = {
  maxProducts: 50_000,
  stockTtlMs: 1_000, // 1 s
  refreshAfterShare: 0.75,
} as const;

/**
 * The node's in-memory tier of product reads. Stock versions only move forward: an offer not newer than
 * what is held only confirms it. Entries are trusted while the stock-change feed is live and for at most
 * `stockTtlMs` after their last confirmation; a feed outage starts a new generation, so nothing learned
 * before it is served until a newer offer or a reload confirms it.
 */
export class NearCache {
  private readonly entries = new Map<number, Entry>();
  private readonly maxProducts: number;
  private readonly stockTtlMs: number;
  private readonly refreshAfterMs: number;
  private readonly now: () => number;
  /**
   * Told of a read served from an entry past `refreshAfterShare` of its trust, at most once per the rest of
   * that trust (the catalog reloads it in the background): an entry read all the time is confirmed before it
   * stops being trusted.
   */
  onAging: ((id: number) => void) | undefined = undefined;
  private generation = 0;
  private live = false;

  constructor(options: NearCacheOptions = {}) {
    this.maxProducts = options.maxProducts ?? nearCacheDefaults.maxProducts;
    this.stockTtlMs = options.stockTtlMs ?? nearCacheDefaults.stockTtlMs;
    this.refreshAfterMs =
      this.stockTtlMs * (options.refreshAfterShare ?? nearCacheDefaults.refreshAfterShare);
    this.now = options.now ?? Date.now;
  }

  /** The feed is delivering every change (true), or may have lost some (false: nothing is served). */
  setLive(live: boolean): void {
    if (live === this.live) return;
    this.live = live;
    this.generation += 1;
  }

  /** The product if its details are held and its stock is trusted and at least `minVersion`. */
  get(id: number, minVersion = 0): NearProduct | undefined {
    const entry = this.fresh(id, minVersion);
    if (entry === undefined) return undefined;
    return { ...entry.details!, stock: entry.stock, version: entry.version };
  }

  /**
   * The JSON answer of the product as bytes (`render` makes it once per version), if trusted; undefined
   * otherwise. Most reads of a hot product then cost a map lookup, no serialization and no UTF-8 encoding.
   */
  body(id: number, minVersion: number, render: (product: NearProduct) => Uint8Array): Uint8Array | undefined {
    const entry = this.fresh(id, minVersion);
    if (entry === undefined) return undefined;
    entry.body ??= render({ ...entry.details!, stock: entry.stock, version: entry.version });
    return entry.body;
  }

  /** A committed stock (this node's commit, a peer's through the feed, or a purchase answer). */
  offerStock(id: number, stock: number, version: number): void {
    const entry = this.entries.get(id);
    if (entry === undefined) {
      this.insert(id, { details: undefined, stock, version, body: undefined, ...this.stampNow() });
      return;
    }
    if (version < entry.version) return;
    if (version > entry.version) {
      entry.stock = stock;
      entry.version = version;
      entry.body = undefined;
    }
    entry.checkedAt = this.now();
    entry.generation = this.generation;
  }

  /** A product read from Redis or the database; a newer stock already held wins over its stock. */
  remember(product: NearProduct): void {
    const { stock, version, ...details } = product;
    const entry = this.entries.get(product.id);
    if (entry !== undefined && entry.version > version) {
      entry.details = details;
      entry.body = undefined;
      return;
    }
    this.entries.delete(product.id); // re-inserted last: the longest-unrefreshed goes first
    this.insert(product.id, { details, stock, version, body: undefined, ...this.stampNow() });
  }

  /** The highest stock version held for a product, trusted or not (0 if none). */
  versionOf(id: number): number {
    return this.entries.get(id)?.version ?? 0;
  }

  stats() {
    return { products: this.entries.size, live: this.live, generation: this.generation };
  }

  private fresh(id: number, minVersion: number): Entry | undefined {
    const entry = this.entries.get(id);
    if (
      entry === undefined ||
      entry.details === undefined ||
      !this.live ||
      entry.generation !== this.generation ||
      entry.version < minVersion
    )
      return undefined;
    const now = this.now();
    const age = now - entry.checkedAt;
    if (age > this.stockTtlMs) return undefined;
    // At most once per what is left of the trust: a reload that could not confirm it (Redis or the replica
    // behind what the feed said) is not retried on every read.
    if (age > this.refreshAfterMs && now - (entry.agingToldAt ?? 0) > this.stockTtlMs - this.refreshAfterMs) {
      entry.agingToldAt = now;
      this.onAging?.(id);
    }
    return entry;
  }

  private stampNow(): { checkedAt: number; generation: number } {
    return { checkedAt: this.now(), generation: this.generation };
  }

  private insert(id: number, entry: Entry): void {
    if (this.maxProducts === 0) return;
    if (this.entries.size >= this.maxProducts) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(id, entry);
  }
}
