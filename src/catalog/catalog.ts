import type { Logger } from '../logger.js';
import type { Pool, ResultSetHeader, RowDataPacket } from '../storage/mysql.js';
import type { CachedProduct, PurchaseStrategy, RedisProductCache } from '../storage/product-cache.js';
import { productRecordFromRow } from '../storage/product-store.js';
import { FailureBackoff } from '../timeouts.js';
import { NearCache } from './near-cache.js';
import { InvariantError } from '../errors.js';

export type { PurchaseStrategy };

/** A product as the API shows it. */
export interface Product extends CachedProduct {
  stock: number;
  version: number;
}

export interface NewProduct {
  name: string;
  priceCents: number;
  stock: number;
  strategy: PurchaseStrategy;
}

export interface CatalogDeps {
  primary: Pool;
  replica: Pool;
  cache: RedisProductCache;
  logger: Logger;
  /** The node's memory tier; default: one with its defaults, not live until a feed says so. */
  memory?: NearCache;
}

/** Where a read was answered, fastest first; a read of several products reports the slowest it used. */
export type ReadTier = 'memory' | 'redis' | 'replica' | 'primary';

export interface ProductRead {
  /** In the order asked; undefined where no such product exists. */
  products: (Product | undefined)[];
  /** True when no database was asked (memory or Redis answered all). */
  hit: boolean;
  tier: ReadTier;
}

/**
 * After a Redis read or fill fails, reads skip Redis this long, ms (one read then tries it again): a node
 * cut off Redis answers from the replica at once instead of after a command timeout per read.
 */
const REDIS_BACKOFF_MS = 1_000;

const PRODUCT_COLUMNS = 'id, name, price_cents, stock, version, purchase_strategy, created_at';

const NOTHING_CACHED: ReadonlyMap<
  number,
  { details?: CachedProduct; stock?: { stock: number; version: number } }
> = new Map();

function toProduct(row: RowDataPacket): Product {
  return {
    ...productRecordFromRow(row),
    strategy: row['purchase_strategy'] === 'baseline' ? 'baseline' : 'actor',
    createdAt: (row['created_at'] as Date).toISOString(),
  };
}

/**
 * Product reads in three tiers: the node's memory, Redis, then the replica (the primary for a product
 * not replicated yet, or older than the version a reader asks for). Concurrent misses for one id share
 * one query. Reads never wait on a product actor. Creation writes the primary and fills Redis.
 */
export class Catalog {
  readonly memory: NearCache;
  private readonly loading = new Map<number, Promise<Product | undefined>>();
  /** A product's strategy never changes, so each node remembers it after the first lookup. */
  private readonly strategies = new Map<number, PurchaseStrategy>();
  private readonly redis = new FailureBackoff(REDIS_BACKOFF_MS);
  /** Products reloaded in the background ahead of the end of their memory entry's trust. */
  private readonly refreshing = new Set<number>();

  constructor(private readonly deps: CatalogDeps) {
    this.memory = deps.memory ?? new NearCache();
    this.memory.onAging = (id) => this.refreshAhead(id);
  }

  /**
   * Products in the order asked. `minVersion` (read-your-purchase): no tier answers with an older stock
   * version than this; the primary has the last word.
   */
  getProducts(ids: readonly number[], minVersion = 0): Promise<ProductRead> {
    return this.read(ids, minVersion, true);
  }

  /**
   * A product read all the time is reloaded (Redis, else the replica) while its memory entry is still
   * trusted, one reload at a time: its reads keep being answered from memory instead of all waiting for
   * the reload its entry's end would need (and counting as misses, every time Redis's stock key, 5 s
   * without a change, has expired). The entry's trust is renewed only by what the reload finds, as on a miss.
   */
  private refreshAhead(id: number): void {
    if (this.refreshing.has(id)) return;
    this.refreshing.add(id);
    void this.read([id], 0, false)
      .catch((err: unknown) => this.deps.logger.debug({ err, productId: id }, 'product refresh failed'))
      .finally(() => this.refreshing.delete(id));
  }

  private async read(ids: readonly number[], minVersion: number, fromMemory: boolean): Promise<ProductRead> {
    const products: (Product | undefined)[] = new Array<Product | undefined>(ids.length);
    let tier: ReadTier = 'memory';
    const notInMemory: number[] = [];
    ids.forEach((id, i) => {
      const held = fromMemory ? this.memory.get(id, minVersion) : undefined;
      if (held === undefined) notInMemory.push(i);
      else products[i] = held;
    });
    if (notInMemory.length === 0) return { products, hit: true, tier };
    tier = 'redis';
    const cached =
      (await this.redis.attempt(
        () => this.deps.cache.getMany(notInMemory.map((i) => ids[i]!)),
        this.redisFailed('product cache unavailable; reading the replica'),
      )) ?? NOTHING_CACHED;
    const missed: number[] = [];
    for (const i of notInMemory) {
      const id = ids[i]!;
      const entry = cached.get(id);
      if (entry?.details && entry.stock && entry.stock.version >= minVersion) {
        const product = { ...entry.details, stock: entry.stock.stock, version: entry.stock.version };
        this.memory.remember(product);
        products[i] = product;
        this.strategies.set(id, entry.details.strategy);
      } else {
        missed.push(i);
      }
    }
    if (missed.length > 0) {
      tier = 'replica';
      const loaded = await this.loadShared(missed.map((i) => ids[i]!));
      const behind: number[] = [];
      missed.forEach((i, k) => {
        const product = loaded[k];
        if (product !== undefined && product.version < minVersion) behind.push(i);
        else products[i] = product;
      });
      if (behind.length > 0) {
        // The replica lags the version asked for: the primary has it (or the reader asked too far).
        tier = 'primary';
        const fromPrimary = await this.readPrimary(behind.map((i) => ids[i]!));
        behind.forEach((i, k) => {
          products[i] = fromPrimary[k];
          if (fromPrimary[k] !== undefined) this.memory.remember(fromPrimary[k]);
        });
      }
    }
    return { products, hit: missed.length === 0, tier };
  }

  /** A committed stock this node learned (its own commit, a peer's through the feed, a purchase answer). */
  offerStock(productId: number, stock: number, version: number): void {
    this.memory.offerStock(productId, stock, version);
  }

  async strategyOf(id: number): Promise<PurchaseStrategy | undefined> {
    const known = this.strategies.get(id);
    if (known !== undefined) return known;
    const { products } = await this.getProducts([id]);
    return products[0]?.strategy;
  }

  async create(input: NewProduct): Promise<Product> {
    const [result] = await this.deps.primary.query<ResultSetHeader>(
      'INSERT INTO products (name, price_cents, stock, purchase_strategy) VALUES (?, ?, ?, ?)',
      [input.name, input.priceCents, input.stock, input.strategy],
    );
    const product = await this.readPrimary([result.insertId]);
    const created = product[0];
    if (created === undefined) throw new InvariantError(`product ${result.insertId} vanished after insert`);
    this.strategies.set(created.id, created.strategy);
    await this.fill(created);
    return created;
  }

  /** One replica query for the ids nobody is loading yet; callers of an id already in flight share its promise. */
  private async loadShared(ids: readonly number[]): Promise<(Product | undefined)[]> {
    const fresh = [...new Set(ids.filter((id) => !this.loading.has(id)))];
    if (fresh.length > 0) {
      const query = this.readReplica(fresh);
      fresh.forEach((id, k) => {
        const one = query.then((rows) => rows[k]);
        this.loading.set(id, one);
        void one.finally(() => this.loading.delete(id)).catch(() => undefined);
      });
    }
    return Promise.all(ids.map((id) => this.loading.get(id)!));
  }

  private async readReplica(ids: readonly number[]): Promise<(Product | undefined)[]> {
    const rows = await this.select(this.deps.replica, ids);
    const missing = ids.filter((_, k) => rows[k] === undefined);
    if (missing.length > 0) {
      // Not on the replica yet may mean created a moment ago: the primary has the last word.
      const fromPrimary = await this.select(this.deps.primary, missing);
      missing.forEach((id, k) => {
        rows[ids.indexOf(id)] = fromPrimary[k];
      });
    }
    const found = rows.filter((p): p is Product => p !== undefined);
    await Promise.all(found.map((p) => this.fill(p)));
    for (const p of found) {
      this.strategies.set(p.id, p.strategy);
      this.memory.remember(p);
    }
    return rows;
  }

  private readPrimary(ids: readonly number[]): Promise<(Product | undefined)[]> {
    return this.select(this.deps.primary, ids);
  }

  private async select(pool: Pool, ids: readonly number[]): Promise<(Product | undefined)[]> {
    const [rows] = await pool.query<RowDataPacket[]>(
      `SELECT ${PRODUCT_COLUMNS} FROM products WHERE id IN (?)`,
      [ids],
    );
    const byId = new Map(rows.map((r) => [Number(r['id']), toProduct(r)]));
    return ids.map((id) => byId.get(id));
  }

  /** Logs the first Redis failure since it last answered. */
  private redisFailed(message: string): (err: unknown) => void {
    return (err) => this.deps.logger.warn({ err: (err as Error).message }, message);
  }

  /** Puts a product read from the database into Redis; skipped while Redis fails (reads skip it too). */
  private async fill(product: Product): Promise<void> {
    if (this.redis.failing) return;
    const { stock, version, ...details } = product;
    await this.redis.attempt(
      () =>
        Promise.all([
          this.deps.cache.setDetails(details),
          this.deps.cache.setStock(product.id, stock, version),
        ]),
      this.redisFailed('cache fill failed; reads skip Redis for now'),
    );
  }
}
