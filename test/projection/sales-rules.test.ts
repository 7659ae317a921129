// Pure rules of the sales projection, in process: order status transitions and event validation.
import t from 'tap';
import { newEvent } from '../../src/events/envelope.js';
import {
  foldOrderEvents,
  orderTransition,
  toOrderEvent,
  type OrderEvent,
  type OrderStatus,
} from '../../src/projection/sales-rules.js';

void t.test('orderTransition: status only moves forward and counts an order once', async (t) => {
  const cases: [
    OrderStatus | undefined,
    Parameters<typeof orderTransition>[1],
    ReturnType<typeof orderTransition>,
  ][] = [
    [undefined, 'order.created', { status: 'PENDING', counts: undefined, conflict: false }],
    ['PENDING', 'order.created', { status: 'PENDING', counts: undefined, conflict: false }],
    ['CONFIRMED', 'order.created', { status: 'CONFIRMED', counts: undefined, conflict: false }],
    ['CANCELLED', 'order.created', { status: 'CANCELLED', counts: undefined, conflict: false }],
    [undefined, 'order.confirmed', { status: 'CONFIRMED', counts: 'confirmed', conflict: false }],
    ['PENDING', 'order.confirmed', { status: 'CONFIRMED', counts: 'confirmed', conflict: false }],
    ['CONFIRMED', 'order.confirmed', { status: 'CONFIRMED', counts: undefined, conflict: false }],
    ['CANCELLED', 'order.confirmed', { status: 'CANCELLED', counts: undefined, conflict: true }],
    [undefined, 'order.cancelled', { status: 'CANCELLED', counts: 'cancelled', conflict: false }],
    ['PENDING', 'order.cancelled', { status: 'CANCELLED', counts: 'cancelled', conflict: false }],
    ['CANCELLED', 'order.cancelled', { status: 'CANCELLED', counts: undefined, conflict: false }],
    ['CONFIRMED', 'order.cancelled', { status: 'CONFIRMED', counts: undefined, conflict: true }],
  ];
  for (const [current, type, expected] of cases) {
    t.same(orderTransition(current, type), expected, `${current ?? 'none'} + ${type}`);
  }
});

void t.test('toOrderEvent validates what the SQL relies on', async (t) => {
  const created = newEvent('order.created', 7, 'order-1', { userId: 'u1', quantity: 2, unitPriceCents: 300 });
  t.match(toOrderEvent(created), {
    eventId: created.eventId,
    type: 'order.created',
    productId: 7,
    orderId: 'order-1',
    quantity: 2,
    unitPriceCents: 300,
    userId: 'u1',
    occurredAt: Date,
  });
  const confirmed = newEvent('order.confirmed', 7, 'order-1', { quantity: 2, unitPriceCents: 300 });
  t.equal((toOrderEvent(confirmed) as { userId: unknown }).userId, undefined, 'only created carries a user');

  const bad: [string, object][] = [
    ['invalid orderId', { orderId: null }],
    ['invalid orderId', { orderId: 'x'.repeat(37) }],
    ['invalid productId', { productId: 0 }],
    ['invalid quantity', { data: { userId: 'u', quantity: 0, unitPriceCents: 1 } }],
    ['invalid quantity', { data: { userId: 'u', quantity: 1.5, unitPriceCents: 1 } }],
    ['invalid unitPriceCents', { data: { userId: 'u', quantity: 1, unitPriceCents: -1 } }],
    ['invalid occurredAt', { occurredAt: 'yesterday' }],
    ['invalid userId', { data: { userId: '', quantity: 1, unitPriceCents: 1 } }],
    ['invalid userId', { data: { userId: 'u'.repeat(65), quantity: 1, unitPriceCents: 1 } }],
  ];
  for (const [reason, change] of bad) {
    t.equal(toOrderEvent({ ...created, ...change }), reason, JSON.stringify(change).slice(0, 60));
  }
});

void t.test('foldOrderEvents: rows move forward, totals count each order once', async (t) => {
  const at = (s: number) => new Date(Date.UTC(2030, 0, 1, 0, 0, s));
  const event = (type: OrderEvent['type'], orderId: string, s: number, userId?: string): OrderEvent => ({
    eventId: `${orderId}-${type}`,
    type,
    productId: orderId === 'c' ? 2 : 1,
    orderId,
    occurredAt: at(s),
    quantity: 2,
    unitPriceCents: 100,
    userId,
  });
  const existing = new Map([
    [
      'c',
      {
        productId: 2,
        userId: 'uc',
        status: 'PENDING' as const,
        quantity: 2,
        unitPriceCents: 100,
        createdAt: at(0),
      },
    ],
  ]);
  const folded = foldOrderEvents(existing, [
    event('order.confirmed', 'a', 5), // before its created
    event('order.created', 'a', 4, 'ua'),
    event('order.created', 'b', 6, 'ub'),
    event('order.cancelled', 'c', 7),
    event('order.confirmed', 'c', 8), // conflict: c is already cancelled
  ]);
  t.same(Object.fromEntries(folded.changed), {
    a: {
      productId: 1,
      userId: 'ua',
      status: 'CONFIRMED',
      quantity: 2,
      unitPriceCents: 100,
      createdAt: at(4),
    },
    b: { productId: 1, userId: 'ub', status: 'PENDING', quantity: 2, unitPriceCents: 100, createdAt: at(6) },
    c: {
      productId: 2,
      userId: 'uc',
      status: 'CANCELLED',
      quantity: 2,
      unitPriceCents: 100,
      createdAt: at(0),
    },
  });
  t.same(Object.fromEntries(folded.deltas), {
    1: {
      confirmedOrders: 1,
      confirmedQuantity: 2,
      revenueCents: 200,
      cancelledOrders: 0,
      cancelledQuantity: 0,
    },
    2: {
      confirmedOrders: 0,
      confirmedQuantity: 0,
      revenueCents: 0,
      cancelledOrders: 1,
      cancelledQuantity: 2,
    },
  });
  t.same(folded.conflicts, ['c-order.confirmed']);
  t.equal(existing.get('c')?.status, 'PENDING', 'the current rows are not modified');
});
