import type { EventEnvelope } from '../events/envelope.js';

/** The order events the sales projection applies. */
export const ORDER_EVENT_TYPES = ['order.created', 'order.confirmed', 'order.cancelled'] as const;
export type OrderEventType = (typeof ORDER_EVENT_TYPES)[number];

/** An order event, validated and flattened from its envelope. */
export interface OrderEvent {
  eventId: string;
  type: OrderEventType;
  productId: number;
  orderId: string;
  occurredAt: Date;
  quantity: number;
  unitPriceCents: number;
  /** Only order.created carries it. */
  userId: string | undefined;
}

export type OrderStatus = 'PENDING' | 'CONFIRMED' | 'CANCELLED';
export const ORDER_STATUSES: readonly OrderStatus[] = ['PENDING', 'CONFIRMED', 'CANCELLED'];

/** An order_history row. */
export interface OrderRow {
  productId: number;
  /** NULL until order.created arrives. */
  userId: string | null;
  status: OrderStatus;
  quantity: number;
  unitPriceCents: number;
  createdAt: Date;
}

export interface SalesDelta {
  confirmedOrders: number;
  confirmedQuantity: number;
  revenueCents: number;
  cancelledOrders: number;
  cancelledQuantity: number;
}

const ORDER_ID = /^[0-9A-Za-z-]{1,36}$/;
const isCount = (n: unknown, min: number): n is number => Number.isSafeInteger(n) && (n as number) >= min;

/** The order event inside an envelope of an order.* type, or why it cannot be applied. */
export function toOrderEvent(envelope: EventEnvelope): OrderEvent | string {
  const data = envelope.data as { quantity?: unknown; unitPriceCents?: unknown; userId?: unknown };
  const occurredAt = new Date(envelope.occurredAt);
  if (typeof envelope.orderId !== 'string' || !ORDER_ID.test(envelope.orderId)) return 'invalid orderId';
  if (!isCount(envelope.productId, 1)) return 'invalid productId';
  if (!isCount(data.quantity, 1)) return 'invalid quantity';
  if (!isCount(data.unitPriceCents, 0)) return 'invalid unitPriceCents';
  if (Number.isNaN(occurredAt.getTime())) return 'invalid occurredAt';
  const created = envelope.type === 'order.created';
  if (created && (typeof data.userId !== 'string' || data.userId.length < 1 || data.userId.length > 64)) {
    return 'invalid userId';
  }
  return {
    eventId: envelope.eventId,
    type: envelope.type as OrderEventType,
    productId: envelope.productId,
    orderId: envelope.orderId,
    occurredAt,
    quantity: data.quantity,
    unitPriceCents: data.unitPriceCents,
    userId: created ? (data.userId as string) : undefined,
  };
}

export interface OrderTransition {
  status: OrderStatus;
  /** The product total this event adds to, when it moved the order into a terminal status. */
  counts: 'confirmed' | 'cancelled' | undefined;
  /** The order already reached the other terminal status: an upstream bug worth a warning. */
  conflict: boolean;
}

/**
 * Status only moves forward: PENDING -> CONFIRMED | CANCELLED, and the first terminal status stays.
 * A late order.created never moves an order back; an order counts in its product's totals once.
 */
export function orderTransition(current: OrderStatus | undefined, type: OrderEventType): OrderTransition {
  if (type === 'order.created') return { status: current ?? 'PENDING', counts: undefined, conflict: false };
  const target: OrderStatus = type === 'order.confirmed' ? 'CONFIRMED' : 'CANCELLED';
  if (current === undefined || current === 'PENDING') {
    return { status: target, counts: target === 'CONFIRMED' ? 'confirmed' : 'cancelled', conflict: false };
  }
  return { status: current, counts: undefined, conflict: current !== target };
}

export interface Folded {
  /** Rows of the orders the events changed (new or updated), by order id. */
  changed: Map<string, OrderRow>;
  /** What to add to each product's totals. */
  deltas: Map<number, SalesDelta>;
  /** Event ids of terminal events that met the opposite terminal status. */
  conflicts: string[];
}

/** Applies new (already deduplicated) events in order to the orders' current rows; pure. */
export function foldOrderEvents(
  current: ReadonlyMap<string, OrderRow>,
  events: readonly OrderEvent[],
): Folded {
  const rows = new Map(current);
  const folded: Folded = { changed: new Map(), deltas: new Map(), conflicts: [] };
  for (const event of events) {
    const before = rows.get(event.orderId);
    const transition = orderTransition(before?.status, event.type);
    if (transition.conflict) folded.conflicts.push(event.eventId);
    let row: OrderRow;
    if (before === undefined) {
      row = {
        productId: event.productId,
        userId: event.userId ?? null,
        status: transition.status,
        quantity: event.quantity,
        unitPriceCents: event.unitPriceCents,
        createdAt: event.occurredAt,
      };
    } else if (event.type === 'order.created') {
      // Arrived after a later event: fill in what only it carries, keep the status.
      const createdAt = event.occurredAt < before.createdAt ? event.occurredAt : before.createdAt;
      row = { ...before, userId: event.userId ?? before.userId, createdAt };
    } else if (transition.status !== before.status) {
      row = {
        ...before,
        status: transition.status,
        quantity: event.quantity,
        unitPriceCents: event.unitPriceCents,
      };
    } else {
      continue;
    }
    rows.set(event.orderId, row);
    folded.changed.set(event.orderId, row);
    if (transition.counts !== undefined) addToDelta(folded.deltas, event, transition.counts);
  }
  return folded;
}

function addToDelta(deltas: Map<number, SalesDelta>, event: OrderEvent, counts: 'confirmed' | 'cancelled') {
  let delta = deltas.get(event.productId);
  if (delta === undefined) {
    delta = {
      confirmedOrders: 0,
      confirmedQuantity: 0,
      revenueCents: 0,
      cancelledOrders: 0,
      cancelledQuantity: 0,
    };
    deltas.set(event.productId, delta);
  }
  if (counts === 'confirmed') {
    delta.confirmedOrders += 1;
    delta.confirmedQuantity += event.quantity;
    delta.revenueCents += event.quantity * event.unitPriceCents;
  } else {
    delta.cancelledOrders += 1;
    delta.cancelledQuantity += event.quantity;
  }
}
