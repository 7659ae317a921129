import type { Logger } from '../logger.js';
import type { Pool, RowDataPacket } from '../storage/mysql.js';
import type { RedisProductCache } from '../storage/product-cache.js';
import {
  cacheRepair,
  compareStores,
  type PrimaryFacts,
  type ProjectionFacts,
  type Store,
  type VersionedStock,
} from './consistency-rules.js';

export const consistencyDefaults = {
  productsPerRound: 100,
  // A cache found drifting is read again this much later: a write-through still on its way lands first.
  recheckDelayMs: 1_000, // 1 s
  // Products whose last commit on this node is remembered (the actor's view, and who to check first).
  maxRemembered: 100_000,
  // Product ids read per page while looking for owned products to check; at most 5 pages a round.
  pageSize: 500,
  pagesPerRound: 5,
} as const;

export interface ConsistencyMonitorOptions {
  primary: Pool;
  replica: Pool;
  cache: Pick<RedisProductCache, 'getStocks' | 'repairStock' | 'dropStockIfUnchanged'>;
  /** True while this node owns the product (only its own products are checked). */
  owns: (productId: number) => boolean;
  /** False while this node owns no shard: a round then does nothing. */
  ownsAny: () => boolean;
  /** Whether the sales projection runs on this node (false: it is not compared). */
  checkProjection: boolean;
  logger: Logger;
  /** Pause between rounds, ms (CONSISTENCY_CHECK_INTERVAL_MS); 0 never starts the timer. */
  intervalMs: number;
  /** Products compared per round (CONSISTENCY_CHECK_PRODUCTS). Default 100. */
  productsPerRound?: number;
  /** Wait before a drifting cache is read again, ms. Default 1000. */
  recheckDelayMs?: number;
  /** The number of inconsistent products changed (the gauge). */
  onInconsistent?: (count: number) => void;
  /** A cache drift was healed (the counter). */
  onHealed?: () => void;
  onRound?: (outcome: 'completed' | 'failed', checked: number) => void;
}

export interface Problem {
  store: Store;
  detail: string;
}

/** Why a product is inconsistent: each store that disagrees with the primary, and what was seen. */
export interface Finding {
  problems: Problem[];
}

export interface RoundReport {
  checked: number[];
  /** Every inconsistent product this node knows of after the round (not only those of this round). */
  inconsistent: ReadonlyMap<number, Finding>;
  healed: number[];
}

const num = (v: unknown): number => Number(v ?? 0);

/**
 * Compares, for the products this node owns, the actor's last commit, the primary, the replica, the Redis
 * cache, the sales projection and the ledger (`received - confirmed - reserved = stock`), a bounded number
 * of products per round (recently committed ones first, then the rest in id order, round after round).
 * Heals a stale or wrong cache; reports the rest (`onInconsistent`, a log line per product). A round that
 * cannot read a store is logged and the next round tries again.
 */
export class ConsistencyMonitor {
  private readonly log: Logger;
  private readonly productsPerRound: number;
  private readonly recheckDelayMs: number;
  /** This node's last committed stock per product, oldest commit first. */
  private readonly committedHere = new Map<number, VersionedStock>();
  /** Products committed since they were last checked. */
  private readonly dirty = new Set<number>();
  private readonly findings = new Map<number, Finding>();
  /** Products whose projection was behind last round, with the primary's counts then. */
  private readonly projectionBehind = new Map<number, string>();
  private cursor = 0;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<RoundReport> | undefined;
  private stopped = true;
  private failing = false;

  constructor(private readonly options: ConsistencyMonitorOptions) {
    this.log = options.logger.child({ component: 'consistency-monitor' });
    this.productsPerRound = options.productsPerRound ?? consistencyDefaults.productsPerRound;
    this.recheckDelayMs = options.recheckDelayMs ?? consistencyDefaults.recheckDelayMs;
  }

  /** A stock change this node committed (the actors' and the baseline's hook): a map write, nothing more. */
  committed(productId: number, stock: number, version: number): void {
    this.committedHere.delete(productId);
    this.committedHere.set(productId, { stock, version });
    if (this.committedHere.size > consistencyDefaults.maxRemembered) {
      const oldest = this.committedHere.keys().next().value as number;
      this.committedHere.delete(oldest);
      this.dirty.delete(oldest);
    }
    this.dirty.add(productId);
  }

  start(): void {
    if (!this.stopped || this.options.intervalMs <= 0) return;
    this.stopped = false;
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
  }

  /** Inconsistent products known now. */
  inconsistent(): ReadonlyMap<number, Finding> {
    return this.findings;
  }

  /** One round now (a round already running is joined). Rejects when a store cannot be read. */
  round(): Promise<RoundReport> {
    this.running ??= this.check().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.round()
        .then(
          () => {
            if (this.failing) this.log.info('consistency check works again');
            this.failing = false;
          },
          (err: unknown) => {
            this.options.onRound?.('failed', 0);
            if (!this.failing)
              this.log.warn(
                { err: err instanceof Error ? err.message : String(err) },
                'consistency check failed; the next round tries again',
              );
            this.failing = true;
          },
        )
        .finally(() => this.schedule());
    }, this.options.intervalMs);
    this.timer.unref();
  }

  private async check(): Promise<RoundReport> {
    for (const id of this.findings.keys()) if (!this.options.owns(id)) this.forget(id);
    if (!this.options.ownsAny()) {
      this.report();
      return { checked: [], inconsistent: this.findings, healed: [] };
    }
    const ids = await this.pick();
    if (ids.length === 0) return { checked: [], inconsistent: this.findings, healed: [] };
    // Every other store is read before the primary: none of them may then be ahead of it.
    const actor = new Map(
      ids.flatMap((id) => (this.committedHere.has(id) ? [[id, this.committedHere.get(id)!]] : [])),
    );
    const [replica, cache, projection] = await Promise.all([
      stocks(this.options.replica, ids),
      this.options.cache.getStocks(ids),
      this.options.checkProjection ? projections(this.options.primary, ids) : undefined,
    ]);
    const primary = await primaryFacts(this.options.primary, ids);
    const drifting: number[] = [];
    for (const id of ids) {
      const facts = primary.get(id);
      if (facts === undefined) {
        this.forget(id); // deleted meanwhile
        continue;
      }
      const comparison = compareStores({
        primary: facts,
        actor: actor.get(id),
        replica: replica.get(id),
        cache: cache.get(id),
        projection:
          projection === undefined
            ? undefined
            : (projection.get(id) ?? { confirmedOrders: 0, cancelledOrders: 0 }),
      });
      const problems: Problem[] = [...comparison.problems];
      // Behind twice in a row with the same orders on the primary: it had a whole round to catch up.
      const counts = `${facts.confirmedOrders}/${facts.cancelledOrders}`;
      if (comparison.projectionBehind && this.projectionBehind.get(id) === counts)
        problems.push({
          store: 'projection',
          detail: `projection still behind the primary's ${counts} confirmed/cancelled orders after a round`,
        });
      if (comparison.projectionBehind) this.projectionBehind.set(id, counts);
      else this.projectionBehind.delete(id);
      if (comparison.cacheDrift) drifting.push(id);
      this.record(id, problems);
    }
    const healed = drifting.length === 0 ? [] : await this.healCaches(drifting, cache);
    this.options.onRound?.('completed', ids.length);
    this.report();
    return { checked: ids, inconsistent: this.findings, healed };
  }

  /** Products to check: committed here since last checked, those found inconsistent, then the next in id order. */
  private async pick(): Promise<number[]> {
    const picked = new Set<number>();
    const take = (id: number): void => {
      if (picked.size < this.productsPerRound && this.options.owns(id)) picked.add(id);
    };
    for (const id of this.findings.keys()) take(id);
    for (const id of this.dirty) {
      if (picked.size >= this.productsPerRound) break;
      take(id);
      this.dirty.delete(id);
    }
    for (
      let page = 0;
      page < consistencyDefaults.pagesPerRound && picked.size < this.productsPerRound;
      page += 1
    ) {
      const [rows] = await this.options.primary.query<RowDataPacket[]>(
        'SELECT id FROM products WHERE id > ? ORDER BY id LIMIT ?',
        [this.cursor, consistencyDefaults.pageSize],
      );
      for (const row of rows) {
        this.cursor = num(row['id']);
        take(this.cursor);
        if (picked.size >= this.productsPerRound) break;
      }
      if (rows.length < consistencyDefaults.pageSize) {
        this.cursor = 0; // the end of the table: the next round starts over
        break;
      }
    }
    return [...picked];
  }

  /** Reads the drifting caches again after a moment; those unchanged and still off are rewritten or dropped. */
  private async healCaches(
    ids: number[],
    seen: Map<number, VersionedStock & { raw: string }>,
  ): Promise<number[]> {
    await new Promise((resolve) => setTimeout(resolve, this.recheckDelayMs).unref());
    const cache = await this.options.cache.getStocks(ids);
    const primary = await stocks(this.options.primary, ids);
    const healed: number[] = [];
    for (const id of ids) {
      const now = cache.get(id);
      const truth = primary.get(id);
      // Changed since the first read: being written, not drifting.
      if (now === undefined || truth === undefined || now.raw !== seen.get(id)?.raw) continue;
      const repair = cacheRepair(now, truth);
      if (repair === 'none') continue;
      try {
        const done =
          repair === 'drop'
            ? await this.options.cache.dropStockIfUnchanged(id, now.raw)
            : await this.options.cache.repairStock(id, truth.stock, truth.version);
        if (!done) continue; // a newer value got there first
        healed.push(id);
        this.options.onHealed?.();
        this.log.info(
          { productId: id, cached: now.raw, primary: truth, repair },
          'healed a drifting cached stock from the primary',
        );
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        const detail = `cached ${now.raw}, primary ${truth.version}:${truth.stock}; healing it failed: ${message}`;
        this.record(id, [...(this.findings.get(id)?.problems ?? []), { store: 'cache', detail }]);
      }
    }
    return healed;
  }

  private record(id: number, problems: Problem[]): void {
    const before = this.findings.get(id);
    if (problems.length === 0) {
      if (before !== undefined)
        this.log.info({ productId: id }, 'product consistent again across its stores');
      this.findings.delete(id);
      return;
    }
    const said = (f: Finding | undefined) => JSON.stringify(f?.problems ?? []);
    if (said(before) !== said({ problems }))
      this.log.error(
        {
          productId: id,
          stores: [...new Set(problems.map((p) => p.store))],
          details: problems.map((p) => p.detail),
        },
        'inventory inconsistent across stores; not healed (only a cache is)',
      );
    this.findings.set(id, { problems });
  }

  private forget(id: number): void {
    this.findings.delete(id);
    this.projectionBehind.delete(id);
  }

  private report(): void {
    this.options.onInconsistent?.(this.findings.size);
  }
}

async function stocks(pool: Pool, ids: readonly number[]): Promise<Map<number, VersionedStock>> {
  const [rows] = await pool.query<RowDataPacket[]>(
    'SELECT id, stock, version FROM products WHERE id IN (?)',
    [ids],
  );
  return new Map(rows.map((r) => [num(r['id']), { stock: num(r['stock']), version: num(r['version']) }]));
}

async function projections(pool: Pool, ids: readonly number[]): Promise<Map<number, ProjectionFacts>> {
  const [rows] = await pool.query<RowDataPacket[]>(
    'SELECT product_id, confirmed_orders, cancelled_orders FROM product_sales WHERE product_id IN (?)',
    [ids],
  );
  return new Map(
    rows.map((r) => [
      num(r['product_id']),
      { confirmedOrders: num(r['confirmed_orders']), cancelledOrders: num(r['cancelled_orders']) },
    ]),
  );
}

/** The product rows and their orders' totals in one statement, so both come from one snapshot. */
async function primaryFacts(pool: Pool, ids: readonly number[]): Promise<Map<number, PrimaryFacts>> {
  const [rows] = await pool.query<RowDataPacket[]>(
    `SELECT p.id, p.stock, p.version, p.stock_received,
            COALESCE(SUM(o.status = 'CONFIRMED'), 0) AS confirmed_orders,
            COALESCE(SUM(IF(o.status = 'CONFIRMED', o.quantity, 0)), 0) AS confirmed_quantity,
            COALESCE(SUM(o.status = 'CANCELLED'), 0) AS cancelled_orders,
            COALESCE(SUM(IF(o.status = 'PENDING', o.quantity, 0)), 0) AS pending_quantity
       FROM products p LEFT JOIN orders o ON o.product_id = p.id
      WHERE p.id IN (?) GROUP BY p.id`,
    [ids],
  );
  return new Map(
    rows.map((r) => [
      num(r['id']),
      {
        stock: num(r['stock']),
        version: num(r['version']),
        received: num(r['stock_received']),
        confirmedOrders: num(r['confirmed_orders']),
        confirmedQuantity: num(r['confirmed_quantity']),
        cancelledOrders: num(r['cancelled_orders']),
        pendingQuantity: num(r['pending_quantity']),
      },
    ]),
  );
}
