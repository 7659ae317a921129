// The consistency monitor against the real stack (an in-process app on a throwaway database, with its sales
// projection): each store is broken behind the service's back and a round reports it or heals it, as the
// node's /metrics shows. Rounds are run by hand (CONSISTENCY_CHECK_INTERVAL_MS=0: no timer).
import mysql, { type RowDataPacket } from 'mysql2/promise';
import t, { type Test } from 'tap';
import { socketPath } from '../../scripts/stack/mariadb.js';
import { projectionMatches, startApp, type RunningApp } from '../helpers/app.js';
import { uniq } from '../helpers/isolation.js';
import { replicaTotals } from '../helpers/database.js';
import { throwawayDatabase } from '../helpers/database.js';

/** An app on a database of its own: every product the monitor finds is this test's. */
async function monitored(t: Test): Promise<{ running: RunningApp; database: string }> {
  const db = await throwawayDatabase(t, 'consistency');
  const running = await startApp(t, { ...db.env, CONSISTENCY_CHECK_INTERVAL_MS: '0' }, { projection: true });
  return { running, database: db.endpoint.database };
}

/** A product with one confirmed purchase, replicated and projected: consistent everywhere. */
async function soldOnce(t: Test, running: RunningApp) {
  const id = await running.createProduct({ stock: 10 });
  const bought = await running.purchase(id, 2, uniq('user'), uniq('key'));
  t.equal(bought.status, 201);
  const version = Number(bought.body.stockVersion);
  await replicaTotals(running.infra, id, version);
  const { want, got } = await projectionMatches(running, id);
  t.same(got, want, 'the projection caught up');
  return { id, version, stock: 8 };
}

/** A gauge or counter's value on the node's /metrics. */
async function metric(running: RunningApp, name: string): Promise<number | undefined> {
  const text = (await running.get('/metrics')).body as string;
  const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return match ? Number(match[1]) : undefined;
}

t.test('a stale or wrong cached stock is healed and counted', async (t) => {
  const { running } = await monitored(t);
  const { id, version, stock } = await soldOnce(t, running);
  const first = await running.app.consistency.round();
  t.ok(first.checked.includes(id), 'the product is checked');
  t.equal(first.inconsistent.size, 0, 'nothing inconsistent');

  const key = `${running.config.redis.keyPrefix}stock:${id}`;
  const redis = running.infra.redis;
  await redis.set(key, `${version - 1}:999`, 'PX', 60_000); // stale: an older version
  const stale = await running.app.consistency.round();
  t.same(stale.healed, [id], 'the stale cache is healed');
  t.equal(await redis.get(key), `${version}:${stock}`, "Redis holds the primary's stock again");

  await redis.set(key, `${version + 5}:1`, 'PX', 60_000); // wrong: a version the primary never had
  const wrong = await running.app.consistency.round();
  t.same(wrong.healed, [id], 'the wrong cache is healed');
  t.equal(await redis.get(key), null, 'dropped (it would refuse every write-through until it expires)');

  t.equal(wrong.inconsistent.size, 0, 'a healed cache is not an inconsistency');
  t.equal(await metric(running, 'inventory_cache_drifts_healed_total'), 2);
  t.equal(await metric(running, 'inventory_inconsistent_products'), 0);
});

t.test('a replica row that disagrees at the same version is reported; an older one is lag', async (t) => {
  const { running, database } = await monitored(t);
  const { id, version, stock } = await soldOnce(t, running);
  // The replica is read-only for the app; root writes to it without binlogging the change.
  const replica = await mysql.createConnection({ socketPath: socketPath('replica'), user: 'root', database });
  t.teardown(() => replica.end());
  const [[row]] = await replica.query<RowDataPacket[]>('SELECT updated_at FROM products WHERE id = ?', [id]);
  const edit = (s: number, v: number) =>
    replica.query('UPDATE products SET stock = ?, version = ?, updated_at = ? WHERE id = ?', [
      s,
      v,
      row!['updated_at'],
      id,
    ]);
  await replica.query('SET SESSION sql_log_bin = 0');
  t.teardown(() => edit(stock, version));

  await edit(1234, version - 1);
  const lagging = await running.app.consistency.round();
  t.notOk(lagging.inconsistent.has(id), 'an older version on the replica is replication lag');

  await edit(stock + 5, version);
  const broken = await running.app.consistency.round();
  t.same(
    broken.inconsistent.get(id)?.problems.map((p) => p.store),
    ['replica'],
    'the same version with another stock is reported, against the replica',
  );
  t.equal(await metric(running, 'inventory_inconsistent_products'), 1);

  await edit(stock, version);
  const mended = await running.app.consistency.round();
  t.notOk(mended.inconsistent.has(id), 'consistent again once the row agrees');
  t.equal(await metric(running, 'inventory_inconsistent_products'), 0);
});

t.test('a dropped projection row and a broken ledger are reported', async (t) => {
  const { running } = await monitored(t);
  const { id } = await soldOnce(t, running);
  const primary = running.infra.mysql.primary;
  await primary.query('DELETE FROM product_sales WHERE product_id = ?', [id]);
  const once = await running.app.consistency.round();
  t.notOk(once.inconsistent.has(id), 'behind once is lag: the projection may still be catching up');
  const twice = await running.app.consistency.round();
  t.same(
    twice.inconsistent.get(id)?.problems.map((p) => p.store),
    ['projection'],
    'behind again with the same orders: reported',
  );
  t.equal(await metric(running, 'inventory_inconsistent_products'), 1);

  const other = await soldOnce(t, running);
  await primary.query('UPDATE products SET stock_received = stock_received + 3 WHERE id = ?', [other.id]);
  const ledger = await running.app.consistency.round();
  t.match(ledger.inconsistent.get(other.id)?.problems, [
    { store: 'ledger', detail: /received 13 - confirmed 2/ },
  ]);
  t.equal(await metric(running, 'inventory_inconsistent_products'), 2, 'both products counted');
});
