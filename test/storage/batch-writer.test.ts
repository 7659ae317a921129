// The product's batch write against a real MariaDB: one round trip that ends in its COMMIT, guards that
// refuse a stale or half-settled batch before the COMMIT, and no transaction left open on any path.
import { once } from 'node:events';
import net from 'node:net';
import mysql, { type Connection, type RowDataPacket } from 'mysql2/promise';
import t, { type Test } from 'tap';
import { WriteRolledBack, type BatchWrite, type NewOrder } from '../../src/domain/index.js';
import {
  decodeEvent,
  encodeEvent,
  OUTBOX_UNPACK_COLUMNS,
  storedOutboxRow,
  unpackOutbox,
} from '../../src/events/envelope.js';
import { cycleText } from '../../src/storage/batch-statements.js';
import {
  ER_GUARD,
  writeBatch,
  writeCycle,
  type CycleWriterOptions,
  type WriteBatchOptions,
} from '../../src/storage/batch-writer.js';
import { CommitPipeline, type CycleInfo } from '../../src/storage/commit-pipeline.js';
import { poolOptions, type PoolConnection } from '../../src/storage/mysql.js';
import { migrate } from '../../src/storage/migrate.js';
import type { MysqlEndpoint } from '../../src/config.js';
import { uniq } from '../helpers/isolation.js';
import { socketPath } from '../../scripts/stack/mariadb.js';
import { throwawayDatabase } from '../helpers/database.js';

const OPTIONS: WriteBatchOptions = {
  topics: { inventory: 't.inventory', orders: 't.orders', payments: 't.payments' },
  sagaDeadlineMs: 30_000,
  ownerEpoch: 7,
  strategy: 'actor',
  begin: true,
};

/** A TCP relay to MySQL whose server-to-client direction can be frozen: the client "pauses" (SIGSTOP). */
async function freezableRelay(t: Test, target: MysqlEndpoint) {
  let frozen = false;
  const held: Buffer[] = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => (frozen ? held.push(chunk) : client.write(chunk)));
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze: () => (frozen = true),
    heldBytes: () => held.reduce((n, b) => n + b.length, 0),
  };
}

async function connect(t: Test, endpoint: MysqlEndpoint, port = endpoint.port): Promise<Connection> {
  const conn = await mysql.createConnection({ ...poolOptions({ ...endpoint, port }, 1) });
  t.teardown(() => conn.destroy());
  return conn;
}

async function setup(t: Test) {
  const { endpoint } = await throwawayDatabase(t, 'batch');
  await migrate(endpoint);
  const observer = await connect(t, endpoint);
  const [created] = await observer.query<mysql.ResultSetHeader>(
    'INSERT INTO products (name, price_cents, stock) VALUES (?, ?, ?)',
    ['p', 500, 10],
  );
  return { endpoint, observer, productId: created.insertId };
}

const order = (productId: number, key = uniq('k')): NewOrder => ({
  id: uniq('order-'),
  productId,
  userId: 'u1',
  idempotencyKey: key,
  quantity: 1,
  unitPriceCents: 500,
});

const batchOf = (productId: number, version: number, stock: number, orders: NewOrder[]): BatchWrite => ({
  productId,
  expectedVersion: version,
  previousStock: stock,
  newStock: stock - orders.length,
  orders,
  settlements: [],
});

/** A saga's confirmation of `o` (saga version 0, paid). */
const confirmation = (o: NewOrder): BatchWrite['settlements'][number] => ({
  orderId: o.id,
  productId: o.productId,
  outcome: 'confirm',
  quantity: o.quantity,
  unitPriceCents: o.unitPriceCents,
  sagaVersion: 0,
  payment: { key: o.id, status: 'succeeded', amountCents: 500, at: new Date().toISOString() },
});

/** A commit pipeline on its own pool of `endpoint` (closed at teardown), and the cycles it reports. */
function pipelineOn(t: Test, endpoint: MysqlEndpoint, lanes: number, confirmLingerMs = 0) {
  const pool = mysql.createPool(poolOptions(endpoint, 4));
  t.teardown(() => pool.end());
  const cycles: CycleInfo[] = [];
  const pipeline = new CommitPipeline({
    primary: pool,
    writer: { topics: OPTIONS.topics, sagaDeadlineMs: OPTIONS.sagaDeadlineMs },
    ownerEpoch: () => 3,
    lanes,
    confirmLingerMs,
    onCycle: (info) => cycles.push(info),
  });
  return { pipeline, cycles };
}

async function row(conn: Connection, productId: number) {
  const [[r]] = await conn.query<RowDataPacket[]>('SELECT stock, version FROM products WHERE id = ?', [
    productId,
  ]);
  return { stock: Number(r?.['stock']), version: Number(r?.['version']) };
}

async function inTransaction(conn: Connection): Promise<number> {
  const [[r]] = await conn.query<RowDataPacket[]>('SELECT @@in_transaction AS open');
  return Number(r?.['open']);
}

const asPool = (conn: Connection) => conn as unknown as PoolConnection;

t.test(
  'a writer that freezes after sending its batch holds no lock: the batch commits without it',
  async (t) => {
    const { endpoint, observer, productId } = await setup(t);
    const relay = await freezableRelay(t, endpoint);
    const writer = await connect(t, endpoint, relay.port);
    relay.freeze(); // from here the writer never hears back, as a process paused right after sending
    const pending = writeBatch(asPool(writer), batchOf(productId, 0, 10, [order(productId)]), OPTIONS);
    pending.catch(() => undefined);

    const until = Date.now() + 5_000;
    while ((await row(observer, productId)).version === 0 && Date.now() < until)
      await new Promise((r) => setTimeout(r, 20));
    t.same(await row(observer, productId), { stock: 9, version: 1 }, 'the batch committed on the server');
    t.ok(relay.heldBytes() > 0, 'while its reply is still undelivered to the frozen writer');
    // The next owner's write is not blocked by the frozen writer: the row lock is free.
    const [locked] = await observer.query<RowDataPacket[]>(
      'SELECT version FROM products WHERE id = ? FOR UPDATE NOWAIT',
      [productId],
    );
    t.equal(Number(locked[0]?.['version']), 1, 'the row locks at once (NOWAIT) for someone else');
    await observer.query('ROLLBACK');
  },
);

t.test(
  'a stale version is refused before the COMMIT and leaves nothing, not even an open transaction',
  async (t) => {
    const { endpoint, observer, productId } = await setup(t);
    const writer = await connect(t, endpoint);
    const result = await writeBatch(asPool(writer), batchOf(productId, 3, 10, [order(productId)]), OPTIONS);
    t.same(result, { kind: 'version_conflict' });
    t.same(await row(observer, productId), { stock: 10, version: 0 }, 'the row is untouched');
    const [[orders]] = await observer.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM orders');
    const [[outbox]] = await observer.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM outbox');
    t.equal(Number(orders?.['n']), 0, 'no order');
    t.equal(Number(outbox?.['n']), 0, 'no event');
    t.equal(await inTransaction(writer), 0, 'the writer has no transaction open');
  },
);

t.test('a committed batch writes orders, sagas, steps and events under the owner epoch', async (t) => {
  const { endpoint, observer, productId } = await setup(t);
  const writer = await connect(t, endpoint);
  const orders = [order(productId), order(productId)];
  const result = await writeBatch(asPool(writer), batchOf(productId, 0, 10, orders), OPTIONS);
  t.equal(result.kind, 'committed');
  t.same(await row(observer, productId), { stock: 8, version: 1 });
  t.equal(await inTransaction(writer), 0, 'committed in the same round trip');
  const count = async (sql: string) =>
    Number((await observer.query<RowDataPacket[]>(sql, [productId]))[0][0]?.['n']);
  t.equal(await count('SELECT COUNT(*) AS n FROM orders WHERE product_id = ? AND owner_epoch = 7'), 2);
  t.equal(await count('SELECT COUNT(*) AS n FROM sagas WHERE product_id = ? AND owner_epoch = 7'), 2);
  t.equal(
    await count(
      'SELECT COUNT(*) AS n FROM saga_steps WHERE order_id IN (SELECT id FROM orders WHERE product_id = ?)',
    ),
    4,
    'reserve_inventory and create_order for each',
  );
  t.equal(
    await count('SELECT SUM(event_count) AS n FROM outbox WHERE event_key = ?'),
    5,
    '2 × 2 events + stock',
  );
  t.equal(
    await count('SELECT COUNT(*) AS n FROM outbox WHERE event_key = ?'),
    2,
    'packed: a row per topic (inventory, orders)',
  );
});

t.test('a hot batch of 1,100 orders commits: its events are packed into rows of at most 500', async (t) => {
  const { endpoint, observer } = await setup(t);
  const [created] = await observer.query<mysql.ResultSetHeader>(
    'INSERT INTO products (name, price_cents, stock) VALUES (?, ?, ?)',
    ['hot', 500, 5_000],
  );
  const productId = created.insertId;
  const writer = await connect(t, endpoint);
  const orders = Array.from({ length: 1_100 }, () => order(productId));
  const result = await writeBatch(asPool(writer), batchOf(productId, 0, 5_000, orders), OPTIONS);
  t.equal(result.kind, 'committed');
  const [rows] = await observer.query<RowDataPacket[]>(
    'SELECT topic, event_count FROM outbox WHERE event_key = ? ORDER BY id',
    [String(productId)],
  );
  t.same(
    rows.map((r) => [r['topic'], Number(r['event_count'])]),
    [
      ['t.inventory', 500],
      ['t.inventory', 500],
      ['t.inventory', 101],
      ['t.orders', 500],
      ['t.orders', 500],
      ['t.orders', 100],
    ],
    '1,100 inventory.reserved + the stock change; 1,100 order.created',
  );
  // Unpacked in id order, the orders topic gives every order's order.created, in the batch's order.
  const [payloads] = await observer.query<RowDataPacket[]>(
    `SELECT ${OUTBOX_UNPACK_COLUMNS} FROM outbox WHERE event_key = ? AND topic = 't.orders' ORDER BY id`,
    [String(productId)],
  );
  const events = payloads.flatMap((r) => unpackOutbox(storedOutboxRow(r)).map((e) => decodeEvent(e.value)));
  t.same(
    events.map((e) => [e.type, e.orderId]),
    orders.map((o) => ['order.created', o.id]),
    'the packed rows hold the batch events, in order',
  );
  const stored = payloads.reduce((n, r) => n + (r['payload'] as Buffer).length, 0);
  const plain = events.reduce((n, e) => n + encodeEvent(e).length, 0);
  t.ok(stored < plain / 2, `compressed: ${stored} bytes stored for ${plain} bytes of events`);
});

t.test('a repeated idempotency key rolls the whole batch back and returns the existing order', async (t) => {
  const { endpoint, observer, productId } = await setup(t);
  const writer = await connect(t, endpoint);
  const first = order(productId, 'same-key');
  t.equal((await writeBatch(asPool(writer), batchOf(productId, 0, 10, [first]), OPTIONS)).kind, 'committed');
  const again = { ...order(productId, 'same-key') };
  const result = await writeBatch(
    asPool(writer),
    batchOf(productId, 1, 9, [order(productId), again]),
    OPTIONS,
  );
  t.equal(result.kind, 'duplicates');
  if (result.kind === 'duplicates')
    t.same(
      result.existing.map((o) => o.orderId),
      [first.id],
    );
  t.same(await row(observer, productId), { stock: 9, version: 1 }, 'the other order of the batch is not in');
  t.equal(await inTransaction(writer), 0);
});

t.test('a settlement of a saga that already moved on is refused as settled elsewhere', async (t) => {
  const { endpoint, observer, productId } = await setup(t);
  const writer = await connect(t, endpoint);
  const o = order(productId);
  t.equal((await writeBatch(asPool(writer), batchOf(productId, 0, 10, [o]), OPTIONS)).kind, 'committed');
  // Someone else (a recovering node) cancelled it first.
  await observer.query("UPDATE sagas SET state = 'CANCELLED', version = version + 1 WHERE order_id = ?", [
    o.id,
  ]);
  await observer.query("UPDATE orders SET status = 'CANCELLED' WHERE id = ?", [o.id]);
  const settle: BatchWrite = {
    ...batchOf(productId, 1, 9, []),
    settlements: [confirmation(o)],
  };
  const result = await writeBatch(asPool(writer), settle, OPTIONS);
  t.same(result, { kind: 'settled_elsewhere', sagas: [{ orderId: o.id, status: 'CANCELLED' }] });
  t.same(await row(observer, productId), { stock: 9, version: 1 }, 'the product row is untouched');
  t.equal(await inTransaction(writer), 0);
});

/** Products `stocks.length` fresh products with these stocks, at version 0. */
async function products(observer: Connection, stocks: readonly number[]): Promise<number[]> {
  const ids: number[] = [];
  for (const stock of stocks) {
    const [created] = await observer.query<mysql.ResultSetHeader>(
      'INSERT INTO products (name, price_cents, stock) VALUES (?, ?, ?)',
      ['c', 500, stock],
    );
    ids.push(created.insertId);
  }
  return ids;
}

const CYCLE: CycleWriterOptions = { ...OPTIONS };

t.test('both forms of a round trip (plain statements, compound) refuse on a failed guard', async (t) => {
  const { endpoint, observer, productId } = await setup(t);
  const writer = await connect(t, endpoint);
  const stale = {
    sql: 'UPDATE products SET stock = stock - 1, version = version + 1 WHERE id = ? AND version = ?',
    params: [productId, 5],
    mustChange: { rows: 1 },
  };
  for (const compound of [false, true]) {
    const { text, params } = cycleText(['START TRANSACTION'], [stale], compound);
    t.equal(text.startsWith('BEGIN NOT ATOMIC'), compound);
    const err = await writer.query(text, params).then(
      () => undefined,
      (e: unknown) => e as { errno?: number },
    );
    t.equal(err?.errno, ER_GUARD, `${compound ? 'compound' : 'plain'}: ER_GUARD`);
    t.equal(await inTransaction(writer), 1, 'the transaction is left open, before its COMMIT');
    await writer.query('ROLLBACK');
    t.same(await row(observer, productId), { stock: 10, version: 0 }, 'nothing written');
  }
});

t.test('a cycle of many products commits in one transaction, one outbox row per topic', async (t) => {
  const { endpoint, observer } = await setup(t);
  const ids = await products(observer, [10, 10, 10, 10]);
  const writer = await connect(t, endpoint);
  const items = ids.map((id, i) => ({
    batch: batchOf(id, 0, 10, [order(id), order(id)]),
    ownerEpoch: 10 + i,
  }));
  // MariaDB runs the cycle as one compound statement and answers it once, after its COMMIT (as plain
  // statements, 9 here, each answer came on its own: the writer's process woke for several).
  const socket = (writer as unknown as { connection: { stream: net.Socket } }).connection.stream;
  let reads = 0;
  const count = () => (reads += 1);
  socket.on('data', count);
  const results = await writeCycle(asPool(writer), items, CYCLE);
  socket.off('data', count);
  t.equal(reads, 1, "the cycle's answer came in one piece");
  t.same(
    results.map((r) => r.kind),
    ['committed', 'committed', 'committed', 'committed'],
  );
  for (const [i, id] of ids.entries()) {
    t.same(await row(observer, id), { stock: 8, version: 1 }, `product ${i + 1} sold 2`);
    const [[epoch]] = await observer.query<RowDataPacket[]>('SELECT owner_epoch FROM products WHERE id = ?', [
      id,
    ]);
    t.equal(Number(epoch?.['owner_epoch']), 10 + i, 'each product under its own lease epoch');
  }
  const [rows] = await observer.query<RowDataPacket[]>(
    `SELECT topic, ${OUTBOX_UNPACK_COLUMNS} FROM outbox ORDER BY id`,
  );
  t.same(
    rows.map((r) => [r['topic'], r['event_type'], r['event_key']]),
    [
      ['t.inventory', 'keyed', '*'],
      ['t.orders', 'keyed', '*'],
    ],
    'the events of all four products in a row per topic',
  );
  // Unpacked, each event carries its own product's key, and each product's events keep their order.
  const entries = rows.flatMap((r) => unpackOutbox(storedOutboxRow(r)));
  t.equal(entries.length, 4 * 2 * 2 + 4, 'reserved + created per order, a stock change per product');
  for (const { key, value } of entries) t.equal(key, String(decodeEvent(value).productId));
  const inventory = unpackOutbox(storedOutboxRow(rows[0]!)).map((e) => decodeEvent(e.value));
  for (const id of ids) {
    t.same(
      inventory.filter((e) => e.productId === id).map((e) => e.type),
      ['inventory.reserved', 'inventory.reserved', 'stock.changed'],
      `product ${id}: its events in the order it made them`,
    );
  }
  t.equal(await inTransaction(writer), 0);
});

t.test(
  'one product fenced in a cycle of many: the others commit at once, the fenced one is not written',
  async (t) => {
    const { endpoint, observer } = await setup(t);
    const ids = await products(observer, [10, 10, 10]);
    // Another owner wrote the middle product behind the cycle's back.
    await observer.query('UPDATE products SET stock = 4, version = 5 WHERE id = ?', [ids[1]]);
    const writer = await connect(t, endpoint);
    const orders = ids.map((id) => order(id));
    const results = await writeCycle(
      asPool(writer),
      ids.map((id, i) => ({ batch: batchOf(id, 0, 10, [orders[i]!]), ownerEpoch: 1 })),
      CYCLE,
    );
    t.same(
      results.map((r) => r.kind),
      ['committed', 'version_conflict', 'committed'],
    );
    t.same(await row(observer, ids[0]!), { stock: 9, version: 1 });
    t.same(await row(observer, ids[1]!), { stock: 4, version: 5 }, 'the fenced row is as its owner left it');
    t.same(await row(observer, ids[2]!), { stock: 9, version: 1 });
    const [found] = await observer.query<RowDataPacket[]>('SELECT id FROM orders ORDER BY product_id');
    t.same(
      found.map((r) => r['id']),
      [orders[0]!.id, orders[2]!.id],
      'no order of the fenced product',
    );
    const [events] = await observer.query<RowDataPacket[]>(`SELECT ${OUTBOX_UNPACK_COLUMNS} FROM outbox`);
    const keys = new Set(events.flatMap((r) => unpackOutbox(storedOutboxRow(r)).map((e) => e.key)));
    t.notOk(keys.has(String(ids[1])), 'no event of the fenced product');
    t.equal(await inTransaction(writer), 0);
  },
);

t.test('a duplicate key and a saga settled elsewhere are split out; the rest commits', async (t) => {
  const { endpoint, observer } = await setup(t);
  const ids = await products(observer, [10, 10, 10]);
  const writer = await connect(t, endpoint);
  const bought = order(ids[0]!, 'bought-before');
  const pending = order(ids[2]!);
  t.same(
    (
      await writeCycle(
        asPool(writer),
        [
          { batch: batchOf(ids[0]!, 0, 10, [bought]), ownerEpoch: 1 },
          { batch: batchOf(ids[2]!, 0, 10, [pending]), ownerEpoch: 1 },
        ],
        CYCLE,
      )
    ).map((r) => r.kind),
    ['committed', 'committed'],
  );
  // A recovering node cancelled the third product's saga first.
  await observer.query("UPDATE sagas SET state = 'CANCELLED', version = version + 1 WHERE order_id = ?", [
    pending.id,
  ]);
  await observer.query("UPDATE orders SET status = 'CANCELLED' WHERE id = ?", [pending.id]);
  const confirm: BatchWrite = {
    ...batchOf(ids[2]!, 1, 9, []),
    settlements: [confirmation(pending)],
  };
  const fresh = order(ids[1]!);
  const results = await writeCycle(
    asPool(writer),
    [
      {
        batch: batchOf(ids[0]!, 1, 9, [{ ...order(ids[0]!, 'bought-before') }, order(ids[0]!)]),
        ownerEpoch: 1,
      },
      { batch: batchOf(ids[1]!, 0, 10, [fresh]), ownerEpoch: 1 },
      { batch: confirm, ownerEpoch: 1 },
    ],
    CYCLE,
  );
  t.same(
    results.map((r) => r.kind),
    ['duplicates', 'committed', 'settled_elsewhere'],
  );
  const [dup, , settled] = results;
  if (dup?.kind === 'duplicates')
    t.same(
      dup.existing.map((o) => o.orderId),
      [bought.id],
      'the order bought before',
    );
  t.same(settled, { kind: 'settled_elsewhere', sagas: [{ orderId: pending.id, status: 'CANCELLED' }] });
  t.same(await row(observer, ids[0]!), { stock: 9, version: 1 }, 'the duplicate batch wrote nothing');
  t.same(await row(observer, ids[1]!), { stock: 9, version: 1 }, 'the clean batch committed');
  t.same(await row(observer, ids[2]!), { stock: 9, version: 1 }, 'the settled batch wrote nothing');
  const [[count]] = await observer.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM orders WHERE id = ?', [
    fresh.id,
  ]);
  t.equal(Number(count?.['n']), 1);
  t.equal(await inTransaction(writer), 0);
});

t.test(
  'a duplicate key no lookup explains fails its batch alone, as rolled back; the rest commits',
  async (t) => {
    const { endpoint, observer } = await setup(t);
    const ids = await products(observer, [10, 10, 10]);
    const writer = await connect(t, endpoint);
    const first = order(ids[0]!);
    const [committed] = await writeCycle(
      asPool(writer),
      [{ batch: batchOf(ids[0]!, 0, 10, [first]), ownerEpoch: 1 }],
      CYCLE,
    );
    t.equal(committed?.kind, 'committed');
    // A fresh key, but the order id of an existing order: the idempotency lookup finds nothing to explain it.
    const clash = { ...order(ids[1]!), id: first.id };
    const results = await writeCycle(
      asPool(writer),
      [
        { batch: batchOf(ids[1]!, 0, 10, [clash]), ownerEpoch: 1 },
        { batch: batchOf(ids[2]!, 0, 10, [order(ids[2]!)]), ownerEpoch: 1 },
      ],
      CYCLE,
    );
    t.same(
      results.map((r) => r.kind),
      ['failed', 'committed'],
      'tried one by one: the culprit fails, the other commits',
    );
    const failed = results[0];
    t.ok(failed?.kind === 'failed' && failed.error instanceof WriteRolledBack, 'known to be rolled back');
    t.match(failed?.kind === 'failed' && String(failed.error), /rolled it back \(Duplicate entry/);
    t.same(await row(observer, ids[1]!), { stock: 10, version: 0 }, 'the culprit wrote nothing');
    t.same(await row(observer, ids[2]!), { stock: 9, version: 1 }, 'the other batch committed');
    t.equal(await inTransaction(writer), 0);
    // A round trip that never reached the server is a failure of unknown outcome, not a rollback.
    const { pipeline: failing } = pipelineOn(t, { ...endpoint, port: 1 }, 1);
    const lost = await failing.submit(batchOf(ids[1]!, 0, 10, [order(ids[1]!)]));
    t.ok(lost.kind === 'failed' && !(lost.error instanceof WriteRolledBack), 'outcome unknown');
  },
);

t.test(
  'the pipeline: what is ready in one turn shares a cycle; a key reused across products waits',
  async (t) => {
    const { endpoint, observer } = await setup(t);
    const ids = await products(observer, [10, 10, 10, 10, 10]);
    const { pipeline, cycles } = pipelineOn(t, endpoint, 2);
    // Products 1-4 in one turn; product 5's order reuses product 1's (user, key).
    const first = ids.slice(0, 4).map((id) => pipeline.submit(batchOf(id, 0, 10, [order(id, `k-${id}`)])));
    const reused = pipeline.submit(batchOf(ids[4]!, 0, 10, [order(ids[4]!, `k-${ids[0]}`)]));
    const results = await Promise.all([...first, reused]);
    t.same(
      results.map((r) => r.kind),
      ['committed', 'committed', 'committed', 'committed', 'duplicates'],
      'the reused key is answered with the order that has it, in a cycle after it',
    );
    t.same(
      cycles.map((c) => c.batches),
      [4, 1],
      'one cycle for the four, the fifth after',
    );
    t.same(await row(observer, ids[4]!), { stock: 10, version: 0 }, 'the reused key sold nothing');
    // The unreachable primary: every batch of the cycle fails; none is answered committed.
    const { pipeline: failing } = pipelineOn(t, { ...endpoint, port: 1 }, 1);
    const failed = await Promise.all(
      ids.slice(0, 2).map((id) => failing.submit(batchOf(id, 1, 9, [order(id)]))),
    );
    t.same(
      failed.map((r) => r.kind),
      ['failed', 'failed'],
    );
    t.same(await row(observer, ids[0]!), { stock: 9, version: 1 }, 'nothing written');
  },
);

t.test(
  'a confirmation outside the chain shares a cycle with its product batch; a fenced product fails alone',
  async (t) => {
    const { endpoint, observer } = await setup(t);
    const [hot, fenced] = await products(observer, [10, 10]);
    const writer = await connect(t, endpoint);
    const first = order(hot!);
    const other = order(fenced!);
    t.same(
      (
        await writeCycle(
          asPool(writer),
          [
            { batch: batchOf(hot!, 0, 10, [first]), ownerEpoch: 1 },
            { batch: batchOf(fenced!, 0, 10, [other]), ownerEpoch: 1 },
          ],
          CYCLE,
        )
      ).map((r) => r.kind),
      ['committed', 'committed'],
    );
    // Another writer moved the fenced product on; the hot product's next order, its first order's
    // confirmation (no product row) and a confirmation of the fenced product's order share one cycle.
    await observer.query('UPDATE products SET version = version + 1 WHERE id = ?', [fenced]);
    const second = order(hot!);
    const confirmOnly = (o: NewOrder): BatchWrite => ({
      ...batchOf(o.productId, 0, 0, []),
      settlements: [confirmation(o)],
    });
    const results = await writeCycle(
      asPool(writer),
      [
        { batch: batchOf(hot!, 1, 9, [second]), ownerEpoch: 1 },
        { batch: confirmOnly(first), ownerEpoch: 1, touchProduct: false },
        { batch: batchOf(fenced!, 1, 9, [order(fenced!)]), ownerEpoch: 1 },
        { batch: confirmOnly(other), ownerEpoch: 1, touchProduct: false },
      ],
      CYCLE,
    );
    t.same(
      results.map((r) => r.kind),
      ['committed', 'committed', 'version_conflict', 'committed'],
      'only the fenced product batch is refused; both confirmations commit',
    );
    t.same(await row(observer, hot!), { stock: 8, version: 2 }, 'the confirmation did not move the version');
    const [sagas] = await observer.query<RowDataPacket[]>(
      'SELECT order_id, state FROM sagas WHERE order_id IN (?) ORDER BY order_id',
      [[first.id, other.id]],
    );
    t.same(
      sagas.map((s) => s['state']),
      ['CONFIRMED', 'CONFIRMED'],
    );
    // The same confirmation again: its saga moved on, so it is answered as settled elsewhere.
    const again = await writeCycle(
      asPool(writer),
      [{ batch: confirmOnly(first), ownerEpoch: 1, touchProduct: false }],
      CYCLE,
    );
    t.same(again, [{ kind: 'settled_elsewhere', sagas: [{ orderId: first.id, status: 'CONFIRMED' }] }]);
    t.equal(await inTransaction(writer), 0);
  },
);

t.test(
  'the pipeline writes confirmations beside a product batch in flight, and only confirmations',
  async (t) => {
    const { endpoint, observer } = await setup(t);
    const [id] = await products(observer, [10]);
    const { pipeline, cycles } = pipelineOn(t, endpoint, 1);
    const first = order(id!);
    t.equal((await pipeline.commit(batchOf(id!, 0, 10, [first]))).kind, 'committed');
    // In one turn: the product's next batch and the first order's confirmation go in the same cycle.
    const [next, confirmed] = await Promise.all([
      pipeline.commit(batchOf(id!, 1, 9, [order(id!)])),
      pipeline.confirm([confirmation(first)], id!),
    ]);
    t.same([next.kind, confirmed.kind], ['committed', 'committed']);
    t.same(
      cycles.map((c) => c.batches),
      [1, 2],
      'the confirmation did not wait for a cycle of its own',
    );
    t.same(await row(observer, id!), { stock: 8, version: 2 });
    await t.rejects(
      pipeline.confirm([{ ...confirmation(first), outcome: 'cancel' }], id!),
      /only confirmations/,
    );
  },
);

t.test(
  'confirmations linger for a product batch to ride with, then go in a cycle of their own',
  async (t) => {
    const { endpoint, observer } = await setup(t);
    const [a, b] = await products(observer, [10, 10]);
    const { pipeline, cycles } = pipelineOn(t, endpoint, 2, 300);
    const first = order(a!);
    t.equal((await pipeline.commit(batchOf(a!, 0, 10, [first]))).kind, 'committed');
    const confirmed = pipeline.confirm([confirmation(first)], a!);
    await new Promise((r) => setTimeout(r, 50));
    t.equal(cycles.length, 1, 'the confirmation alone started no cycle within its linger');
    // Another product's batch: the waiting confirmation rides its cycle.
    const other = await pipeline.commit(batchOf(b!, 0, 10, [order(b!)]));
    t.same([other.kind, (await confirmed).kind], ['committed', 'committed']);
    t.same(
      cycles.map((c) => c.batches),
      [1, 2],
      'one cycle for the batch and the confirmation',
    );
    // Nothing else comes: the lone confirmation goes on its own once its linger ends.
    const second = order(a!);
    t.equal((await pipeline.commit(batchOf(a!, 1, 9, [second]))).kind, 'committed');
    t.equal((await pipeline.confirm([confirmation(second)], a!)).kind, 'committed');
    t.same(
      cycles.map((c) => c.batches),
      [1, 2, 1, 1],
    );
    const [sagas] = await observer.query<RowDataPacket[]>('SELECT state FROM sagas WHERE order_id IN (?)', [
      [first.id, second.id],
    ]);
    t.same(
      sagas.map((s) => s['state']),
      ['CONFIRMED', 'CONFIRMED'],
    );
  },
);

/**
 * Waits until a transaction waits for a row lock of `database`'s products. Read from InnoDB's status
 * (root sees every session): information_schema.innodb_trx here leaves out some waiting transactions.
 */
async function untilLockWait(t: Test, database: string): Promise<void> {
  const root = await mysql.createConnection({ socketPath: socketPath('primary'), user: 'root' });
  t.teardown(() => root.end());
  const waiting = new RegExp(`RECORD LOCKS [^\\n]* of table \`${database}\`\\.\`products\`[^\\n]* waiting`);
  for (const end = Date.now() + 10_000; Date.now() < end;) {
    const [[status]] = await root.query<RowDataPacket[]>('SHOW ENGINE INNODB STATUS');
    if (waiting.test(String(status?.['Status']))) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no lock wait on ${database} within 10 s`);
}

t.test('a cycle InnoDB picks as a deadlock victim is sent again at once and commits', async (t) => {
  const { endpoint, observer } = await setup(t);
  const [a, b] = await products(observer, [10, 10]);
  const { pipeline, cycles } = pipelineOn(t, endpoint, 1);
  // Another transaction, heavier than the cycle (200 rows written, so InnoDB rolls the cycle back), holds
  // product b; the cycle locks a, then waits for b; the other then asks for a: a deadlock.
  const other = await connect(t, endpoint);
  await other.query('START TRANSACTION');
  await other.query('INSERT INTO products (name, price_cents, stock) VALUES ?', [
    Array.from({ length: 200 }, () => ['heavy', 1, 1]),
  ]);
  await other.query('SELECT id FROM products WHERE id = ? FOR UPDATE', [b]);
  const writes = Promise.all([
    pipeline.commit(batchOf(a!, 0, 10, [order(a!)])),
    pipeline.commit(batchOf(b!, 0, 10, [order(b!)])),
  ]);
  await untilLockWait(t, endpoint.database);
  await other.query('SELECT id FROM products WHERE id = ? FOR UPDATE', [a]);
  await other.query('ROLLBACK');
  t.same(
    (await writes).map((r) => r.kind),
    ['committed', 'committed'],
  );
  t.same(
    cycles.map((c) => [c.batches, c.outcome]),
    [[2, 'committed']],
    'one cycle',
  );
  t.ok(cycles[0]!.lockRetries >= 1, `sent again after the deadlock (${cycles[0]!.lockRetries} time(s))`);
  t.same(
    [await row(observer, a!), await row(observer, b!)],
    [
      { stock: 9, version: 1 },
      { stock: 9, version: 1 },
    ],
  );
  const [[orders]] = await observer.query<RowDataPacket[]>(
    'SELECT COUNT(*) AS n FROM orders WHERE product_id IN (?)',
    [[a, b]],
  );
  t.equal(Number(orders?.['n']), 2, 'each order written once');
});

t.test(
  "while a cycle writes a product's row: its confirmations ride along with another cycle, or go alone once 16 wait; its next batch waits",
  async (t) => {
    const { endpoint, observer } = await setup(t);
    const [a, b] = await products(observer, [100, 10]);
    const { pipeline, cycles } = pipelineOn(t, endpoint, 3);
    const bought = Array.from({ length: 17 }, () => order(a!));
    t.equal((await pipeline.commit(batchOf(a!, 0, 100, bought))).kind, 'committed');
    // Product a's next cycle waits for a row lock held behind the pipeline's back.
    const holder = await connect(t, endpoint);
    await holder.query('START TRANSACTION');
    await holder.query('SELECT id FROM products WHERE id = ? FOR UPDATE', [a]);
    const next = pipeline.commit(batchOf(a!, 1, 83, [order(a!)]));
    await untilLockWait(t, endpoint.database);
    // One confirmation of a waits: it starts no cycle of its own for one confirmation...
    let confirmedOne = false;
    const one = pipeline.confirm([confirmation(bought[0]!)], a!).then((r) => ((confirmedOne = true), r));
    for (let i = 0; i < 5; i += 1) await new Promise((resolve) => setImmediate(resolve));
    t.notOk(confirmedOne, 'a lone confirmation waits');
    // ...and rides along with the next cycle that starts (b's batch), while a's cycle still waits.
    t.equal((await pipeline.commit(batchOf(b!, 0, 10, [order(b!)]))).kind, 'committed');
    t.equal((await one).kind, 'committed', "it committed with b's batch");
    // Sixteen waiting confirmations start a cycle of their own beside a's.
    const many = await Promise.all(bought.slice(1).map((o) => pipeline.confirm([confirmation(o)], a!)));
    t.ok(
      many.every((r) => r.kind === 'committed'),
      '16 confirmations committed on a free lane',
    );
    // a's next batch after that must wait for the cycle writing a's row.
    let laterAt = 0;
    const later = pipeline.commit(batchOf(a!, 2, 82, [order(a!)])).then((r) => {
      laterAt = cycles.length;
      return r;
    });
    for (let i = 0; i < 5; i += 1) await new Promise((resolve) => setImmediate(resolve));
    t.equal(laterAt, 0, "a's next batch waits while a's row is in a cycle");
    await holder.query('COMMIT');
    t.same([(await next).kind, (await later).kind], ['committed', 'committed']);
    t.same(
      cycles.map((c) => [c.batches, c.orders]),
      [
        [1, 17],
        [2, 1],
        [16, 0],
        [1, 1],
        [1, 1],
      ],
      "a's first batch; b's batch with a rider; 16 confirmations alone; a's two next batches, one after the other",
    );
    t.same(await row(observer, a!), { stock: 81, version: 3 });
  },
);

t.test('lanes writing the same products at once (new orders beside confirmations) never fail', async (t) => {
  const { endpoint, observer } = await setup(t);
  const ids = await products(observer, [100_000, 100_000, 100_000]);
  const { pipeline, cycles } = pipelineOn(t, endpoint, 3);
  const state = new Map(ids.map((id) => [id, { version: 0, stock: 100_000 }]));
  let previous: NewOrder[] = [];
  // Each round: the products' next batches of 10 orders each (one cycle), and while it is in flight the
  // confirmations of the round before, one by one, on the other lanes (the shape that deadlocked in InnoDB
  // under REPEATABLE READ in a CI burst: new orders and sagas beside confirmed ones of the same products).
  for (let round = 0; round < 30; round += 1) {
    const batches = ids.map((id) => {
      const s = state.get(id)!;
      const orders = Array.from({ length: 10 }, () => order(id));
      const write = pipeline.commit(batchOf(id, s.version, s.stock, orders));
      s.version += 1;
      s.stock -= orders.length;
      return { orders, write };
    });
    await new Promise((resolve) => setImmediate(resolve)); // their cycle is in flight
    const results = await Promise.all([
      ...batches.map((b) => b.write),
      ...previous.map((o) => pipeline.confirm([confirmation(o)], o.productId)),
    ]);
    t.ok(
      results.every((r) => r.kind === 'committed'),
      `round ${round}`,
    );
    previous = batches.flatMap((b) => b.orders);
  }
  const retries = cycles.reduce((n, c) => n + c.lockRetries, 0);
  t.comment(`${cycles.length} cycles, ${retries} sent again after a lock error`);
  t.notOk(
    cycles.some((c) => c.outcome === 'failed'),
    'no cycle failed',
  );
  for (const id of ids) t.same(await row(observer, id), state.get(id));
});
