import type { BatchWrite, Settlement } from '../domain/index.js';
import { newEvent, OUTBOX_INSERT, outboxRows, type EventEnvelope, type Topics } from '../events/envelope.js';
import { InvariantError } from '../errors.js';

/**
 * What a commit cycle writes: the SQL statements of its batches (product rows with their version guards,
 * orders, sagas and their steps, outbox rows), in the order batch-writer.ts sends them in one round trip.
 */

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

export interface Statement {
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
export const GUARD = 'SELECT IF(ROW_COUNT() = ?, 0, (SELECT 1 UNION ALL SELECT 2)) AS guard';

/** The same guard inside a MariaDB compound statement (`cycleText`): the same error number, by SIGNAL. */
export const COMPOUND_GUARD =
  "IF ROW_COUNT() <> ? THEN SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 1242, MESSAGE_TEXT = 'guard: a checked statement changed another number of rows'; END IF";

/**
 * The text of a round trip: `statements`, each checked one followed by its guard, then COMMIT. As plain
 * statements, the server answers each as it ends, so the client gets its answers in pieces (6 reads for
 * 6 statements, over ~0.7 ms) and the last, COMMIT's, after the commit's fsync and the replica's ack: a
 * node woke ~2.7 times per cycle at 100 purchases/s. As a MariaDB compound statement (`BEGIN NOT
 * ATOMIC … END`, `compound`), it answers once, when the COMMIT has ended: one read.
 */
export function cycleText(
  prefix: readonly string[],
  statements: readonly Statement[],
  compound: boolean,
): { text: string; params: unknown[] } {
  const sql = [...prefix];
  const params: unknown[] = [];
  for (const s of statements) {
    sql.push(s.sql);
    params.push(...s.params);
    if (s.mustChange !== undefined) {
      sql.push(compound ? COMPOUND_GUARD : GUARD);
      params.push(s.mustChange.rows);
    }
  }
  sql.push('COMMIT');
  const text = sql.join(';\n');
  return { text: compound ? `BEGIN NOT ATOMIC\n${text};\nEND` : text, params };
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
export const touches = (item: CycleBatch, options: { touchProduct?: boolean }): boolean =>
  options.touchProduct !== false && item.touchProduct !== false;

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
export function cycleStatements(
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
