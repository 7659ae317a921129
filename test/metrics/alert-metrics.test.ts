// Every metric an alert rule reads from the app nodes is on a real node's /metrics (an in-process app
// against the stack, with its sales projection), with the labels the rules use: a rule over a metric the
// nodes do not export could never fire. Also the figures of the scrape-time gauges themselves.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { parse } from 'yaml';
import { startApp } from '../helpers/app.js';

/** Metrics the rules take from Prometheus itself and the exporters (redis_exporter, mysqld_exporter, blackbox). */
const FROM_EXPORTERS = /^(up|redis_\w+|mysql_global_\w+|mysql_up|mysql_slave_\w+|probe_\w+)$/;
/** PromQL functions with an underscore in their names, used by the rules. */
const FUNCTIONS = new Set(['histogram_quantile']);

/** The metric names each alert's expression reads (histogram series by their family name). */
function ruleMetrics(): Map<string, Set<string>> {
  const doc = parse(readFileSync('docker/prometheus/alerts.yml', 'utf8')) as {
    groups: { rules: { alert: string; expr: string }[] }[];
  };
  const used = new Map<string, Set<string>>();
  for (const rule of doc.groups.flatMap((g) => g.rules)) {
    // Label matchers and `by (...)` lists name labels, not metrics: drop them first.
    const expr = rule.expr.replace(/\{[^}]*\}/g, '').replace(/\b(by|on|without)\s*\([^)]*\)/g, '');
    for (const [name] of expr.matchAll(/\b[a-z_][a-z0-9_]*_[a-z0-9_]+\b/g)) {
      if (FUNCTIONS.has(name)) continue;
      const family = name.replace(/_(bucket|count|sum)$/, '');
      if (!used.has(family)) used.set(family, new Set());
      used.get(family)!.add(rule.alert);
    }
  }
  return used;
}

/** `name{labels} value` lines of the exposition text, by name. */
function samples(text: string): Map<string, { labels: string; value: number }[]> {
  const out = new Map<string, { labels: string; value: number }[]>();
  for (const [, name, labels, value] of text.matchAll(/^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/gm)) {
    if (!out.has(name!)) out.set(name!, []);
    out.get(name!)!.push({ labels: labels ?? '', value: Number(value) });
  }
  return out;
}

t.test('every app metric the alert rules read is exported', async (t) => {
  const running = await startApp(t, {}, { projection: true });
  const text = (await running.get('/metrics')).body as string;
  const types = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
  const used = ruleMetrics();
  t.ok(used.size > 10, `the rules read ${used.size} metrics`);
  for (const [name, alerts] of used) {
    if (FROM_EXPORTERS.test(name)) continue;
    t.ok(types.has(name), `${name} (${[...alerts].join(', ')}) is on /metrics`);
  }
  for (const name of [
    'mysql_pool_connections_in_use',
    'mysql_pool_connections_max',
    'inventory_inconsistent_products',
    'outbox_oldest_age_seconds',
    'saga_oldest_open_age_seconds',
    'projection_consumer_lag_events',
    'shard_ownership_changes_total',
  ])
    t.ok(used.has(name), `${name} is read by a rule`);
});

t.test('the scrape-time gauges read the real figures', async (t) => {
  const running = await startApp(t, {}, { projection: true });
  // A figure whose read outlasts the scrape's 750 ms is reported NaN by design (src/observability/
  // scrape-figure.ts); the first read of the projection lag opens a Kafka admin client, which a busy
  // machine can make slower than that. Scrape until it has been read once (its client is then open).
  const lagReadable = async () =>
    Number.isFinite(
      samples((await running.get('/metrics')).body as string).get('projection_consumer_lag_events')?.[0]
        ?.value ?? Number.NaN,
    );
  for (let tries = 0; tries < 30 && !(await lagReadable()); tries += 1)
    await new Promise((r) => setTimeout(r, 500));
  const held = await running.infra.mysql.primary.getConnection();
  let scraped: Map<string, { labels: string; value: number }[]>;
  try {
    scraped = samples((await running.get('/metrics')).body as string);
  } finally {
    held.release();
  }
  const one = (name: string, labels = '') => scraped.get(name)?.find((s) => s.labels === labels)?.value;

  t.equal(one('mysql_pool_connections_max', '{pool="primary"}'), running.config.mysql.poolSize);
  t.equal(one('mysql_pool_connections_max', '{pool="replica"}'), running.config.mysql.poolSize);
  t.ok(one('mysql_pool_connections_in_use', '{pool="primary"}')! >= 1, 'the connection held is in use');
  t.ok(one('mysql_pool_connections_in_use', '{pool="replica"}')! >= 0);
  for (const dependency of ['mysql_primary', 'mysql_replica', 'redis', 'kafka'])
    t.equal(one('dependency_up', `{dependency="${dependency}"}`), 1, `dependency_up ${dependency}`);
  // A one-node cluster took every shard when it started.
  t.equal(one('shard_ownership_changes_total', '{change="acquired"}'), running.config.shardCount);
  t.equal(one('inventory_inconsistent_products'), 0);
  for (const name of [
    'outbox_oldest_age_seconds',
    'projection_consumer_lag_events',
    'saga_oldest_open_age_seconds',
  ]) {
    const value = one(name);
    t.ok(value !== undefined && Number.isFinite(value) && value >= 0, `${name} = ${value}`);
  }
  t.ok(scraped.has('product_actor_requests'), 'the product actors report the requests they hold');
});

t.test('outbox_oldest_age_seconds: an unsent event of this service shows its age', async (t) => {
  const running = await startApp(t);
  // The relay of this app is stopped, so a committed row stays unsent.
  await running.app.relay.stop();
  const productId = await running.createProduct({ stock: 5 });
  const restocked = await running.adminPost(`/products/${productId}/restock`, { quantity: 1 });
  t.equal(restocked.status, 200);
  await running.infra.mysql.primary.query(
    `UPDATE outbox SET created_at = NOW(3) - INTERVAL 90 SECOND WHERE sent_at IS NULL AND topic = ?`,
    [running.config.kafka.topics.inventory],
  );
  const age = samples((await running.get('/metrics')).body as string).get('outbox_oldest_age_seconds')?.[0]
    ?.value;
  t.ok(age !== undefined && age >= 90 && age < 600, `oldest unsent event is ${age} s old`);
});

t.test('product reads are counted by the tier that answered (the hit rate per tier)', async (t) => {
  const running = await startApp(t);
  const productId = await running.createProduct({ stock: 5 });
  const tiers: string[] = [];
  for (let i = 0; i < 3; i += 1) {
    const read = await running.get(`/products/${productId}`);
    t.equal(read.status, 200);
    tiers.push(String(read.headers['x-cache-tier']));
  }
  const counted = new Map<string, number>();
  for (const { labels, value } of samples((await running.get('/metrics')).body as string).get(
    'product_cache_reads_total',
  ) ?? []) {
    const tier = /tier="(\w+)"/.exec(labels)?.[1];
    const result = /result="(\w+)"/.exec(labels)?.[1];
    t.equal(result, tier === 'memory' || tier === 'redis' ? 'hit' : 'miss', `${tier} is a ${result}`);
    if (tier !== undefined) counted.set(tier, (counted.get(tier) ?? 0) + value);
  }
  for (const tier of new Set(tiers))
    t.equal(counted.get(tier), tiers.filter((x) => x === tier).length, `reads answered from ${tier}`);
});
