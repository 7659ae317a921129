// The products selling fastest on this node, for the dashboard's "hottest products" panel: a product id is
// never a Prometheus label, so the node exports a fixed number of ranks instead (hot_product_*{rank}), each
// with the product's id, stock and sales rate as values. Fed by every committed stock change the node makes.

/** One ranked product: its id, committed stock, and units sold per second (decayed over `halfLifeMs`). */
export interface HotProduct {
  productId: number;
  stock: number;
  soldPerSecond: number;
}

export interface HotProductsOptions {
  /** Ranks exported. Default 5. */
  ranks?: number;
  /** Half-life of a sale's weight in the rate, ms. Default 30 000 (30 s). */
  halfLifeMs?: number;
  /** Products tracked at most; beyond it, the slowest are dropped. Default 10 000. */
  maxTracked?: number;
  now?: () => number;
}

interface Tracked {
  stock: number;
  /** Units sold, each weighted by exp(-age·ln2/halfLife), as of `at`. */
  score: number;
  at: number;
}

/** Below this decayed score (units), a product no longer counts as selling: it is forgotten. */
const FORGET_BELOW = 0.01;

export class HotProducts {
  private readonly tracked = new Map<number, Tracked>();
  private readonly ranks: number;
  private readonly decayPerMs: number;
  private readonly maxTracked: number;
  private readonly now: () => number;

  constructor(options: HotProductsOptions = {}) {
    this.ranks = options.ranks ?? 5;
    this.decayPerMs = Math.LN2 / (options.halfLifeMs ?? 30_000);
    this.maxTracked = options.maxTracked ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  /** A committed stock change: a drop counts as units sold (reservations), a rise (restock, release) does not. */
  committed(productId: number, stock: number): void {
    const now = this.now();
    const entry = this.tracked.get(productId);
    if (entry === undefined) {
      // A product's first change tells its stock, not how much sold: it starts at one unit.
      if (this.tracked.size >= this.maxTracked) this.forget(now, this.maxTracked / 2);
      this.tracked.set(productId, { stock, score: 1, at: now });
      return;
    }
    const sold = Math.max(0, entry.stock - stock);
    entry.score = this.decayed(entry, now) + sold;
    entry.at = now;
    entry.stock = stock;
  }

  /** The fastest-selling products, fastest first, among those `keep` accepts (the ones this node owns). */
  top(keep: (productId: number) => boolean = () => true): HotProduct[] {
    const now = this.now();
    this.forget(now, this.maxTracked);
    const scored: { productId: number; stock: number; score: number }[] = [];
    for (const [productId, entry] of this.tracked)
      if (keep(productId)) scored.push({ productId, stock: entry.stock, score: this.decayed(entry, now) });
    scored.sort((a, b) => b.score - a.score || a.productId - b.productId);
    // Units per second of an exponentially decayed count: score × ln2 / half-life.
    return scored.slice(0, this.ranks).map(({ productId, stock, score }) => ({
      productId,
      stock,
      soldPerSecond: score * this.decayPerMs * 1000,
    }));
  }

  /** Products tracked now (bounded by maxTracked). */
  get size(): number {
    return this.tracked.size;
  }

  private decayed(entry: Tracked, now: number): number {
    return entry.score * Math.exp(-(now - entry.at) * this.decayPerMs);
  }

  /** Drops products no longer selling, then the slowest until at most `limit` remain. */
  private forget(now: number, limit: number): void {
    for (const [productId, entry] of this.tracked)
      if (this.decayed(entry, now) < FORGET_BELOW) this.tracked.delete(productId);
    if (this.tracked.size <= limit) return;
    const slowest = [...this.tracked].sort((a, b) => this.decayed(a[1], now) - this.decayed(b[1], now));
    for (const [productId] of slowest.slice(0, this.tracked.size - limit)) this.tracked.delete(productId);
  }
}
