import type { BatchResult, BatchWrite, OrderStatus } from '../domain/index.js';
import {
  batchStatements,
  cycleStatements,
  cycleText,
  touches,
  type BatchWriterOptions,
  type CycleBatch,
} from './batch-statements.js';
import type { PoolConnection, RowDataPacket } from './mysql.js';
import { findOrdersByIdempotency } from './order-queries.js';
import { InvariantError, WriteRolledBack } from '../errors.js';

export { batchStatements, type BatchWriterOptions, type CycleBatch };

/** MySQL error number for a duplicate unique key. */
export const ER_DUP_ENTRY = 1062;

/**
 * MySQL error number for "Subquery returns more than 1 row": what a guard raises (see `GUARD`; on MariaDB
 * `COMPOUND_GUARD` signals the same number).
 */
export const ER_GUARD = 1242;

/**
 * InnoDB chose this transaction as a deadlock's victim (1213, rolled back whole) or it waited past
 * `innodb_lock_wait_timeout` (1205, its statement rolled back): nothing of the round trip committed, and
 * the same statements are sent again. Cycles lock products in id order, but another node's cycles and the
 * index ranges of orders and sagas (gap and insert-intention locks) can still cross them.
 */
export const TRANSIENT_LOCK_ERRORS: ReadonlySet<number> = new Set([1213, 1205]);

/** Round trips of one group sent again after a transient lock error before it fails. */
export const lockRetryLimit = 3;

/** Whether a transaction that failed with `err` on try `attempt` (from 0) is sent again. */
export const retriesLockError = (err: unknown, attempt: number): boolean =>
  TRANSIENT_LOCK_ERRORS.has((err as { errno?: number }).errno ?? 0) && attempt < lockRetryLimit;

/**
 * The pause before sending again after a transient lock error: a few ms, so two victims of one another do
 * not meet again at once.
 */
export const lockRetryPause = (attempt: number): Promise<void> =>
  new Promise((r) => setTimeout(r, 1 + Math.random() * 4 * (attempt + 1)));

export interface WriteBatchOptions extends BatchWriterOptions {
  /**
   * True (the product actors' commit pipeline): the transaction is opened in the same round trip. False
   * (the baseline): the caller opened it and holds the row lock already.
   */
  begin: boolean;
}

/** What became of one batch of a cycle: a `BatchResult`, or the error that failed its round trip. */
export type CycleResult = BatchResult | { kind: 'failed'; error: unknown };

export type CycleWriterOptions = Omit<WriteBatchOptions, 'ownerEpoch'> & {
  /** Told of each round trip sent again after a deadlock or lock-wait timeout (TRANSIENT_LOCK_ERRORS). */
  onLockRetry?: (errno: number) => void;
};

/**
 * One product's batch as ONE multi-statement round trip that ends in its COMMIT (the baseline's write,
 * and the tests'): `writeCycle` of that batch alone. Throws what failed the round trip.
 */
export async function writeBatch(
  conn: PoolConnection,
  batch: BatchWrite,
  options: WriteBatchOptions,
): Promise<BatchResult> {
  const [result] = await writeCycle(conn, [{ batch, ownerEpoch: options.ownerEpoch }], options);
  if (result === undefined || result.kind === 'failed') throw result?.error;
  return result;
}

/**
 * Everything one commit cycle does, for the batches of many products, as ONE multi-statement round
 * trip that ends in its COMMIT: every product's version-checked stock update (one statement, rows locked
 * in product-id order, so lanes and nodes never deadlock), one multi-row insert per table for the new
 * orders, their sagas and steps, the sagas' settlements, and the events packed one outbox row per topic.
 * A guard after each checked statement aborts the round trip before the COMMIT when a check fails.
 *
 * A refused round trip is rolled back and split: the products that moved on (`version_conflict`), the
 * batches with keys bought before (`duplicates`) and the settlements of sagas that moved
 * (`settled_elsewhere`) are taken out with their results, and the rest is sent again at once. No batch
 * gets `committed` unless the round trip that holds it committed. Results come back in `items` order.
 *
 * Nothing waits on this process between statements, so a process paused (SIGSTOP, a long GC, a frozen
 * VM) never sits on the products' row locks with a transaction open: the next owner's write is not
 * blocked by a zombie. Only when the round trip fails does a ROLLBACK follow in a second one.
 */
export async function writeCycle(
  conn: PoolConnection,
  items: readonly CycleBatch[],
  options: CycleWriterOptions,
): Promise<CycleResult[]> {
  if (!options.begin && items.length > 1)
    throw new InvariantError('a cycle of several batches opens its own transaction (begin: true)');
  const results: (CycleResult | undefined)[] = items.map(() => undefined);
  // Batches still to write, in groups of one round trip each: all together, or one by one once a
  // duplicate key could not be traced to an existing order (the culprit then fails alone).
  let groups: number[][] = [items.map((_, i) => i)];
  while (groups.length > 0) {
    const group = groups.shift()!;
    try {
      const refused = await roundTrip(
        conn,
        group.map((i) => items[i]!),
        options,
      );
      if (refused === undefined) {
        const committedAt = new Date().toISOString();
        for (const i of group) {
          const { batch } = items[i]!;
          const version = touches(items[i]!, options) ? batch.expectedVersion + 1 : batch.expectedVersion;
          results[i] = { kind: 'committed', version, committedAt };
        }
        continue;
      }
      const rest: number[] = [];
      group.forEach((i, at) => {
        const result = refused.results[at];
        if (result === undefined) rest.push(i);
        else results[i] = result;
      });
      if (rest.length === group.length) {
        // Nothing could be traced: only a lone batch fails (rolled back: nothing of it applied); several
        // are tried one by one.
        if (group.length === 1)
          results[group[0]!] = { kind: 'failed', error: new WriteRolledBack(refused.error) };
        else groups.unshift(...group.map((i) => [i]));
      } else if (rest.length > 0) groups.unshift(rest);
    } catch (err) {
      for (const i of [...group, ...groups.flat()]) results[i] = { kind: 'failed', error: err };
      groups = [];
    }
  }
  return results.map(
    (r) => r ?? { kind: 'failed', error: new InvariantError('a cycle batch was left unwritten') },
  );
}

/**
 * Sends the batches' statements in one round trip ending in COMMIT. Undefined: committed. Otherwise it was
 * refused (a guard or a duplicate key) and rolled back: what is known of each batch (undefined: nothing
 * against it, send again), and the error for batches that stay untraced.
 */
async function roundTrip(
  conn: PoolConnection,
  items: readonly CycleBatch[],
  options: CycleWriterOptions,
): Promise<{ results: (BatchResult | undefined)[]; error: unknown } | undefined> {
  const now = new Date();
  const statements = cycleStatements(items, options, now);
  // READ COMMITTED: the cycle reads nothing it relies on (version guards and unique keys decide), and
  // without REPEATABLE READ's gap locks a product's new orders and its confirmed ones, written by two
  // lanes at once, do not lock each other's (product_id, status) index ranges (binlog_format is ROW).
  const begin = options.begin ? ['SET TRANSACTION ISOLATION LEVEL READ COMMITTED', 'START TRANSACTION'] : [];
  const { text, params } = cycleText(begin, statements, isMariaDb(conn));
  for (let attempt = 0; ; attempt += 1) {
    try {
      await conn.query(text, params);
      return undefined;
    } catch (err) {
      // Only a transaction of its own is sent again (begin: false is the caller's, and the caller's to end).
      if (!options.begin || !retriesLockError(err, attempt)) return refusal(conn, items, options, err);
      await conn.query('ROLLBACK');
      options.onLockRetry?.((err as { errno: number }).errno);
      await lockRetryPause(attempt);
    }
  }
}

/**
 * Whether the connection is to MariaDB, which runs a cycle as one compound statement (`cycleText`); mysql2
 * learns it from the server's handshake (its version string).
 */
function isMariaDb(conn: PoolConnection): boolean {
  return (conn as unknown as { connection?: { _isMariaDB?: boolean } }).connection?._isMariaDB === true;
}

/** After a failed round trip: a guard or duplicate key becomes per-batch results; anything else throws. */
async function refusal(
  conn: PoolConnection,
  items: readonly CycleBatch[],
  options: CycleWriterOptions,
  err: unknown,
): Promise<{ results: (BatchResult | undefined)[]; error: unknown }> {
  const errno = (err as { errno?: number }).errno;
  if (errno !== ER_DUP_ENTRY && errno !== ER_GUARD) throw err;
  await conn.query('ROLLBACK');
  const batches = items.map((i) => i.batch);
  const results =
    errno === ER_DUP_ENTRY ? await duplicates(conn, batches) : await refusals(conn, items, options);
  return { results, error: err };
}

/** Which batches hold orders bought before (keys forgotten by a previous activation, or another node). */
async function duplicates(
  conn: PoolConnection,
  batches: readonly BatchWrite[],
): Promise<(BatchResult | undefined)[]> {
  const existing = await findOrdersByIdempotency(
    conn,
    batches.flatMap((b) => b.orders),
  );
  const byKey = new Map(existing.map((o) => [`${o.userId}\u0000${o.idempotencyKey}`, o]));
  return batches.map((b) => {
    const found = b.orders.flatMap((o) => byKey.get(`${o.userId}\u0000${o.idempotencyKey}`) ?? []);
    return found.length > 0 ? { kind: 'duplicates', existing: found } : undefined;
  });
}

/**
 * Why a guard refused the round trip (after its rollback), in one query per question: the products
 * that moved on; failing those, the batches with sagas that were settled by someone else.
 */
async function refusals(
  conn: PoolConnection,
  items: readonly CycleBatch[],
  options: CycleWriterOptions,
): Promise<(BatchResult | undefined)[]> {
  const batches = items.map((i) => i.batch);
  const touching = items.filter((i) => touches(i, options));
  if (touching.length > 0) {
    const [rows] = await conn.query<RowDataPacket[]>('SELECT id, version FROM products WHERE id IN (?)', [
      touching.map((i) => i.batch.productId),
    ]);
    const versions = new Map(rows.map((r) => [Number(r['id']), Number(r['version'])]));
    const moved = items.map((i) =>
      !touches(i, options) || versions.get(i.batch.productId) === i.batch.expectedVersion
        ? undefined
        : ({ kind: 'version_conflict' } as const),
    );
    if (moved.some((r) => r !== undefined)) return moved;
  }
  const suspects = batches.flatMap((b) => b.settlements.map((s) => s.orderId));
  const settled = new Map(
    (await sagaStatuses(conn, suspects)).filter((s) => s.status !== 'PENDING').map((s) => [s.orderId, s]),
  );
  return batches.map((b) => {
    const sagas = b.settlements.flatMap((s) => settled.get(s.orderId) ?? []);
    return sagas.length > 0 ? { kind: 'settled_elsewhere', sagas } : undefined;
  });
}

async function sagaStatuses(
  conn: PoolConnection,
  orderIds: readonly string[],
): Promise<{ orderId: string; status: OrderStatus }[]> {
  if (orderIds.length === 0) return [];
  const [rows] = await conn.query<RowDataPacket[]>('SELECT id, status FROM orders WHERE id IN (?)', [
    orderIds,
  ]);
  return rows.map((r) => ({ orderId: String(r['id']), status: String(r['status']) as OrderStatus }));
}
