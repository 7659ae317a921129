import type { Pool, PoolConnection, ResultSetHeader, RowDataPacket } from '../storage/mysql.js';
import { OUTBOX_UNPACK_COLUMNS, storedOutboxRow, unpackOutbox } from './envelope.js';
import type { OutboxRow } from './outbox-producer.js';

/**
 * The oldest unsent rows of `topics`, in id order, up to `batchSize` events (at least one row, however
 * packed), each with its events unpacked.
 */
export async function readUnsentRows(
  conn: PoolConnection,
  topics: readonly string[],
  batchSize: number,
): Promise<OutboxRow[]> {
  // Each topic's oldest unsent rows from its own ordered range of (sent_at, topic, id), merged in id order:
  // rows of other topics (no relay of this service publishes them) are never read. Forced: for ORDER BY id
  // LIMIT the optimizer picks a PRIMARY scan, which reads every kept sent row.
  const perTopic = `(SELECT id, topic, ${OUTBOX_UNPACK_COLUMNS} FROM outbox FORCE INDEX (idx_outbox_unsent_topic)
      WHERE sent_at IS NULL AND topic = ? ORDER BY id LIMIT ?)`;
  const [rows] = await conn.query<RowDataPacket[]>(
    `SELECT * FROM (${topics.map(() => perTopic).join(' UNION ALL ')}) AS unsent ORDER BY id LIMIT ?`,
    [...topics.flatMap((topic) => [topic, batchSize]), batchSize],
  );
  const taken: OutboxRow[] = [];
  let events = 0;
  for (const r of rows) {
    const count = Number(r['event_count']);
    if (taken.length > 0 && events + count > batchSize) break;
    events += count;
    taken.push({ id: Number(r['id']), topic: String(r['topic']), events: unpackOutbox(storedOutboxRow(r)) });
  }
  return taken;
}

/** Unsent rows (all topics), estimated from the id span: MIN and MAX come straight from the (sent_at, id) index. */
export async function unsentSpan(conn: PoolConnection): Promise<number> {
  const [rows] = await conn.query<RowDataPacket[]>(
    'SELECT MIN(id) AS lo, MAX(id) AS hi FROM outbox WHERE sent_at IS NULL',
  );
  const lo = rows[0]?.['lo'] as number | null | undefined;
  const hi = rows[0]?.['hi'] as number | null | undefined;
  return lo === null || lo === undefined ? 0 : Number(hi) - Number(lo) + 1;
}

/** Deletes up to `limit` rows of `topics` sent more than `retentionMs` ago; how many it deleted. */
export async function deleteSent(
  conn: PoolConnection,
  topics: readonly string[],
  retentionMs: number,
  limit: number,
): Promise<number> {
  const [result] = await conn.query<ResultSetHeader>(
    `DELETE FROM outbox WHERE sent_at < NOW(3) - INTERVAL ? MICROSECOND AND topic IN (?) LIMIT ?`,
    [retentionMs * 1000, topics, limit],
  );
  return result.affectedRows;
}

/** Age of the oldest unsent outbox row of `topics`, seconds (0 when none waits): the relay's lag. */
export async function outboxOldestAgeSeconds(
  primary: Pool,
  topics: Readonly<Record<string, string>>,
): Promise<number> {
  // The unsent rows of this service's topics (the backlog: few) come from the (sent_at, topic, id) index;
  // then one row by its key. Only this service's topics: the relay publishes nothing else.
  const [rows] = await primary.query<RowDataPacket[]>(
    `SELECT TIMESTAMPDIFF(MICROSECOND, created_at, NOW(3)) AS age_us FROM outbox
      WHERE id = (SELECT MIN(id) FROM outbox WHERE sent_at IS NULL AND topic IN (?))`,
    [[...new Set(Object.values(topics))]],
  );
  return rows[0] === undefined ? 0 : Math.max(0, Number(rows[0]['age_us']) / 1e6);
}
