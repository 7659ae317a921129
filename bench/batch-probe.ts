/**
 * Times one product batch transaction outside the service (the service's own `batchStatements` as one
 * multi-statement round trip) on the MySQL primary, in shapes that leave parts out; README "Batch probe".
 *   npx tsx bench/batch-probe.ts [orders per batch, default 47] [batches per shape, default 30]
 */
import { randomUUID } from 'node:crypto';
import type { ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import type { BatchWrite, NewOrder, Settlement } from '../src/domain/index.js';
import { batchStatements } from '../src/storage/batch-writer.js';
import { median } from './report.js';
import { connectMysql } from './stores.js';

const SHAPES = [
  'full',
  'no-outbox',
  'no-steps',
  'no-outbox-no-steps',
  'orders+sagas',
  'orders-only',
] as const;
type Shape = (typeof SHAPES)[number];
const TOPICS = {
  inventory: 'flashsale.inventory',
  orders: 'flashsale.orders',
  payments: 'flashsale.payments',
};
const INITIAL_STOCK = 10_000_000;

function keep(shape: Shape, sql: string): boolean {
  if (shape === 'orders-only') return /^(UPDATE products|INSERT INTO orders)/.test(sql);
  if (shape === 'orders+sagas') return /^(UPDATE products|INSERT INTO orders|INSERT INTO sagas)/.test(sql);
  if (/^INSERT INTO outbox/.test(sql) && (shape === 'no-outbox' || shape === 'no-outbox-no-steps'))
    return false;
  if (/^INSERT INTO saga_steps/.test(sql) && (shape === 'no-steps' || shape === 'no-outbox-no-steps'))
    return false;
  return true;
}

async function main(): Promise<void> {
  const perBatch = Number(process.argv[2] ?? 47);
  const rounds = Number(process.argv[3] ?? 30);
  if (!(Number.isInteger(perBatch) && perBatch > 0 && Number.isInteger(rounds) && rounds > 1))
    throw new Error('usage: npx tsx bench/batch-probe.ts [orders per batch] [batches per shape]');
  const conn = await connectMysql('primary', { multipleStatements: true });
  try {
    const [created] = await conn.query<ResultSetHeader>(
      "INSERT INTO products (name, price_cents, stock, purchase_strategy) VALUES ('batch probe', 1999, ?, 'actor')",
      [INITIAL_STOCK],
    );
    const productId = created.insertId;
    const binlogBytes = async (): Promise<number> => {
      const [rows] = await conn.query<RowDataPacket[]>("SHOW GLOBAL STATUS LIKE 'Binlog_bytes_written'");
      return Number(rows[0]?.['Value'] ?? NaN);
    };
    const order = (): NewOrder => {
      const id = randomUUID();
      return {
        id,
        productId,
        userId: 'probe',
        idempotencyKey: `probe-${id}`,
        quantity: 1,
        unitPriceCents: 1999,
      };
    };
    const ms: Record<Shape, number[]> = Object.fromEntries(SHAPES.map((s) => [s, []])) as never;
    const bytes: Record<Shape, number[]> = Object.fromEntries(SHAPES.map((s) => [s, []])) as never;
    let version = 0;
    let stock = INITIAL_STOCK;
    let unsettled: NewOrder[] = [];
    for (let i = 0; i < rounds * SHAPES.length; i += 1) {
      const shape = SHAPES[i % SHAPES.length]!;
      const settles = shape !== 'orders+sagas' && shape !== 'orders-only';
      const orders = Array.from({ length: perBatch }, order);
      const batch: BatchWrite = {
        productId,
        expectedVersion: version,
        previousStock: stock,
        newStock: stock - orders.length,
        orders,
        settlements: (settles ? unsettled : []).map((o): Settlement => ({
          orderId: o.id,
          productId,
          outcome: 'confirm',
          quantity: 1,
          unitPriceCents: 1999,
          sagaVersion: 0,
          payment: { key: o.id, status: 'succeeded', amountCents: 1999, at: new Date().toISOString() },
        })),
      };
      const statements = batchStatements(
        batch,
        { topics: TOPICS, sagaDeadlineMs: 30_000, ownerEpoch: 0, strategy: 'actor' },
        new Date(),
      ).filter((s) => keep(shape, s.sql));
      const before = await binlogBytes();
      const started = performance.now();
      // One round trip, as the service writes (without its guards, which cost no I/O).
      await conn.query(
        ['START TRANSACTION', ...statements.map((s) => s.sql), 'COMMIT'].join(';\n'),
        statements.flatMap((s) => s.params),
      );
      const took = performance.now() - started;
      const written = (await binlogBytes()) - before;
      version += 1;
      stock = batch.newStock;
      if (settles) unsettled = [];
      if (shape !== 'orders-only') unsettled = orders; // orders-only rows have no saga to settle
      if (i >= SHAPES.length) {
        // the first round warms up
        ms[shape].push(took);
        bytes[shape].push(written);
      }
    }
    await conn.query(
      "UPDATE sagas SET state = 'CONFIRMED', version = version + 1 WHERE product_id = ? AND state = 'PAYMENT_PENDING'",
      [productId],
    );
    await conn.query("UPDATE orders SET status = 'CONFIRMED' WHERE product_id = ? AND status = 'PENDING'", [
      productId,
    ]);
    process.stdout.write(
      `batch probe: product ${productId}, ${perBatch} orders per batch, median of ${rounds - 1}\n`,
    );
    for (const shape of SHAPES) {
      const settles = shape !== 'orders+sagas' && shape !== 'orders-only';
      const b = median(bytes[shape]);
      process.stdout.write(
        `${shape.padEnd(19)} ${settles ? `+ ${perBatch} confirmations` : 'no settlements'.padEnd(17)}  ` +
          `median ${median(ms[shape]).toFixed(1)} ms (min ${Math.min(...ms[shape]).toFixed(1)}, max ${Math.max(...ms[shape]).toFixed(1)})  ` +
          `binlog ${Math.round(b / 1024)} KiB per batch, ${Math.round(b / perBatch)} B per order\n`,
      );
    }
  } finally {
    await conn.end();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`batch-probe: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
