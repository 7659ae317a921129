/**
 * The bench's reads of the stores (clients: scripts/stores.ts): counters, waits, orders by key, and the check
 * of each product after a run, from the MySQL primary: initial − stock = SUM(quantity) of PENDING and
 * CONFIRMED orders, and the orders match the answers (201 = CONFIRMED, 402 = CANCELLED, 202 = any,
 * 5xx/transport = at most one, nothing else).
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import type { StockTruth } from '../scripts/chaos/subscribers.js';
import { withMysql } from '../scripts/stores.js';
import { until } from '../scripts/until.js';
import type { Redis } from '../src/storage/redis.js';
import type { PurchaseLedger } from './load.js';

export { connectStoreRedis, withMysql } from '../scripts/stores.js';

/** A query's rows on the primary (or the replica). */
export const query = async (sql: string, params: unknown[], role?: 'replica') =>
  (await withMysql((conn) => conn.query<RowDataPacket[]>(sql, params), role))[0];

/** Calls per command since the Redis server started (`INFO commandstats`). */
export async function redisCommandCalls(redis: Redis): Promise<Record<string, number>> {
  const text = await redis.info('commandstats');
  const calls: Record<string, number> = {};
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[m[1]!] = Number(m[2]);
  return calls;
}

/** All calls of `redisCommandCalls` but the INFO that read them. */
export const commandTotal = (calls: Readonly<Record<string, number>>): number =>
  Object.entries(calls).reduce((s, [cmd, n]) => s + (cmd === 'info' ? 0 : n), 0);

/** The MySQL primary's global status counters named (absent ones left out). */
export async function serverStatus(names: readonly string[]): Promise<Record<string, number>> {
  const rows = await query('SHOW GLOBAL STATUS WHERE Variable_name IN (?)', [names]);
  return Object.fromEntries(rows.map((r) => [String(r['Variable_name']), Number(r['Value'])]));
}

/** Polls `SELECT COUNT(*) AS n …` on the primary every 500 ms until it is 0 or `timeoutMs` passed; the last count. */
export function waitNone(sql: string, params: unknown[], timeoutMs: number): Promise<number> {
  return withMysql(async (conn) => {
    const count = async () => Number((await conn.query<RowDataPacket[]>(sql, params))[0][0]?.['n'] ?? 0);
    return (await until(count, (n) => n === 0, timeoutMs, 500)).value;
  });
}

/** Waits (up to `timeoutMs`) until none of these products has a PENDING order: every saga has ended. */
export const waitForSagas = (productIds: readonly number[], timeoutMs: number): Promise<number> =>
  waitNone(
    "SELECT COUNT(*) AS n FROM orders WHERE product_id IN (?) AND status = 'PENDING'",
    [productIds],
    timeoutMs,
  );

/** Each product's stock and version on the primary. */
export async function readTruth(productIds: readonly number[]): Promise<Map<number, StockTruth>> {
  const rows = await query('SELECT id, stock, version FROM products WHERE id IN (?)', [productIds]);
  return new Map(
    rows.map((r) => [Number(r['id']), { stock: Number(r['stock']), version: Number(r['version']) }]),
  );
}

/** The (key, status) of every order of `keys` among these products' orders, 1,000 keys a query (n = 1 each). */
async function ordersOfKeys(conn: Connection, keys: readonly string[], productIds: readonly number[]) {
  const found: { key: string; status: string }[] = [];
  for (let i = 0; i < keys.length; i += 1000) {
    const [rows] = await conn.query<RowDataPacket[]>(
      'SELECT idempotency_key AS k, status FROM orders WHERE idempotency_key IN (?) AND product_id IN (?)',
      [keys.slice(i, i + 1000), productIds],
    );
    for (const row of rows) found.push({ key: String(row['k']), status: String(row['status']) });
  }
  return found;
}

/** Keys answered 201 without a CONFIRMED order among these products' orders, or 202 without any order. */
export function lostAcknowledged(
  keys: { readonly confirmed: readonly string[]; readonly pending: readonly string[] },
  productIds: readonly number[],
): Promise<string[]> {
  return withMysql(async (conn) => {
    const orders = await ordersOfKeys(conn, [...keys.confirmed, ...keys.pending], productIds);
    const found = new Map(orders.map((o) => [o.key, o.status]));
    const lost = keys.confirmed.filter((k) => found.get(k) !== 'CONFIRMED');
    return [...lost, ...keys.pending.filter((k) => !found.has(k))];
  });
}

/** A product's expected orders: fresh 201s (confirmed), 402s (cancelled), keys answered 202 (order exists,
 * saga maybe running) and keys answered 5xx or lost in transport (each may or may not have its order). */
export type ExpectedProduct = ReturnType<typeof expectedFrom>[number];

/** What the phases' answers say each product's orders must be. */
export function expectedFrom(
  ledger: Pick<PurchaseLedger, 'perProduct' | 'ambiguous'>,
  products: readonly { productId: number; label: string; initialStock: number }[],
) {
  return products.map(({ productId, label, initialStock }) => {
    const { created: confirmed = 0, declined = 0, pendingKeys = [] } = ledger.perProduct.get(productId) ?? {};
    const ambiguousKeys = ledger.ambiguous.filter((a) => a.productId === productId).map((a) => a.key);
    return { productId, label, initialStock, confirmed, declined, pendingKeys, ambiguousKeys };
  });
}

/** A product's stock and orders against its answers: `sold` = SUM(quantity) of PENDING and CONFIRMED orders,
 * `unsure` the orders among the keys answered 202 or 5xx/transport, `stillPending` sagas not ended in time. */
export type ProductCheck = Awaited<ReturnType<typeof verifyProducts>>[number];

/** Orders per status (n each, default 1; `other` for any status but these three). */
function countStatuses(rows: readonly Readonly<Record<string, unknown>>[]) {
  const counts = { PENDING: 0, CONFIRMED: 0, CANCELLED: 0, other: 0 };
  for (const { status, n = 1 } of rows)
    counts[status === 'PENDING' || status === 'CONFIRMED' || status === 'CANCELLED' ? status : 'other'] +=
      Number(n);
  return counts;
}

export function verifyProducts(expected: readonly ExpectedProduct[]) {
  return withMysql(async (conn) => {
    const checks = [];
    for (const { pendingKeys, ambiguousKeys, ...product } of expected) {
      const id = product.productId;
      const [[row]] = await conn.query<RowDataPacket[]>('SELECT stock FROM products WHERE id = ?', [id]);
      if (row === undefined) throw new Error(`product ${id} (${product.label}) is not in MySQL`);
      const stock = Number(row['stock']);
      const [statusRows] = await conn.query<RowDataPacket[]>(
        'SELECT status, COUNT(*) AS n, COALESCE(SUM(quantity), 0) AS q FROM orders WHERE product_id = ? GROUP BY status',
        [id],
      );
      const orders = countStatuses(statusRows);
      const sold = statusRows.reduce((sum, r) => sum + (r['status'] === 'CANCELLED' ? 0 : Number(r['q'])), 0);
      const unsure = countStatuses(await ordersOfKeys(conn, [...pendingKeys, ...ambiguousKeys], [id]));
      const unsureTotal = unsure.PENDING + unsure.CONFIRMED + unsure.CANCELLED + unsure.other;
      const stockMatches = product.initialStock - stock === sold;
      const ordersMatch =
        orders.CONFIRMED === product.confirmed + unsure.CONFIRMED &&
        orders.CANCELLED === product.declined + unsure.CANCELLED &&
        orders.PENDING === unsure.PENDING &&
        orders.other === 0 &&
        unsureTotal >= pendingKeys.length;
      const oversold = Math.max(0, sold - product.initialStock);
      const [answered202, ambiguous] = [pendingKeys.length, ambiguousKeys.length];
      const check = { ...product, stock, sold, orders, answered202, ambiguous, unsure, oversold };
      const ok = stockMatches && ordersMatch && oversold === 0;
      checks.push({ ...check, stockMatches, ordersMatch, stillPending: orders.PENDING, ok });
    }
    return checks;
  });
}
