/**
 * Every store against the MySQL primary's truth, each check waiting (bounded) for its store: the replica's
 * rows, the Redis cache and each node's read, the Kafka events, the sales projection. The chaos run and the
 * bench's sellout check with these (`checkStores`).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool, request } from 'undici';
import { decodeEvent, type EventEnvelope } from '../src/events/envelope.js';
import { eventsOf, type EventsOf } from '../scripts/chaos/events.js';
import type { Cluster } from '../scripts/cluster.js';
import { until } from '../scripts/until.js';
import type { BenchTokens } from './load.js';
import { connectStoreRedis, query, readTruth, waitNone } from './stores.js';

type Mismatch = { readonly productId: number; readonly detail: string };
type Check = (pools: Pool[]) => Promise<Mismatch[]>;
type Says = readonly (string | false)[];

/** `check` on a pool of 4 connections to each of `urls` (closed after), every second until it finds nothing or
 * `timeoutMs` passed; the last findings (a check that throws finds that). */
async function settle(urls: readonly string[], timeoutMs: number, check: Check) {
  const pools = urls.map((url) => new Pool(url, { connections: 4 }));
  const found = () =>
    check(pools).catch((err: unknown) => [{ productId: 0, detail: `check failed: ${String(err)}` }]);
  const closeAll = () => Promise.all(pools.map((p) => p.close()));
  return (await until(found, (f) => f.length === 0, timeoutMs).finally(closeAll)).value;
}

/** The mismatches of each product: what `says` of it (false: nothing amiss). */
async function perProduct(ids: readonly number[], says: (id: number) => Promise<Says> | Says) {
  const found: Mismatch[] = [];
  for (const productId of ids)
    for (const detail of await says(productId)) if (detail !== false) found.push({ productId, detail });
  return found;
}

/** The rows the replica check compares, per product (`pid`), each as one `line`. */
const ROWS = [
  "SELECT id AS pid, CONCAT_WS(' ', 'p', stock, version, owner_epoch) AS line FROM products WHERE id IN (?) ORDER BY id",
  "SELECT product_id AS pid, CONCAT_WS(' ', 'o', id, status, quantity) AS line FROM orders WHERE product_id IN (?) ORDER BY id",
  "SELECT product_id AS pid, CONCAT_WS(' ', 's', order_id, state, version) AS line FROM sagas WHERE product_id IN (?) ORDER BY order_id",
];

/** Each product's products, orders and sagas rows as one server holds them, one line per row. */
async function rowsPerProduct(ids: readonly number[], role?: 'replica') {
  const out = new Map<number, string[]>(ids.map((id) => [id, []]));
  for (const sql of ROWS)
    for (const r of await query(sql, [ids], role)) out.get(Number(r['pid']))?.push(String(r['line']));
  return out;
}

/** Products whose products/orders/sagas rows differ between the primary and the replica (after catching up). */
const checkReplica = (ids: readonly number[], timeoutMs = 30_000) =>
  settle([], timeoutMs, async () => {
    const [primary, replica] = await Promise.all([rowsPerProduct(ids), rowsPerProduct(ids, 'replica')]);
    return perProduct(ids, (id) => {
      const [onPrimary, onReplica] = [primary.get(id)!, new Set(replica.get(id))];
      const missing = onPrimary.filter((l) => !onReplica.has(l));
      const differs = `replica differs: ${missing.length} primary rows not on it, e.g. ${missing[0] ?? '-'}`;
      return [(missing.length > 0 || onReplica.size !== onPrimary.length) && differs];
    });
  });

/** Products whose Redis stock (while it lives; not read without the nodes' prefix) or read on any node is
 * not the primary's (up to `timeoutMs`). */
async function checkCache(ids: readonly number[], cluster: StoresToCheck['cluster'], timeoutMs = 45_000) {
  const redis = await connectStoreRedis();
  const { redisPrefix, metricsUrls } = cluster;
  const check: Check = async (nodes) => {
    const truth = await readTruth(ids);
    const keys = ids.map((id) => `${redisPrefix}stock:${id}`);
    const cached = redisPrefix === undefined ? [] : await redis.mget(...keys);
    return perProduct(ids, async (id) => {
      const [want, raw] = [truth.get(id)!, cached[ids.indexOf(id)]];
      const primary = `${want.version}:${want.stock}`;
      const reads = nodes.map(async (node, k) => {
        const res = await node.request({ path: `/products/${id}`, method: 'GET' });
        const text = await res.body.text();
        const body = res.statusCode === 200 ? (JSON.parse(text) as typeof want) : undefined;
        const tier = String(res.headers['x-cache-tier']);
        const read = body ? `${body.version}:${body.stock} (${tier})` : `status ${res.statusCode}`;
        const agrees = body?.stock === want.stock && body.version === want.version;
        return !agrees && `${metricsUrls[k]} reads ${read}, primary ${primary}`;
      });
      const redisAgrees = raw == null || raw === primary;
      return [!redisAgrees && `Redis holds ${raw}, primary ${primary}`, ...(await Promise.all(reads))];
    });
  };
  return settle(metricsUrls, timeoutMs, check).finally(() => redis.disconnect());
}

/** The projection's figures (`GET /stats/products/:id`) and how they are counted from the orders. */
const PROJECTION = {
  confirmedOrders: "SUM(status = 'CONFIRMED')",
  soldQuantity: "COALESCE(SUM(IF(status = 'CONFIRMED', quantity, 0)), 0)",
  revenueCents: "COALESCE(SUM(IF(status = 'CONFIRMED', quantity * unit_price_cents, 0)), 0)",
  cancelledOrders: "SUM(status = 'CANCELLED')",
  cancelledQuantity: "COALESCE(SUM(IF(status = 'CANCELLED', quantity, 0)), 0)",
};

/** Products whose sales projection (`GET /stats/products/:id` as an admin) is not the primary's orders. */
const checkProjection = (url: string, admin: AdminToken, ids: readonly number[], timeoutMs = 60_000) =>
  settle([url], timeoutMs, async ([http]) => {
    const columns = Object.entries(PROJECTION).map(([k, sql]) => `${sql} AS ${k}`);
    const sql = `SELECT product_id, ${columns.join(', ')} FROM orders WHERE product_id IN (?) GROUP BY product_id`;
    const want = new Map((await query(sql, [ids])).map((r) => [Number(r['product_id']), r]));
    return perProduct(ids, async (id) => {
      const headers = admin.adminHeaders;
      const res = await http!.request({ path: `/stats/products/${id}`, method: 'GET', headers });
      const got = (await res.body.json()) as Record<string, unknown>;
      const expected = (k: string) => Number(want.get(id)?.[k] ?? 0);
      const off = Object.keys(PROJECTION).filter((k) => Number(got[k] ?? 0) !== expected(k));
      const says = off.map((k) => `${k} ${String(got[k])} vs MySQL ${expected(k)}`).join(', ');
      return [(res.statusCode !== 200 || off.length > 0) && `projection ${res.statusCode}: ${says}`];
    });
  });

/** Each product's actor: a restock of 1 answers with the actor's own stock, which must be the primary's + 1
 * (the probe's unit then counts in every later check). */
const checkActors = (url: string, admin: AdminToken, ids: readonly number[]) =>
  perProduct(ids, async (id) => {
    const before = (await readTruth([id])).get(id)?.stock;
    const headers = { 'content-type': 'application/json', ...admin.adminHeaders };
    const body = JSON.stringify({ quantity: 1 });
    const res = await request(`${url}/products/${id}/restock`, { method: 'POST', headers, body });
    const { stock } = (await res.body.json()) as { stock?: number };
    const ok = res.statusCode === 200 && before !== undefined && stock === before + 1;
    return [!ok && `restock of 1 answered ${res.statusCode}, stock ${stock}; primary ${before}`];
  });

/** The events of `topics` (from `sinceMs`, else the start) to today's high watermarks, of `key` only if given. */
async function readEvents(
  { kafka, admin, topics }: Pick<EventsOf, 'kafka' | 'admin' | 'topics'>,
  { sinceMs, key, strict }: { sinceMs: number | undefined; key: string | undefined; strict: boolean },
): Promise<EventEnvelope[]> {
  const remaining = new Map<string, number>(); // topic/partition → the last offset to read
  const starts: { topic: string; partition: number; offset: string }[] = [];
  for (const topic of topics) {
    const since = sinceMs === undefined ? [] : await admin.fetchTopicOffsetsByTimestamp(topic, sinceMs);
    for (const p of await admin.fetchTopicOffsets(topic)) {
      const start = Number(since.find((s) => s.partition === p.partition)?.offset ?? p.low);
      if (start < 0 || start >= Number(p.high)) continue;
      remaining.set(`${topic}/${p.partition}`, Number(p.high) - 1);
      starts.push({ topic, partition: p.partition, offset: String(start) });
    }
  }
  const events: EventEnvelope[] = [];
  if (remaining.size === 0) return events;
  const groupId = `bench-check-${process.pid}-${Date.now()}`;
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 500 });
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [...topics], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: ({ topic, partition, message }) => {
        const at = `${topic}/${partition}`;
        const last = remaining.get(at);
        if (last === undefined || Number(message.offset) > last) return Promise.resolve();
        if (message.value !== null && (key === undefined || message.key?.toString() === key))
          events.push(decodeEvent(message.value));
        if (Number(message.offset) >= last) remaining.delete(at);
        if (remaining.size === 0) done();
        return Promise.resolve();
      },
    });
    for (const start of starts) consumer.seek(start);
    const timeout = sleep(90_000).then(() => {
      if (strict)
        throw new Error(`Kafka read-back incomplete after 90 s (${remaining.size} partitions short)`);
    });
    await Promise.race([finished, timeout]);
  } finally {
    await consumer.disconnect().catch(() => undefined);
    await admin.deleteGroups([groupId]).catch(() => undefined);
  }
  return events;
}

/** Each order event, the orders it must tell of (all, or of a status), and what they are called. */
const ORDER_EVENTS = [
  ['order.created', undefined, 'orders'],
  ['order.confirmed', 'CONFIRMED', 'confirmed'],
  ['order.cancelled', 'CANCELLED', 'cancelled'],
] as const;

/** Per product, the deduplicated events against the primary's orders, and the last stock.changed against its stock. */
async function compareEvents(events: readonly EventEnvelope[], ids: readonly number[]) {
  const unique = [...new Map(events.map((e) => [e.eventId, e])).values()];
  const orders = await query('SELECT product_id, id, status FROM orders WHERE product_id IN (?)', [ids]);
  const truth = await readTruth(ids);
  const mismatches = await perProduct(ids, (productId) => {
    const mine = unique.filter((e) => e.productId === productId);
    const rows = orders.filter((r) => Number(r['product_id']) === productId);
    const problems = ORDER_EVENTS.map(([type, status, what]) => {
      const got = mine.filter((e) => e.type === type).map((e) => e.orderId ?? '');
      const want = rows.filter((r) => !status || r['status'] === status).map((r) => String(r['id']));
      // No event told twice, and the same orders.
      const told = new Set(got);
      const same = told.size === got.length && got.length === want.length && want.every((id) => told.has(id));
      return !same && `${type} ${got.length} vs ${want.length} ${what}`;
    });
    const stock = mine
      .filter((e): e is EventEnvelope<'stock.changed'> => e.type === 'stock.changed')
      .sort((a, b) => b.data.version - a.data.version)[0];
    const [told, want] = [stock && `${stock.data.version}:${stock.data.stock}`, truth.get(productId)];
    const primary = `${want?.version}:${want?.stock}`;
    const last = `last stock.changed ${told ?? 'none'} vs primary ${primary}`;
    const all = [...problems, told !== primary && last];
    const problem = all.filter((p) => p !== false).join('; ');
    return [problem !== '' && problem];
  });
  return { mismatches, events: unique.length, duplicates: events.length - unique.length };
}

/** The headers of an admin's requests (`GET /stats`, restocks). */
type AdminToken = Pick<BenchTokens, 'adminHeaders'>;

export interface StoresToCheck {
  readonly productIds: readonly number[];
  /** Its url: where the projection is read (`GET /stats`, as `admin`); its nodes: each one's read and Redis prefix. */
  readonly cluster: Pick<Cluster, 'url' | 'redisPrefix' | 'metricsUrls'>;
  readonly admin: AdminToken;
  /** The actor checked too (`checkActors`, first: it sells one unit back). */
  readonly actor?: boolean;
  /** The topics to read back: a run's own (`ownEvents`: from their start, once the outbox sent their rows),
   * else the stack's from `sinceMs`, of the products' keys. */
  readonly events: (EventsOf & { readonly own: true }) | { readonly own: false; readonly sinceMs: number };
  /** How long each store may take to agree, ms (default: each check's own). */
  readonly timeoutMs?: number;
}

/** Every store against the primary, for these products: the mismatches per store, and the events read back. */
export async function checkStores(s: StoresToCheck) {
  const { productIds, timeoutMs, events: from } = s;
  const actor = s.actor === true ? await checkActors(s.cluster.url, s.admin, productIds) : [];
  const replica = await checkReplica(productIds, timeoutMs);
  const cache = await checkCache(productIds, s.cluster, timeoutMs);
  const events = from.own ? from : eventsOf();
  const unsent = from.own ? await waitOutboxDrained(events.topics) : 0;
  if (!from.own) await events.admin.connect();
  let read = { events: 0, duplicates: 0 };
  // One product's events are keyed by its id: a shared topic is read for that key only.
  const key = !from.own && productIds.length === 1 ? String(productIds[0]) : undefined;
  const options = { sinceMs: from.own ? undefined : from.sinceMs, key, strict: from.own };
  const compare = async () => (read = await compareEvents(await readEvents(events, options), productIds));
  const disconnect = () => (from.own ? undefined : events.admin.disconnect().catch(() => undefined));
  const kafka = await settle([], timeoutMs ?? 60_000, async () => (await compare()).mismatches).finally(
    disconnect,
  );
  if (unsent > 0) kafka.push({ productId: 0, detail: `${unsent} outbox rows never sent` });
  const projection = await checkProjection(s.cluster.url, s.admin, productIds, timeoutMs);
  return { actor, replica, cache, kafka, projection, events: read.events, duplicates: read.duplicates };
}

/** The outbox rows of `topics` still unsent once none is left or `timeoutMs` passed. */
const waitOutboxDrained = (topics: readonly string[], timeoutMs = 60_000): Promise<number> =>
  waitNone('SELECT COUNT(*) AS n FROM outbox WHERE topic IN (?) AND sent_at IS NULL', [topics], timeoutMs);
