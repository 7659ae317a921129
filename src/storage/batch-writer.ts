import type { BatchResult, BatchWrite, OrderStatus, Settlement } from '../../actors/product/types.js';
import { newEvent, OUTBOX_INSERT, outboxRows, type EventEnvelope, type Topics } from '../events/envelope.js';
import type { PoolConnection, ResultSetHeader, RowDataPacket } from './mysql.js';
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
}

interface Statement {
  sql: string;
  params: unknown[];
  /** Checked after execution: this statement must have changed exactly these rows. */
  mustChange?: { kind: 'product' } | { kind: 'sagas'; orderIds: string[] };
}

/**
 * Everything one write of a product does, as one multi-statement round trip inside a transaction the
 * caller opened: the version-checked stock update, new orders with their sagas, the sagas' settlements,
 * every saga step, and every event into the outbox. Nothing is committed here: the caller commits on
 * `committed` and rolls back otherwise.
 */
export async function writeBatch(
  conn: PoolConnection,
  batch: BatchWrite,
  options: BatchWriterOptions,
): Promise<BatchResult> {
  const now = new Date();
  const statements = batchStatements(batch, options, now);
  let results: ResultSetHeader[];
  try {
    const [rows] = await conn.query<ResultSetHeader[]>(
      statements.map((s) => s.sql).join(';\n'),
      statements.flatMap((s) => s.params),
    );
    results = statements.length === 1 ? [rows as unknown as ResultSetHeader] : rows;
  } catch (err) {
    if ((err as { errno?: number }).errno !== ER_DUP_ENTRY || batch.orders.length === 0) throw err;
    await conn.query('ROLLBACK');
    const existing = await findOrdersByIdempotency(conn, batch.orders);
    if (existing.length === 0) throw err;
    return { kind: 'duplicates', existing };
  }
  const expected = (s: Statement): number =>
    s.mustChange?.kind === 'sagas' ? s.mustChange.orderIds.length : 1;
  const unchanged = statements.filter(
    (s, i) => s.mustChange !== undefined && results[i]?.affectedRows !== expected(s),
  );
  if (unchanged.some((s) => s.mustChange?.kind === 'product')) return { kind: 'version_conflict' };
  const suspects = unchanged.flatMap((s) => (s.mustChange?.kind === 'sagas' ? s.mustChange.orderIds : []));
  if (suspects.length > 0) {
    // Some sagas of a group had moved on; after the rollback, the orders say which (they are no longer PENDING).
    await conn.query('ROLLBACK');
    const settled = (await sagaStatuses(conn, suspects)).filter((s) => s.status !== 'PENDING');
    if (settled.length === 0) throw new Error('a saga row changed without its order: refusing the batch');
    return { kind: 'settled_elsewhere', sagas: settled };
  }
  return { kind: 'committed', version: batch.expectedVersion + 1, committedAt: now.toISOString() };
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
  const statements: Statement[] = [
    {
      sql: 'UPDATE products SET stock = ?, version = version + 1, owner_epoch = ? WHERE id = ? AND version = ?',
      params: [batch.newStock, ownerEpoch, batch.productId, batch.expectedVersion],
      mustChange: { kind: 'product' },
    },
  ];
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
    groups.set(group, [...(groups.get(group) ?? []), s]);
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
    statements.push({ sql: OUTBOX_INSERT, params: [outboxRows(events, options.topics, ownerEpoch)] });
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
