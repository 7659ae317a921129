// InventoryInconsistency in the stack's real Prometheus: a node process checking its products every second is scraped; a replica row is edited behind the
// service's back (the same version, another stock); the node's consistency monitor reports it, and the alert
// goes pending, then fires after its for: (1 minute) and reaches Alertmanager. About 70 s, nearly all of it
// waiting, so it runs beside other files: it stops nothing and edits only its own product's replica row.
import mysql from 'mysql2/promise';
import t from 'tap';
import { request } from 'undici';
import { socketPath } from '../../scripts/stack/mariadb.js';
import { startServer } from '../../scripts/stack/stack.js';
import { cluster } from '../helpers/cluster.js';
import { ALERTMANAGER, PROMETHEUS, getJson, until } from '../helpers/monitoring.js';

/** The rule's `for:` in docker/prometheus/alerts.yml; the local stack scrapes and evaluates every 2 s. */
const FOR_MS = 60_000;

/** Prometheus' own view of the node's InventoryInconsistency alert: pending, firing, or absent. */
async function ruleState(node: string): Promise<string | undefined> {
  const { data } = await getJson<{ data: { alerts: { labels: Record<string, string>; state: string }[] } }>(
    `${PROMETHEUS}/api/v1/alerts`,
  );
  return data.alerts.find((a) => a.labels.alertname === 'InventoryInconsistency' && a.labels.node === node)
    ?.state;
}

t.test('a replica row edited behind the service: InventoryInconsistency fires in Prometheus', async (t) => {
  await startServer('prometheus');
  await startServer('alertmanager');
  const name = 'obs-inconsistency';
  const { nodes, call, env } = await cluster(t, [name], { CONSISTENCY_CHECK_INTERVAL_MS: '1000' });
  const node = nodes.get(name)!;
  const created = await call(node, 'POST', '/products', { name: 'watched', priceCents: 100, stock: 10 });
  t.equal(created.status, 201);
  const id = created.body.id as number;
  const database = new URL((env as Record<string, string>)['MYSQL_PRIMARY_URL']!).pathname.slice(1);

  // Root writes to the read-only replica without binlogging it; the row is put back at the end.
  const replica = await mysql.createConnection({ socketPath: socketPath('replica'), user: 'root', database });
  t.teardown(() => replica.end());
  await replica.query('SET SESSION sql_log_bin = 0');
  await until(
    'the product on the replica',
    async () =>
      (await replica.query<mysql.RowDataPacket[]>('SELECT 1 FROM products WHERE id = ?', [id]))[0].length
        ? true
        : undefined,
    15_000,
  );
  t.teardown(() => replica.query('UPDATE products SET stock = 10 WHERE id = ?', [id]));
  await replica.query('UPDATE products SET stock = 7 WHERE id = ?', [id]);

  await until(
    "the node's monitor reports it",
    async () => {
      const text = await request(`${node.base}/metrics`).then((r) => r.body.text());
      return /^inventory_inconsistent_products 1$/m.test(text) ? true : undefined;
    },
    15_000,
  );
  t.pass('inventory_inconsistent_products 1 on the node');
  const pending = await until('InventoryInconsistency in Prometheus', () => ruleState(name), 30_000);
  t.equal(pending, 'pending', 'pending first: for: holds it back');
  await until(
    'InventoryInconsistency firing',
    async () => ((await ruleState(name)) === 'firing' ? true : undefined),
    FOR_MS + 20_000,
  );
  t.pass('firing after its for:');
  const sent = await until(
    'InventoryInconsistency in Alertmanager',
    async () => {
      const alerts = await getJson<{ labels: Record<string, string> }[]>(
        `${ALERTMANAGER}/api/v2/alerts?active=true&filter=${encodeURIComponent('alertname="InventoryInconsistency"')}&filter=${encodeURIComponent(`node="${name}"`)}`,
      );
      return alerts[0];
    },
    15_000,
  );
  t.match(sent.labels, { severity: 'critical', service: 'flash-sale', node: name }, 'Alertmanager has it');
});
