/**
 * Correctness after a run, from the MySQL primary: per product, initial − stock = SUM(quantity) of PENDING
 * and CONFIRMED orders, and the orders match the answers (201 = CONFIRMED, 402 = CANCELLED, 202 = any,
 * 5xx/transport = at most one, nothing else).
 */
import type { RowDataPacket } from 'mysql2/promise';
import type { PhaseResult } from './load.js';
import { serverStatus, withMysql } from '../scripts/stores.js';
import { until } from '../scripts/until.js';

/** A product's expected orders: fresh 201s (confirmed), 402s (cancelled), keys answered 202 (order exists,
 * saga maybe running) and keys answered 5xx or lost in transport (each may or may not have its order). */
export type ExpectedProduct = ReturnType<typeof expectedFrom>[number];

/** What the phases' answers say each product's orders must be. */
export function expectedFrom(
  phases: readonly Pick<PhaseResult, 'perProduct' | 'ambiguous'>[],
  products: readonly { productId: number; label: string; initialStock: number }[],
) {
  return products.map(({ productId, label, initialStock }) => {
    const tallies = phases.flatMap((p) => {
      const tally = p.perProduct.get(productId);
      return tally === undefined ? [] : [tally];
    });
    return {
      productId,
      label,
      initialStock,
      confirmed: tallies.reduce((sum, t) => sum + t.created, 0),
      declined: tallies.reduce((sum, t) => sum + t.declined, 0),
      pendingKeys: tallies.flatMap((t) => t.pendingKeys),
      ambiguousKeys: phases.flatMap((p) =>
        p.ambiguous.filter((a) => a.productId === productId).map((a) => a.key),
      ),
    };
  });
}

type StatusCounts = Record<'PENDING' | 'CONFIRMED' | 'CANCELLED' | 'other', number>;

/** A product's stock and orders against its answers: `sold` = SUM(quantity) of PENDING and CONFIRMED orders,
 * `unsure` the orders among the keys answered 202 or 5xx/transport, `stillPending` sagas not ended in time. */
export type ProductCheck = Awaited<ReturnType<typeof verifyProducts>>[number];

const emptyCounts = (): StatusCounts => ({ PENDING: 0, CONFIRMED: 0, CANCELLED: 0, other: 0 });

function addCounts(into: StatusCounts, rows: RowDataPacket[]): void {
  for (const row of rows) {
    const status = String(row['status']);
    const key = status === 'PENDING' || status === 'CONFIRMED' || status === 'CANCELLED' ? status : 'other';
    into[key] += Number(row['n']);
  }
}

/** MariaDB/MySQL global counters worth a delta per phase (the whole server: other clients count too). */
const SERVER_COUNTERS = [
  'Com_commit',
  'Binlog_commits',
  'Binlog_group_commits',
  'Binlog_bytes_written',
  'Binlog_cache_disk_use',
  'Innodb_data_fsyncs',
  'Innodb_row_lock_waits',
  'Innodb_row_lock_time',
  'Questions',
];

/** The primary's global counters now; undefined when it cannot be reached. */
export const serverCounters = (): Promise<Record<string, number> | undefined> =>
  serverStatus(SERVER_COUNTERS).catch(() => undefined);

/** Keys answered 201 without a CONFIRMED order among these products' orders, or 202 without any order. */
export function lostAcknowledged(
  keys: { readonly confirmed: readonly string[]; readonly pending: readonly string[] },
  productIds: readonly number[],
): Promise<string[]> {
  return withMysql(async (conn) => {
    const found = new Map<string, string>();
    const all = [...keys.confirmed, ...keys.pending];
    for (let i = 0; i < all.length; i += 1000) {
      const [rows] = await conn.query<RowDataPacket[]>(
        'SELECT idempotency_key AS k, status FROM orders WHERE idempotency_key IN (?) AND product_id IN (?)',
        [all.slice(i, i + 1000), productIds],
      );
      for (const row of rows) found.set(String(row['k']), String(row['status']));
    }
    return [
      ...keys.confirmed.filter((k) => found.get(k) !== 'CONFIRMED'),
      ...keys.pending.filter((k) => !found.has(k)),
    ];
  });
}

/** Waits (up to `timeoutMs`) until none of these products has a PENDING order: every saga has ended. */
export const waitForSagas = (productIds: readonly number[], timeoutMs: number): Promise<number> =>
  waitNone(
    "SELECT COUNT(*) AS n FROM orders WHERE product_id IN (?) AND status = 'PENDING'",
    [productIds],
    timeoutMs,
  );

/** Polls `SELECT COUNT(*) AS n …` every 500 ms until it is 0 or `timeoutMs` passed; the last count. */
export function waitNone(sql: string, params: unknown[], timeoutMs: number): Promise<number> {
  return withMysql(async (conn) => {
    const count = async () => Number((await conn.query<RowDataPacket[]>(sql, params))[0][0]?.['n'] ?? 0);
    return (await until(count, (n) => n === 0, timeoutMs, 500)).value;
  });
}

export function verifyProducts(expected: readonly ExpectedProduct[]) {
  return withMysql(async (conn) => {
    const checks = [];
    for (const product of expected) {
      const [productRows] = await conn.query<RowDataPacket[]>('SELECT stock FROM products WHERE id = ?', [
        product.productId,
      ]);
      if (productRows[0] === undefined)
        throw new Error(`product ${product.productId} (${product.label}) is not in MySQL`);
      const stock = Number(productRows[0]['stock']);
      const [statusRows] = await conn.query<RowDataPacket[]>(
        'SELECT status, COUNT(*) AS n, COALESCE(SUM(quantity), 0) AS q FROM orders WHERE product_id = ? GROUP BY status',
        [product.productId],
      );
      const orders = emptyCounts();
      addCounts(orders, statusRows);
      const sold = statusRows
        .filter((r) => r['status'] !== 'CANCELLED')
        .reduce((sum, r) => sum + Number(r['q']), 0);
      const unsure = emptyCounts();
      const keys = [...product.pendingKeys, ...product.ambiguousKeys];
      for (let i = 0; i < keys.length; i += 1000) {
        const [rows] = await conn.query<RowDataPacket[]>(
          'SELECT status, COUNT(*) AS n FROM orders WHERE product_id = ? AND idempotency_key IN (?) GROUP BY status',
          [product.productId, keys.slice(i, i + 1000)],
        );
        addCounts(unsure, rows);
      }
      const unsureTotal = unsure.PENDING + unsure.CONFIRMED + unsure.CANCELLED + unsure.other;
      const stockMatches = product.initialStock - stock === sold;
      const ordersMatch =
        orders.CONFIRMED === product.confirmed + unsure.CONFIRMED &&
        orders.CANCELLED === product.declined + unsure.CANCELLED &&
        orders.PENDING === unsure.PENDING &&
        orders.other === 0 &&
        unsureTotal >= product.pendingKeys.length;
      const oversold = Math.max(0, sold - product.initialStock);
      const { pendingKeys, ambiguousKeys, ...rest } = product;
      checks.push({
        ...rest,
        stock,
        sold,
        orders,
        answered202: pendingKeys.length,
        ambiguous: ambiguousKeys.length,
        unsure,
        oversold,
        stockMatches,
        ordersMatch,
        stillPending: orders.PENDING,
        ok: stockMatches && ordersMatch && oversold === 0,
      });
    }
    return checks;
  });
}
