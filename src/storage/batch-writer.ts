import type { BatchResult, BatchWrite, OrderStatus, Settlement } from '../domain/index.js';
import { newEvent, OUTBOX_INSERT, outboxRows, type EventEnvelope, type Topics } from '../events/envelope.js';
import type { PoolConnection, RowDataPacket } from './mysql.js';
import { findOrdersByIdempotency } from './order-queries.js';
import { InvariantError } from '../errors.js';

/** MySQL error number for a duplicate unique key. */
export const ER_DUP_ENTRY = 1062;

export interface BatchWriterOptions {
  topics: Topics;
  /** A new saga must end by created + this, ms. */
  sagaDeadlineMs: number;
  /** The ownership lease epoch the writes are made under (0 with one node), recorded on every row. */
  ownerEpoch: number;
  /** Recorded on new orders: which purchase path made them. */
  strategy: 'actor' | 'baseline';
  /**
   * False: the product row is neither updated nor version-checked (the baseline's confirmations, which
   * change no stock; each saga's own version check fences them). Only for batches without orders or a
   * stock change. Default true.
   */
  touchProduct?: boolean;
}

/**
 * MySQL error number for "Subquery returns more than 1 row": what a guard raises (see `GUARD`).
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

interface Statement {
  sql: string;
  params: unknown[];
  /** Checked by a guard right after it: this statement must have changed exactly this many rows. */
  mustChange?: { rows: number };
}

/**
 * A guard: fails the multi-statement (ER_GUARD) unless the statement before it changed exactly `?` rows,
 * so a refused batch stops before its COMMIT. Plain SQL that MySQL 8 and MariaDB both run (SIGNAL is
 * only allowed in stored programs on MySQL); the subquery is evaluated only when the count is wrong.
 */
const GUARD = 'SELECT IF(ROW_COUNT() = ?, 0, (SELECT 1 UNION ALL SELECT 2)) AS guard';

export interface WriteBatchOptions extends BatchWriterOptions {
  /**
   * True (the product actors' commit pipeline): the transaction is opened in the same round trip. False
   * (the baseline): the caller opened it and holds the row lock already.
   */
  begin: boolean;
}

/** One product's batch in a commit cycle, with the lease epoch its writes are made under. */
export interface CycleBatch {
  batch: BatchWrite;
  ownerEpoch: number;
  /**
   * False: a batch of confirmations only, written without touching or checking the product row (each
   * saga's own version check fences it, as the baseline's are), so it needs no slot in its product's chain
   * and may share a cycle with the product's own batch. Default true.
   */
  touchProduct?: boolean;
}

/** Whether a cycle item updates and version-checks its product row. */
const touches = (item: CycleBatch, options: { touchProduct?: boolean }): boolean =>
  options.touchProduct !== false && item.touchProduct !== false;

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
        // Nothing could be traced: only a lone batch fails; several are tried one by one.
        if (group.length === 1) results[group[0]!] = { kind: 'failed', error: refused.error };
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
  const sql: string[] = options.begin
    ? ['SET TRANSACTION ISOLATION LEVEL READ COMMITTED', 'START TRANSACTION']
    : [];
  const params: unknown[] = [];
  for (const s of statements) {
    sql.push(s.sql);
    params.push(...s.params);
    if (s.mustChange !== undefined) {
      sql.push(GUARD);
      params.push(s.mustChange.rows);
    }
  }
  sql.push('COMMIT');
  const text = sql.join(';\n');
  for (let attempt = 0; ; attempt += 1) {
    try {
      await conn.query(text, params);
      return undefined;
    } catch (err) {
      // Only a transaction of its own is sent again (begin: false is the caller's, and the caller's to end).
      const errno = (err as { errno?: number }).errno ?? 0;
      const again = options.begin && TRANSIENT_LOCK_ERRORS.has(errno) && attempt < lockRetryLimit;
      if (!again) return refusal(conn, items, options, err);
      await conn.query('ROLLBACK');
      options.onLockRetry?.(errno);
      // A few ms apart, so two victims of one another do not meet again at once.
      await new Promise((r) => setTimeout(r, 1 + Math.random() * 4 * (attempt + 1)));
    }
  }
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

/** The statements of one batch written alone (exported for tests). */
export function batchStatements(batch: BatchWrite, options: BatchWriterOptions, now: Date): Statement[] {
  return cycleStatements([{ batch, ownerEpoch: options.ownerEpoch }], options, now);
}

/**
 * Units a batch restocked: its stock change with its orders added back and its cancellations' releases taken
 * out (`products.stock_received`, the ledger the consistency monitor checks, grows by exactly this).
 */
function restockedBy(batch: BatchWrite): number {
  const sold = batch.orders.reduce((n, o) => n + o.quantity, 0);
  const released = batch.settlements.reduce((n, s) => n + (s.outcome === 'cancel' ? s.quantity : 0), 0);
  // Never negative by the actors' and the baseline's accounting; a bug there must not fail the write (the
  // monitor's ledger check reports it instead).
  return Math.max(0, batch.newStock - batch.previousStock + sold - released);
}

/**
 * `UPDATE products` of every batch in one statement: its stock, what it restocked added to
 * `stock_received`, its version + 1, if still at its version.
 */
function productUpdate(items: readonly CycleBatch[]): Statement {
  const rows = items.length;
  if (rows === 1) {
    const { batch, ownerEpoch } = items[0]!;
    return {
      sql: 'UPDATE products SET stock = ?, stock_received = stock_received + ?, version = version + 1, owner_epoch = ? WHERE id = ? AND version = ?',
      params: [batch.newStock, restockedBy(batch), ownerEpoch, batch.productId, batch.expectedVersion],
      mustChange: { rows },
    };
  }
  const cases = (value: (item: CycleBatch) => number): { sql: string; params: number[] } => ({
    sql: `CASE id${' WHEN ? THEN ?'.repeat(rows)} END`,
    params: items.flatMap((item) => [item.batch.productId, value(item)]),
  });
  const stock = cases((i) => i.batch.newStock);
  const received = cases((i) => restockedBy(i.batch));
  const epoch = cases((i) => i.ownerEpoch);
  const version = cases((i) => i.batch.expectedVersion);
  return {
    sql: `UPDATE products SET stock = ${stock.sql}, stock_received = stock_received + ${received.sql}, version = version + 1, owner_epoch = ${epoch.sql} WHERE id IN (?) AND version = ${version.sql}`,
    params: [
      ...stock.params,
      ...received.params,
      ...epoch.params,
      items.map((i) => i.batch.productId),
      ...version.params,
    ],
    mustChange: { rows },
  };
}

/** The statements of a cycle (see `writeCycle`). */
function cycleStatements(
  items: readonly CycleBatch[],
  options: Omit<BatchWriterOptions, 'ownerEpoch'>,
  now: Date,
): Statement[] {
  const statements: Statement[] = [];
  const touching = items.filter((i) => touches(i, options));
  if (touching.length > 0) statements.push(productUpdate(touching));
  if (
    items.some(
      (i) =>
        !touches(i, options) && (i.batch.orders.length > 0 || i.batch.newStock !== i.batch.previousStock),
    )
  ) {
    throw new InvariantError('a batch with orders or a stock change must update the product row');
  }
  const events: EventEnvelope[] = [];
  /** The request id of each event (same positions): the Kafka header `x-request-id` (README "Logs"). */
  const requestIds: (string | undefined)[] = [];
  const steps: unknown[][] = [];
  const orders: unknown[][] = [];
  const sagas: unknown[][] = [];
  const at = now.toISOString();
  const deadline = new Date(now.getTime() + options.sagaDeadlineMs);
  // One version-checked UPDATE per group of sagas ending alike (usually one: every confirmation).
  const groups = new Map<string, { ownerEpoch: number; members: Settlement[] }>();
  const statusOf = { confirm: [] as string[], cancel: [] as string[] };
  for (const { batch, ownerEpoch } of items) {
    for (const o of batch.orders) {
      orders.push([
        o.id,
        o.productId,
        o.userId,
        o.idempotencyKey,
        o.quantity,
        o.unitPriceCents,
        'PENDING',
        options.strategy,
        ownerEpoch,
      ]);
      sagas.push([o.id, o.productId, 'PAYMENT_PENDING', 0, o.id, o.requestId ?? null, deadline, ownerEpoch]);
      steps.push([o.id, 'reserve_inventory', 'done', `${o.quantity}`, ownerEpoch, now]);
      steps.push([o.id, 'create_order', 'done', null, ownerEpoch, now]);
      events.push(newEvent('inventory.reserved', o.productId, o.id, { quantity: o.quantity }, at));
      events.push(
        newEvent(
          'order.created',
          o.productId,
          o.id,
          { userId: o.userId, quantity: o.quantity, unitPriceCents: o.unitPriceCents },
          at,
        ),
      );
      requestIds.push(o.requestId, o.requestId);
    }
    for (const s of batch.settlements) {
      const group = `${s.outcome}\u0000${s.sagaVersion}\u0000${s.reason ?? ''}\u0000${ownerEpoch}`;
      const members = groups.get(group);
      if (members === undefined) groups.set(group, { ownerEpoch, members: [s] });
      else members.members.push(s);
      statusOf[s.outcome].push(s.orderId);
      steps.push(...settlementSteps(s, ownerEpoch, now));
      const added = events.push(...settlementEvents(s, at)) - requestIds.length;
      for (let i = 0; i < added; i += 1) requestIds.push(s.requestId);
    }
    if (batch.newStock !== batch.previousStock) {
      events.push(
        newEvent(
          'stock.changed',
          batch.productId,
          null,
          { stock: batch.newStock, version: batch.expectedVersion + 1 },
          at,
        ),
      );
      requestIds.push(undefined); // a batch's change of stock belongs to no one request
    }
  }
  if (orders.length > 0) {
    statements.push({
      sql: 'INSERT INTO orders (id, product_id, user_id, idempotency_key, quantity, unit_price_cents, status, strategy, owner_epoch) VALUES ?',
      params: [orders],
    });
    statements.push({
      sql: 'INSERT INTO sagas (order_id, product_id, state, version, payment_key, request_id, deadline_at, owner_epoch) VALUES ?',
      params: [sagas],
    });
  }
  for (const { ownerEpoch, members } of groups.values()) {
    const { outcome, sagaVersion, reason } = members[0]!;
    const orderIds = members.map((s) => s.orderId);
    statements.push({
      sql: "UPDATE sagas SET state = ?, version = version + 1, last_error = ?, owner_epoch = ? WHERE order_id IN (?) AND version = ? AND state = 'PAYMENT_PENDING'",
      params: [
        outcome === 'confirm' ? 'CONFIRMED' : 'CANCELLED',
        reason ?? null,
        ownerEpoch,
        orderIds,
        sagaVersion,
      ],
      mustChange: { rows: orderIds.length },
    });
  }
  for (const [status, orderIds] of [
    ['CONFIRMED', statusOf.confirm],
    ['CANCELLED', statusOf.cancel],
  ] as const) {
    if (orderIds.length > 0) {
      statements.push({
        sql: "UPDATE orders SET status = ? WHERE id IN (?) AND status = 'PENDING'",
        params: [status, orderIds],
      });
    }
  }
  if (steps.length > 0) {
    statements.push({
      sql: 'INSERT INTO saga_steps (order_id, step, outcome, detail, owner_epoch, at) VALUES ?',
      params: [steps],
    });
  }
  if (events.length > 0) {
    const epoch = Math.max(...items.map((i) => i.ownerEpoch));
    statements.push({ sql: OUTBOX_INSERT, params: [outboxRows(events, options.topics, epoch, requestIds)] });
  }
  return statements;
}

function settlementSteps(s: Settlement, ownerEpoch: number, now: Date): unknown[][] {
  const paidAt = new Date(s.payment.at);
  const payment = [
    s.orderId,
    'process_payment',
    s.payment.status,
    s.payment.reason ?? null,
    ownerEpoch,
    paidAt,
  ];
  if (s.outcome === 'confirm') return [payment, [s.orderId, 'confirm_order', 'done', null, ownerEpoch, now]];
  return [
    payment,
    [s.orderId, 'cancel_order', 'done', s.reason ?? null, ownerEpoch, now],
    [s.orderId, 'release_inventory', 'done', `${s.quantity}`, ownerEpoch, now],
  ];
}

function settlementEvents(s: Settlement, at: string): EventEnvelope[] {
  const { orderId, productId, quantity, unitPriceCents } = s;
  if (s.outcome === 'confirm') {
    return [
      newEvent(
        'payment.succeeded',
        productId,
        orderId,
        { paymentKey: s.payment.key, amountCents: s.payment.amountCents },
        at,
      ),
      newEvent('order.confirmed', productId, orderId, { quantity, unitPriceCents }, at),
    ];
  }
  const reason = s.reason ?? s.payment.reason ?? s.payment.status;
  return [
    newEvent('payment.failed', productId, orderId, { paymentKey: s.payment.key, reason }, at),
    newEvent('order.cancelled', productId, orderId, { quantity, unitPriceCents, reason }, at),
    newEvent('inventory.released', productId, orderId, { quantity }, at),
  ];
}
