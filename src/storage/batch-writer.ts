import type { BatchResult, BatchWrite, OrderStatus, Settlement } from '../../actors/product/types.js';
import { newEvent, OUTBOX_INSERT, outboxRows, type EventEnvelope, type Topics } from '../events/envelope.js';
import type { PoolConnection, RowDataPacket } from './mysql.js';
import { findOrdersByIdempotency } from './order-queries.js';

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

interface Statement {
  sql: string;
  params: unknown[];
  /** Checked by a guard right after it: this statement must have changed exactly these rows. */
  mustChange?: { kind: 'product' } | { kind: 'sagas'; orderIds: string[] };
}

/**
 * A guard: fails the multi-statement (ER_GUARD) unless the statement before it changed exactly `?` rows,
 * so a refused batch stops before its COMMIT. Plain SQL that MySQL 8 and MariaDB both run (SIGNAL is
 * only allowed in stored programs on MySQL); the subquery is evaluated only when the count is wrong.
 */
const GUARD = 'SELECT IF(ROW_COUNT() = ?, 0, (SELECT 1 UNION ALL SELECT 2)) AS guard';

export interface WriteBatchOptions extends BatchWriterOptions {
  /**
   * True (the product actor): the transaction is opened in the same round trip. False (the baseline):
   * the caller opened it and holds the row lock already.
   */
  begin: boolean;
}

/**
 * Everything one write of a product does, as ONE multi-statement round trip that ends in its COMMIT:
 * the version-checked stock update, new orders with their sagas, the sagas' settlements, every saga
 * step, and every event into the outbox. A guard after each checked statement aborts the round trip
 * before the COMMIT when a check fails; the batch is then rolled back here.
 *
 * Nothing waits on this process between statements, so a process paused (SIGSTOP, a long GC, a frozen
 * VM) never sits on the product's row lock with a transaction open: the next owner's write is not
 * blocked by a zombie. Only when the round trip fails does a ROLLBACK follow in a second one.
 */
export async function writeBatch(
  conn: PoolConnection,
  batch: BatchWrite,
  options: WriteBatchOptions,
): Promise<BatchResult> {
  const now = new Date();
  const statements = batchStatements(batch, options, now);
  const sql: string[] = options.begin ? ['START TRANSACTION'] : [];
  const params: unknown[] = [];
  for (const s of statements) {
    sql.push(s.sql);
    params.push(...s.params);
    if (s.mustChange !== undefined) {
      sql.push(GUARD);
      params.push(s.mustChange.kind === 'sagas' ? s.mustChange.orderIds.length : 1);
    }
  }
  sql.push('COMMIT');
  try {
    await conn.query(sql.join(';\n'), params);
  } catch (err) {
    const errno = (err as { errno?: number }).errno;
    if (errno !== ER_DUP_ENTRY && errno !== ER_GUARD) throw err;
    await conn.query('ROLLBACK');
    if (errno === ER_DUP_ENTRY) {
      const existing = batch.orders.length > 0 ? await findOrdersByIdempotency(conn, batch.orders) : [];
      if (existing.length === 0) throw err;
      return { kind: 'duplicates', existing };
    }
    return refusal(conn, batch, statements, options);
  }
  const version = options.touchProduct === false ? batch.expectedVersion : batch.expectedVersion + 1;
  return { kind: 'committed', version, committedAt: now.toISOString() };
}

/** Why a guard refused the batch (after its rollback): the product moved on, or some of its sagas did. */
async function refusal(
  conn: PoolConnection,
  batch: BatchWrite,
  statements: readonly Statement[],
  options: BatchWriterOptions,
): Promise<BatchResult> {
  if (options.touchProduct !== false) {
    const [rows] = await conn.query<RowDataPacket[]>('SELECT version FROM products WHERE id = ?', [
      batch.productId,
    ]);
    if (Number(rows[0]?.['version']) !== batch.expectedVersion) return { kind: 'version_conflict' };
  }
  const suspects = statements.flatMap((s) => (s.mustChange?.kind === 'sagas' ? s.mustChange.orderIds : []));
  const settled = (await sagaStatuses(conn, suspects)).filter((s) => s.status !== 'PENDING');
  if (settled.length === 0) throw new Error('a saga row changed without its order: refusing the batch');
  return { kind: 'settled_elsewhere', sagas: settled };
}

async function sagaStatuses(
  conn: PoolConnection,
  orderIds: readonly string[],
): Promise<{ orderId: string; status: OrderStatus }[]> {
  const [rows] = await conn.query<RowDataPacket[]>('SELECT id, status FROM orders WHERE id IN (?)', [
    orderIds,
  ]);
  return rows.map((r) => ({ orderId: String(r['id']), status: String(r['status']) as OrderStatus }));
}

/** The statements of one batch (exported for tests). */
export function batchStatements(batch: BatchWrite, options: BatchWriterOptions, now: Date): Statement[] {
  const { ownerEpoch } = options;
  const statements: Statement[] = [];
  if (options.touchProduct !== false) {
    statements.push({
      sql: 'UPDATE products SET stock = ?, version = version + 1, owner_epoch = ? WHERE id = ? AND version = ?',
      params: [batch.newStock, ownerEpoch, batch.productId, batch.expectedVersion],
      mustChange: { kind: 'product' },
    });
  } else if (batch.orders.length > 0 || batch.newStock !== batch.previousStock) {
    throw new Error('a batch with orders or a stock change must update the product row');
  }
  const events: EventEnvelope[] = [];
  const steps: unknown[][] = [];
  const at = now.toISOString();
  if (batch.orders.length > 0) {
    const deadline = new Date(now.getTime() + options.sagaDeadlineMs);
    statements.push({
      sql: 'INSERT INTO orders (id, product_id, user_id, idempotency_key, quantity, unit_price_cents, status, strategy, owner_epoch) VALUES ?',
      params: [
        batch.orders.map((o) => [
          o.id,
          o.productId,
          o.userId,
          o.idempotencyKey,
          o.quantity,
          o.unitPriceCents,
          'PENDING',
          options.strategy,
          ownerEpoch,
        ]),
      ],
    });
    statements.push({
      sql: 'INSERT INTO sagas (order_id, product_id, state, version, payment_key, deadline_at, owner_epoch) VALUES ?',
      params: [
        batch.orders.map((o) => [o.id, o.productId, 'PAYMENT_PENDING', 0, o.id, deadline, ownerEpoch]),
      ],
    });
    for (const o of batch.orders) {
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
    }
  }
  // One version-checked UPDATE per group of sagas ending alike (usually one: every confirmation).
  const groups = new Map<string, Settlement[]>();
  for (const s of batch.settlements) {
    const group = `${s.outcome}\u0000${s.sagaVersion}\u0000${s.reason ?? ''}`;
    const members = groups.get(group);
    if (members === undefined) groups.set(group, [s]);
    else members.push(s);
    steps.push(...settlementSteps(s, ownerEpoch, now));
    events.push(...settlementEvents(s, at));
  }
  for (const group of groups.values()) {
    const { outcome, sagaVersion, reason } = group[0]!;
    const orderIds = group.map((s) => s.orderId);
    statements.push({
      sql: "UPDATE sagas SET state = ?, version = version + 1, last_error = ?, owner_epoch = ? WHERE order_id IN (?) AND version = ? AND state = 'PAYMENT_PENDING'",
      params: [
        outcome === 'confirm' ? 'CONFIRMED' : 'CANCELLED',
        reason ?? null,
        ownerEpoch,
        orderIds,
        sagaVersion,
      ],
      mustChange: { kind: 'sagas', orderIds },
    });
  }
  for (const [status, settlements] of [
    ['CONFIRMED', batch.settlements.filter((s) => s.outcome === 'confirm')],
    ['CANCELLED', batch.settlements.filter((s) => s.outcome === 'cancel')],
  ] as const) {
    if (settlements.length > 0) {
      statements.push({
        sql: "UPDATE orders SET status = ? WHERE id IN (?) AND status = 'PENDING'",
        params: [status, settlements.map((s) => s.orderId)],
      });
    }
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
  }
  if (steps.length > 0) {
    statements.push({
      sql: 'INSERT INTO saga_steps (order_id, step, outcome, detail, owner_epoch, at) VALUES ?',
      params: [steps],
    });
  }
  if (events.length > 0)
    statements.push({
      sql: OUTBOX_INSERT,
      params: [outboxRows(events, options.topics, ownerEpoch)],
    });
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
