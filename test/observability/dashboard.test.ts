// The operator's dashboard (docker/prometheus/consoles/flash-sale.html) as a browser shows it: a node process
// under light load (reads, purchases, one product selling out) is scraped by the stack's Prometheus, and
// headless Chromium loads the page from Prometheus for that node; every panel must show figures of this
// traffic, not just render. About 25 s.
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { startServer } from '../../scripts/stack/stack.js';
import { uniq } from '../helpers/isolation.js';
import { dumpDom } from '../helpers/chromium.js';
import { cluster } from '../helpers/cluster.js';
import { PROMETHEUS, getJson, until } from '../helpers/monitoring.js';
import { asUser } from '../helpers/tokens.js';

interface Panel {
  state: string;
  /** The figures by name (their data-value). */
  figures: Map<string, number>;
  /** Table rows, each cell's text. */
  rows: string[][];
}

const PANELS = [
  'throughput',
  'latency-reads',
  'latency-purchases',
  'errors',
  'cache',
  'hot-products',
  'sagas',
  'nodes',
  'alerts',
];

/** The panels of the dashboard's DOM, by section id. */
function panelsOf(html: string): Map<string, Panel> {
  const out = new Map<string, Panel>();
  for (const [, id, attrs, body] of html.matchAll(/<section id="([\w-]+)"([^>]*)>([\s\S]*?)<\/section>/g)) {
    const figures = new Map<string, number>();
    for (const [, value, name] of body!.matchAll(/<output data-value="([^"]*)" name="([^"]*)"/g))
      figures.set(name!, Number(value));
    const rows = [...body!.matchAll(/<tr data-row="">([\s\S]*?)<\/tr>/g)].map(([, row]) =>
      [...row!.matchAll(/<td[^>]*>([^<]*)<\/td>/g)].map(([, cell]) => cell!),
    );
    out.set(id!, { state: /data-state="(\w+)"/.exec(attrs!)?.[1] ?? 'none', figures, rows });
  }
  return out;
}

/** One instant query's first value; undefined when it has none. */
async function instant(expr: string): Promise<number | undefined> {
  const { data } = await getJson<{ data: { result: { value: [number, string] }[] } }>(
    `${PROMETHEUS}/api/v1/query?query=${encodeURIComponent(expr)}`,
  );
  const value = Number(data.result[0]?.value[1]);
  return Number.isFinite(value) ? value : undefined;
}

t.test('every panel of the dashboard shows figures of a node under load', async (t) => {
  await startServer('prometheus');
  const name = uniq('dash-');
  const { nodes, call } = await cluster(t, [name]);
  const node = nodes.get(name)!;
  const plenty = await call(node, 'POST', '/products', { name: 'plenty', priceCents: 100, stock: 100_000 });
  const scarce = await call(node, 'POST', '/products', { name: 'scarce', priceCents: 100, stock: 20 });
  t.equal(plenty.status, 201);
  t.equal(scarce.status, 201);
  const ids = [plenty.body.id as number, scarce.body.id as number];

  // About 80 reads and 40 purchases a second until the test ends; the scarce product sells out at once.
  const buyers = await Promise.all([1, 2, 3, 4].map((i) => asUser(`dash-buyer-${i}`)));
  let loading = true;
  const statuses = new Map<number, number>();
  const count = (status: number) => statuses.set(status, (statuses.get(status) ?? 0) + 1);
  const load = (async () => {
    for (let round = 0; loading; round += 1) {
      const buyer = { ...buyers[round % buyers.length]! };
      await Promise.all([
        ...[0, 1, 0, 1].map((i) => call(node, 'GET', `/products/${ids[i]}`).then((r) => count(r.status))),
        ...ids.map((productId) =>
          call(
            node,
            'POST',
            '/purchases',
            { productId, quantity: 1 },
            {
              ...buyer,
              'idempotency-key': uniq('k'),
            },
          ).then((r) => count(r.status)),
        ),
      ]);
      await sleep(50);
    }
  })();
  t.teardown(async () => {
    loading = false;
    await load;
  });

  // Prometheus has scraped the node's traffic (two scrapes for a rate) before the browser looks.
  const on = `node="${name}"`;
  await until(
    'the node scraped with orders and confirmed sagas',
    async () =>
      ((await instant(`sum(rate(purchase_outcomes_total{${on},outcome="created"}[1m]))`)) ?? 0) > 0 &&
      ((await instant(`sum(rate(saga_duration_seconds_count{${on},status="CONFIRMED"}[1m]))`)) ?? 0) > 0 &&
      ((await instant(`sum(rate(purchase_outcomes_total{${on},outcome="out_of_stock"}[1m]))`)) ?? 0) > 0 &&
      (await instant(`hot_product_id{${on},rank="1"}`)) !== undefined
        ? true
        : undefined,
    30_000,
  );
  t.ok((statuses.get(201) ?? 0) > 0 && (statuses.get(409) ?? 0) > 0, 'purchases confirmed and refused');

  const url = `${PROMETHEUS}/consoles/flash-sale.html?node=${encodeURIComponent(name)}`;
  let panels = new Map<string, Panel>();
  // Looked at again (up to 3 times) while a panel is empty or a probe of /ready has not answered yet.
  for (let attempt = 1; attempt <= 3; attempt += 1) {
    panels = panelsOf(await dumpDom(url));
    const ready = panels.get('nodes')?.rows[0]?.[2] === 'ready';
    if (ready && PANELS.every((id) => panels.get(id)?.state === 'ok')) break;
    t.comment(`attempt ${attempt}: ${PANELS.map((id) => `${id}=${panels.get(id)?.state}`).join(' ')}`);
    await sleep(2_000);
  }
  for (const id of PANELS) t.equal(panels.get(id)?.state, 'ok', `${id} has data`);
  const figure = (id: string, key: string) => panels.get(id)?.figures.get(key) ?? NaN;

  t.ok(figure('throughput', 'requests') > 0, `requests/s ${figure('throughput', 'requests')}`);
  t.ok(figure('throughput', 'orders') > 0, `orders/s ${figure('throughput', 'orders')}`);
  t.ok(figure('throughput', 'confirmed') > 0, `confirmed/s ${figure('throughput', 'confirmed')}`);
  for (const id of ['latency-reads', 'latency-purchases']) {
    const [p50, p95, p99] = ['p50', 'p95', 'p99'].map((p) => figure(id, p));
    t.ok(p50! > 0 && p50! <= p95! && p95! <= p99!, `${id}: p50 ${p50} ≤ p95 ${p95} ≤ p99 ${p99} ms`);
  }
  const failures = figure('errors', 'failure-rate');
  t.ok(failures >= 0 && failures <= 1, `failure rate ${failures}`);
  const reasons = panels.get('errors')!.rows.map((row) => row[0]);
  t.ok(reasons.includes('purchase out_of_stock'), `refusals by reason: ${reasons.join(', ')}`);
  t.ok(reasons.includes('HTTP 409'), 'HTTP statuses by code');
  const hit = figure('cache', 'hit-rate');
  t.ok(hit >= 0 && hit <= 1, `cache hit rate ${hit}`);
  t.same(
    panels.get('cache')!.rows.map((row) => row[0]),
    ['memory', 'redis', 'replica', 'primary'],
    'a share per tier',
  );
  const hot = panels.get('hot-products')!.rows;
  t.ok(
    hot.some((row) => row[0] === `#${ids[0]}` && Number(row[1]) > 0 && row[3] === name),
    `the product selling is listed with its stock and owner: ${JSON.stringify(hot)}`,
  );
  t.ok(
    hot.some((row) => row[0] === `#${ids[1]}` && row[1] === '0'),
    'the sold-out product shows stock 0',
  );
  t.ok(figure('sagas', 'saga-age') >= 0 && figure('sagas', 'outbox-age') >= 0, 'saga and outbox ages');
  t.ok(
    panels.get('sagas')!.rows.some((row) => row[0] === 'CONFIRMED' && Number(row[1]) > 0),
    'sagas confirmed per second',
  );
  t.same(
    panels.get('nodes')!.rows.map((row) => row.slice(0, 4)),
    [[name, 'up', 'ready', '256']],
    'the node: up, ready, holding every shard',
  );
  t.ok(figure('alerts', 'firing') >= 0, 'alerts firing counted');
});
