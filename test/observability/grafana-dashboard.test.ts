// Production's Grafana dashboard (docker/grafana/flash-sale.json) stays the local console's twin
// (docker/prometheus/consoles/flash-sale.html, whose panels test/observability/dashboard.test.ts sees with
// data): the same panels, the same metrics, the provisioned data source, and every query accepted by the
// stack's real Prometheus.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { parse } from 'yaml';
import { startServer } from '../../scripts/stack/stack.js';
import { PROMETHEUS, getJson } from '../helpers/monitoring.js';

interface Target {
  expr: string;
  datasource: { uid: string };
}
interface Dashboard {
  uid: string;
  panels: { title: string; datasource: { uid: string }; targets: Target[] }[];
  templating: { list: { name: string; query: { query: string } }[] };
}

const dashboard = JSON.parse(readFileSync('docker/grafana/flash-sale.json', 'utf8')) as Dashboard;
const page = readFileSync('docker/prometheus/consoles/flash-sale.html', 'utf8');
const exprs = dashboard.panels.flatMap((p) => p.targets.map((target) => target.expr));

/** Metric names an expression reads: identifiers right before a selector `{`. */
const metricsOf = (text: string): Set<string> =>
  new Set([...text.matchAll(/\b([a-zA-Z_:][\w:]*)(?=\{|\$\{sel\()/g)].map((m) => m[1]!));

const decode = (html: string) =>
  html.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&').trim();

t.test('the same panels and metrics as the console page', async (t) => {
  const consoleTitles = [...page.matchAll(/<h2>([^<]*)<\/h2>/g)].map((m) => decode(m[1]!));
  t.ok(consoleTitles.length >= 9, `${consoleTitles.length} console panels`);
  t.same(
    dashboard.panels.map((p) => p.title),
    consoleTitles,
    'one Grafana panel per console panel, in the same order',
  );
  // The page's own names: before a selector, or a quoted list (the hottest products' three gauges).
  const consoleMetrics = new Set([
    ...metricsOf(page),
    ...[...page.matchAll(/'([a-z]\w*)'/g)].map((m) => m[1]!),
  ]);
  for (const metric of metricsOf(exprs.join('\n')))
    t.ok(consoleMetrics.has(metric), `${metric} is read by the console page too`);
});

t.test('every panel uses the provisioned Prometheus data source', async (t) => {
  const provisioned = parse(
    readFileSync('docker/grafana/provisioning/datasources/prometheus.yml', 'utf8'),
  ) as {
    datasources: { uid: string; url: string }[];
  };
  const uid = provisioned.datasources[0]!.uid;
  for (const panel of dashboard.panels) {
    t.equal(panel.datasource.uid, uid, `${panel.title}: data source ${uid}`);
    for (const target of panel.targets) t.equal(target.datasource.uid, uid);
  }
  t.equal(provisioned.datasources[0]!.url, 'http://prometheus:9090', "Compose's Prometheus");
});

t.test("every query is accepted by the stack's Prometheus", async (t) => {
  await startServer('prometheus');
  const variables = dashboard.templating.list.map((v) =>
    v.query.query.replace(/^label_values\((.*), \w+\)$/, '$1'),
  );
  for (const expr of [...exprs, ...variables]) {
    // Grafana's variables as it sends them: every node, the rate window it picks at a 15 s scrape.
    const query = expr.replace(/\$node/g, '.+').replace(/\$__rate_interval/g, '1m');
    const answer = await getJson<{ status: string }>(
      `${PROMETHEUS}/api/v1/query?query=${encodeURIComponent(query)}`,
    ).catch((err: unknown) => ({ status: String(err) }));
    t.equal(answer.status, 'success', query);
  }
});
