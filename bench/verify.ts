/**
 * Correctness after a run, from the MySQL primary: per product, initial − stock = SUM(quantity) of PENDING
 * and CONFIRMED orders, and the orders match the answers (201 = CONFIRMED, 402 = CANCELLED, 202 = any,
 * 5xx/transport = at most one, nothing else).
 */
import type { RowDataPacket } from 'mysql2/promise';
import { ordersOfKeys, withMysql } from './stores.js';
import type { PurchaseLedger } from './load.js';

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

/** Orders per status (n each; `other` for any status but these three). */
function countStatuses(rows: readonly { status: string; n: number }[]) {
  const counts = { PENDING: 0, CONFIRMED: 0, CANCELLED: 0, other: 0 };
  for (const { status, n } of rows)
    counts[status === 'PENDING' || status === 'CONFIRMED' || status === 'CANCELLED' ? status : 'other'] += n;
  return counts;
}

export function verifyProducts(expected: readonly ExpectedProduct[]) {
  return withMysql(async (conn) => {
    const checks = [];
    for (const { pendingKeys, ambiguousKeys, ...product } of expected) {
      const id = product.productId;
      const [productRows] = await conn.query<RowDataPacket[]>('SELECT stock FROM products WHERE id = ?', [
        id,
      ]);
      if (productRows[0] === undefined) throw new Error(`product ${id} (${product.label}) is not in MySQL`);
      const stock = Number(productRows[0]['stock']);
      const [statusRows] = await conn.query<RowDataPacket[]>(
        'SELECT status, COUNT(*) AS n, COALESCE(SUM(quantity), 0) AS q FROM orders WHERE product_id = ? GROUP BY status',
        [id],
      );
      const byStatus = statusRows.map((r) => ({
        status: String(r['status']),
        n: Number(r['n']),
        q: Number(r['q']),
      }));
      const orders = countStatuses(byStatus);
      const sold = byStatus.filter((r) => r.status !== 'CANCELLED').reduce((sum, r) => sum + r.q, 0);
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
      checks.push({
        ...product,
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
