// STOPS THE STACK'S REDIS for about half a minute (test/faults runs serially, each file alone: package.json
// tap.serial), with the stack's real Prometheus and Alertmanager watching: an app node started here
// is discovered through its file_sd target file and scraped; with Redis stopped, the DependencyDown alerts
// (Redis, from redis_exporter; `any`, from the node's /ready through the blackbox exporter) go pending, fire
// and reach Alertmanager's API; with Redis back they resolve there.
import t from 'tap';
import { REDIS_DATA_NODES, startServer, startServers, stopServers } from '../../scripts/stack/stack.js';
import { cluster } from '../helpers/cluster.js';
import { ALERTMANAGER, PROMETHEUS, getJson, until } from '../helpers/monitoring.js';

/** The rule's `for:` in docker/prometheus/alerts.yml; the local stack scrapes and evaluates every 2 s. */
const FOR_MS = 20_000;
/** Waits end well after for: plus a scrape, an evaluation and the send to Alertmanager. */
const WAIT_MS = FOR_MS + 30_000;

interface Target {
  labels: Record<string, string>;
  health: string;
  lastError: string;
}
const targets = async (): Promise<Target[]> =>
  (await getJson<{ data: { activeTargets: Target[] } }>(`${PROMETHEUS}/api/v1/targets?state=active`)).data
    .activeTargets;

interface AmAlert {
  labels: Record<string, string>;
  status: { state: string };
  startsAt: string;
}
/** Alertmanager's active (not resolved) alerts with these labels. */
const activeAlerts = (labels: Record<string, string>): Promise<AmAlert[]> => {
  const filters = Object.entries(labels)
    .map(([name, value]) => `filter=${encodeURIComponent(`${name}="${value}"`)}`)
    .join('&');
  return getJson<AmAlert[]>(`${ALERTMANAGER}/api/v2/alerts?active=true&${filters}`);
};

/** Prometheus' own view of an alert: pending, firing, or absent. */
async function ruleState(labels: Record<string, string>): Promise<string | undefined> {
  const { data } = await getJson<{ data: { alerts: { labels: Record<string, string>; state: string }[] } }>(
    `${PROMETHEUS}/api/v1/alerts`,
  );
  return data.alerts.find((alert) => Object.entries(labels).every(([k, v]) => alert.labels[k] === v))?.state;
}

t.test(
  'Redis down: DependencyDown reaches Alertmanager after its for:, and resolves when Redis is back',
  async (t) => {
    await startServer('prometheus');
    await startServer('alertmanager');
    await startServer('redis-exporter');
    await startServer('blackbox');

    // A real node, listed for Prometheus by the launcher (test/helpers/node-process.ts): scraped and probed.
    const { nodes } = await cluster(t, ['obs-e2e']);
    const node = nodes.get('obs-e2e')!;
    const instance = `127.0.0.1:${node.port}`;
    for (const job of ['flashsale', 'flashsale-ready']) {
      const target = await until(
        `Prometheus scrapes ${job} ${instance}`,
        async () =>
          (await targets()).find(
            (target) =>
              target.labels.job === job && target.labels.instance === instance && target.health === 'up',
          ),
        30_000,
      );
      t.equal(target.labels.node, 'obs-e2e', `${job}: ${instance} discovered with its node label, up`);
    }
    const scraped = await getJson<{ data: { result: unknown[] } }>(
      `${PROMETHEUS}/api/v1/query?query=${encodeURIComponent('process_start_time_seconds{job="flashsale",node="obs-e2e"}')}`,
    );
    t.equal(scraped.data.result.length, 1, "the node's own metrics are in Prometheus");

    const redisAlert = { alertname: 'DependencyDown', dependency: 'redis' };
    const nodeAlert = { alertname: 'DependencyDown', dependency: 'any', node: 'obs-e2e' };
    t.same(await activeAlerts(redisAlert), [], 'no DependencyDown for Redis before');

    t.teardown(() => startServers(REDIS_DATA_NODES));
    await stopServers(REDIS_DATA_NODES);
    const stoppedAt = Date.now();
    let resolvedAt: number;
    try {
      // for: holds it back first: pending in Prometheus, not yet sent.
      const pending = await until(
        'DependencyDown (redis) pending in Prometheus',
        () => ruleState(redisAlert),
        WAIT_MS,
      );
      const pendingSeen = Date.now() - stoppedAt;
      if (pendingSeen < FOR_MS - 2_000)
        t.equal(
          pending,
          'pending',
          `pending, not firing, ${(pendingSeen / 1000).toFixed(1)} s after the stop`,
        );
      const [fired] = await until(
        'DependencyDown (redis) in Alertmanager',
        async () => {
          const alerts = await activeAlerts(redisAlert);
          return alerts.length > 0 ? alerts : undefined;
        },
        WAIT_MS,
      );
      const firedAfter = (Date.now() - stoppedAt) / 1000;
      t.equal(fired?.status.state, 'active', 'Alertmanager holds the alert, active');
      t.match(
        fired?.labels,
        { severity: 'critical', service: 'flash-sale', job: 'redis' },
        'with its labels',
      );
      t.comment(
        `DependencyDown (redis) reached Alertmanager ${firedAfter.toFixed(1)} s after Redis stopped (for: 20 s)`,
      );
      // The node sees it too: its /ready answers 503, probed through the blackbox exporter.
      await until(
        'DependencyDown (any, node obs-e2e) in Alertmanager',
        async () => ((await activeAlerts(nodeAlert)).length > 0 ? true : undefined),
        WAIT_MS,
      );
      t.pass("the node's /ready alert reached Alertmanager too");
    } finally {
      await startServers(REDIS_DATA_NODES);
      resolvedAt = Date.now();
    }
    await until(
      'DependencyDown (redis) resolved in Alertmanager',
      async () => ((await activeAlerts(redisAlert)).length === 0 ? true : undefined),
      WAIT_MS,
    );
    t.comment(
      `resolved in Alertmanager ${((Date.now() - resolvedAt) / 1000).toFixed(1)} s after Redis was back`,
    );
    t.pass('DependencyDown (redis) resolved once Redis answers again');
    await until(
      'DependencyDown (any, node obs-e2e) resolved in Alertmanager',
      async () => ((await activeAlerts(nodeAlert)).length === 0 ? true : undefined),
      WAIT_MS,
    );
    t.pass("the node's alert resolved once its /ready answers 200 again");
  },
);
