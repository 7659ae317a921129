/**
 * A catalog for the mix: many actor products inserted straight into the primary (thousands of POSTs
 * would take longer than the run), and the Zipf popularity the mix draws reads and purchases from.
 */
import type { ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { withMysql } from './stores.js';

/** Inserts `count` products named `<prefix> <i>` and returns their ids in insertion order (rank 1 first). */
export function insertCatalog(prefix: string, count: number, stock: number): Promise<number[]> {
  return withMysql(async (conn) => {
    const insert = 'INSERT INTO products (name, price_cents, stock, purchase_strategy) VALUES ?';
    for (let i = 0; i < count; i += 1000) {
      const row = (k: number) => [`${prefix} ${i + k + 1}`, 1999, stock, 'actor'];
      const rows = Array.from({ length: Math.min(1000, count - i) }, (_, k) => row(k));
      await conn.query<ResultSetHeader>(insert, [rows]);
    }
    const [rows] = await conn.query<RowDataPacket[]>(
      'SELECT id FROM products WHERE name LIKE ? ORDER BY id',
      [`${prefix.replace(/[%_\\]/g, '\\$&')} %`],
    );
    return rows.map((r) => Number(r['id']));
  });
}

/** Zipf(s = 1) ranks over a prefix of the catalog: rank i has weight 1/i. */
export class Zipf {
  private readonly cdf: Float64Array;

  constructor(size: number) {
    this.cdf = new Float64Array(size);
    let sum = 0;
    for (let i = 0; i < size; i += 1) this.cdf[i] = sum += 1 / (i + 1);
  }

  /** A rank from 0 (most popular) to n − 1, over the first n products. */
  sample(n: number): number {
    const u = Math.random() * this.cdf[n - 1]!;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** Expected miss share of Zipf(1) reads over n products when an entry lives `ttlS`: Σ p/(1 + ttl·R·p). */
function expectedMissShare(n: number, readsPerS: number, ttlS: number): number {
  const weights = Array.from({ length: n }, (_, i) => 1 / (i + 1));
  const h = weights.reduce((a, b) => a + b, 0);
  return weights.reduce((miss, w) => miss + w / h / (1 + (ttlS * readsPerS * w) / h), 0);
}

/** The catalog size (≤ max) whose expected miss share is closest to `missShare` at this read rate. */
export function catalogSizeFor(missShare: number, readsPerS: number, ttlS: number, max: number): number {
  let lo = 1;
  let hi = max;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (expectedMissShare(mid, readsPerS, ttlS) < missShare) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
