/** The bench's reads of the stores: counters, waits and orders by key (clients: scripts/stores.ts). */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { withMysql } from '../scripts/stores.js';
import { until } from '../scripts/until.js';
import type { Redis } from '../src/storage/redis.js';

export { connectStoreRedis, withMysql } from '../scripts/stores.js';

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
export function serverStatus(names: readonly string[]): Promise<Record<string, number>> {
  return withMysql(async (conn) => {
    const [rows] = await conn.query<RowDataPacket[]>('SHOW GLOBAL STATUS WHERE Variable_name IN (?)', [
      names,
    ]);
    return Object.fromEntries(rows.map((r) => [String(r['Variable_name']), Number(r['Value'])]));
  });
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

/** The (key, status) of every order of `keys` among these products' orders, 1,000 keys a query (n = 1 each). */
export async function ordersOfKeys(conn: Connection, keys: readonly string[], productIds: readonly number[]) {
  const found: { key: string; status: string; n: number }[] = [];
  for (let i = 0; i < keys.length; i += 1000) {
    const [rows] = await conn.query<RowDataPacket[]>(
      'SELECT idempotency_key AS k, status FROM orders WHERE idempotency_key IN (?) AND product_id IN (?)',
      [keys.slice(i, i + 1000), productIds],
    );
    for (const row of rows) found.push({ key: String(row['k']), status: String(row['status']), n: 1 });
  }
  return found;
}
