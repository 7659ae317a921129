/** A stock and the version it was committed at. */
export interface VersionedStock {
  stock: number;
  version: number;
}

/** The primary's row of a product and its orders, read in one statement (one consistent snapshot). */
export interface PrimaryFacts extends VersionedStock {
  /** Units ever put on sale: the initial stock plus every restock (`products.stock_received`). */
  received: number;
  confirmedOrders: number;
  confirmedQuantity: number;
  cancelledOrders: number;
  /** Units of orders still PENDING: reserved, their saga open. */
  pendingQuantity: number;
}

/** The sales projection's counts of a product (`product_sales`); a missing row counts zero. */
export interface ProjectionFacts {
  confirmedOrders: number;
  cancelledOrders: number;
}

/** What one product looks like in every store, each read before the primary (so none may be ahead of it). */
export interface ProductSnapshot {
  primary: PrimaryFacts;
  /** The last stock this node's actor (or baseline) committed, if this node committed one. */
  actor: VersionedStock | undefined;
  /** The replica's row; undefined while the row has not replicated yet. */
  replica: VersionedStock | undefined;
  /** The cached stock in Redis; undefined when not cached (expired). */
  cache: VersionedStock | undefined;
  /** Undefined when the projection is not checked (this node runs none). */
  projection: ProjectionFacts | undefined;
}

export type Store = 'actor' | 'replica' | 'cache' | 'projection' | 'ledger';

export interface Comparison {
  /** Disagreements no lag explains, by store, each with what was seen. */
  problems: { store: Store; detail: string }[];
  /** The cache differs from the primary: stale (older version) or wrong; healed once it stays so. */
  cacheDrift: boolean;
  /** The projection counts fewer orders than the primary: lag, unless it stays so with nothing changing. */
  projectionBehind: boolean;
}

const show = (s: VersionedStock): string => `stock ${s.stock} at version ${s.version}`;

/**
 * Compares one product's stores with its primary row. A store holding an older version is lagging, not
 * inconsistent (the replica, a cache filled from it, an actor view from before an ownership move); the
 * same version with another stock, or a version the primary does not have yet, is inconsistent.
 */
export function compareStores(s: ProductSnapshot): Comparison {
  const { primary } = s;
  const problems: Comparison['problems'] = [];
  const disagrees = (other: VersionedStock): boolean =>
    other.version > primary.version || (other.version === primary.version && other.stock !== primary.stock);
  if (s.actor !== undefined && disagrees(s.actor))
    problems.push({
      store: 'actor',
      detail: `actor committed ${show(s.actor)}, primary has ${show(primary)}`,
    });
  if (s.replica !== undefined && disagrees(s.replica))
    problems.push({ store: 'replica', detail: `replica has ${show(s.replica)}, primary ${show(primary)}` });
  // Stale (an older version: a write-through may still be on its way, so rechecked before healing) or wrong.
  const cacheDrift = s.cache !== undefined && cacheRepair(s.cache, primary) !== 'none';
  const expected = primary.received - primary.confirmedQuantity - primary.pendingQuantity;
  if (expected !== primary.stock)
    problems.push({
      store: 'ledger',
      detail:
        `received ${primary.received} - confirmed ${primary.confirmedQuantity} - reserved ` +
        `${primary.pendingQuantity} = ${expected}, but the primary's stock is ${primary.stock}`,
    });
  let projectionBehind = false;
  if (s.projection !== undefined) {
    const p = s.projection;
    if (p.confirmedOrders > primary.confirmedOrders || p.cancelledOrders > primary.cancelledOrders)
      problems.push({
        store: 'projection',
        detail:
          `projection counts ${p.confirmedOrders} confirmed / ${p.cancelledOrders} cancelled orders, ` +
          `the primary ${primary.confirmedOrders} / ${primary.cancelledOrders}`,
      });
    else
      projectionBehind =
        p.confirmedOrders < primary.confirmedOrders || p.cancelledOrders < primary.cancelledOrders;
  }
  return { problems, cacheDrift, projectionBehind };
}

/** How the cache should be healed, from a second read (Redis, then the primary) after the first found it drifting. */
export function cacheRepair(
  cached: VersionedStock | undefined,
  primary: VersionedStock,
): 'none' | 'rewrite' | 'drop' {
  if (cached === undefined) return 'none';
  if (cached.version === primary.version && cached.stock === primary.stock) return 'none';
  // A version the primary never had refuses every write-through until it expires: it goes.
  if (Number.isNaN(cached.version) || Number.isNaN(cached.stock) || cached.version > primary.version)
    return 'drop';
  return 'rewrite';
}
