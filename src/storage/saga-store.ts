import type { OrderStatus, SagaOrder } from '../domain/index.js';
import type { Pool, RowDataPacket } from './mysql.js';
import { orderFromRow } from './order-queries.js';

export interface OrderDetails {
  orderId: string;
  productId: number;
  userId: string;
  quantity: number;
  unitPriceCents: number;
  status: OrderStatus;
  strategy: string;
  createdAt: string;
  updatedAt: string;
  saga: {
    state: string;
    version: number;
    paymentKey: string;
    deadlineAt: string;
    reason: string | null;
    steps: { step: string; outcome: string; detail: string | null; at: string }[];
  } | null;
}

const iso = (value: unknown): string => (value as Date).toISOString();

/** Reads of saga state: what recovery must resume, and what GET /orders/:id shows. */
export class SagaStore {
  constructor(private readonly primary: Pool) {}

  /**
   * Sagas not yet terminal, oldest first. `idleForMs` skips those touched more recently (a live
   * coordinator is probably still on them); `productIds` limits to products this node owns.
   */
  async pending(options: {
    limit: number;
    idleForMs?: number;
    productIds?: readonly number[];
  }): Promise<SagaOrder[]> {
    if (options.productIds !== undefined && options.productIds.length === 0) return [];
    const where = ["s.state = 'PAYMENT_PENDING'"];
    const params: unknown[] = [];
    if (options.idleForMs !== undefined) {
      where.push('s.updated_at < NOW(3) - INTERVAL ? MICROSECOND');
      params.push(options.idleForMs * 1000);
    }
    if (options.productIds !== undefined) {
      where.push('s.product_id IN (?)');
      params.push(options.productIds);
    }
    params.push(options.limit);
    const [rows] = await this.primary.query<RowDataPacket[]>(
      `SELECT s.order_id, s.product_id, s.version, s.payment_key, s.request_id, s.deadline_at, o.user_id, o.quantity, o.unit_price_cents
         FROM sagas s JOIN orders o ON o.id = s.order_id
        WHERE ${where.join(' AND ')}
        ORDER BY s.created_at LIMIT ?`,
      params,
    );
    return rows.map((r) => ({
      orderId: String(r['order_id']),
      productId: Number(r['product_id']),
      userId: String(r['user_id']),
      quantity: Number(r['quantity']),
      unitPriceCents: Number(r['unit_price_cents']),
      version: Number(r['version']),
      paymentKey: String(r['payment_key']),
      deadline: (r['deadline_at'] as Date).getTime(),
      // A resumed saga logs with the request id of the purchase that made its order.
      requestId: r['request_id'] === null ? undefined : String(r['request_id']),
    }));
  }

  async order(orderId: string): Promise<OrderDetails | undefined> {
    const [[order]] = await this.primary.query<RowDataPacket[]>(
      `SELECT o.id, o.product_id, o.user_id, o.quantity, o.unit_price_cents, o.status, o.strategy, o.created_at, o.updated_at,
              s.state, s.version, s.payment_key, s.deadline_at, s.last_error
         FROM orders o LEFT JOIN sagas s ON s.order_id = o.id WHERE o.id = ?`,
      [orderId],
    );
    if (order === undefined) return undefined;
    const [steps] = await this.primary.query<RowDataPacket[]>(
      'SELECT step, outcome, detail, at FROM saga_steps WHERE order_id = ? ORDER BY id',
      [orderId],
    );
    return {
      ...orderFromRow(order),
      strategy: String(order['strategy']),
      updatedAt: iso(order['updated_at']),
      saga:
        order['state'] === null
          ? null
          : {
              state: String(order['state']),
              version: Number(order['version']),
              paymentKey: String(order['payment_key']),
              deadlineAt: iso(order['deadline_at']),
              reason: order['last_error'] === null ? null : String(order['last_error']),
              steps: steps.map((s) => ({
                step: String(s['step']),
                outcome: String(s['outcome']),
                detail: s['detail'] === null ? null : String(s['detail']),
                at: iso(s['at']),
              })),
            },
    };
  }
}
