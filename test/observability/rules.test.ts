// The monitoring configuration in docker/prometheus/, checked by the tools of the Prometheus packages the
// stack runs (scripts/setup.mjs installs them): promtool checks the rules and both Prometheus configs (the
// production file and the local stack's rewrite of it) and runs the rules' unit tests; amtool and the
// blackbox exporter check their files. Besides, every alert must carry `for:`, a severity and a
// summary/description, and have a unit test where it fires and one where it stays silent.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import { REPO_ROOT } from '../../scripts/stack/layout.js';
import { PROMETHEUS_DIR, localPrometheusConfig } from '../../scripts/stack/monitoring.js';

const file = (name: string): string => join(PROMETHEUS_DIR, name);

/** Runs a tool of the packages; the result's output is both streams. */
function run(command: string, args: string[]): { status: number | null; output: string } {
  const result = spawnSync(command, args, { cwd: REPO_ROOT, encoding: 'utf8' });
  if (result.error)
    throw new Error(`${command}: ${result.error.message} (node scripts/setup.mjs installs it)`);
  return { status: result.status, output: `${result.stdout}${result.stderr}`.trim() };
}

interface Rule {
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface AlertTestCase {
  alertname: string;
  exp_alerts?: { exp_labels?: Record<string, string> }[];
}

const rules = (
  parse(readFileSync(file('alerts.yml'), 'utf8')) as { groups: { name: string; rules: Rule[] }[] }
).groups.flatMap((group) => group.rules);
const alerts = rules.filter((rule): rule is Rule & { alert: string } => rule.alert !== undefined);

void t.test('promtool check rules: alerts.yml is valid', (t) => {
  const result = run('promtool', ['check', 'rules', file('alerts.yml')]);
  t.equal(result.status, 0, result.output);
  t.match(result.output, `SUCCESS: ${rules.length} rules found`);
  t.end();
});

void t.test('promtool test rules: every unit test of alerts.test.yml passes', (t) => {
  const result = run('promtool', ['test', 'rules', file('alerts.test.yml')]);
  t.equal(result.status, 0, result.output);
  t.match(result.output, /SUCCESS/);
  t.end();
});

void t.test("the specification's five alerts and the design's are all there", (t) => {
  const names = new Set(alerts.map((rule) => rule.alert));
  for (const name of [
    'HighLatency',
    'DatabaseConnectionPoolExhausted',
    'LowCacheHitRate',
    'PurchaseFailureRate',
    'InventoryInconsistency',
    'OutboxNotDraining',
    'SagaPastDeadline',
    'ReplicaLag',
    'KafkaConsumerLag',
    'NodeDown',
    'ShardLeasesFlapping',
    'DependencyDown',
  ])
    t.ok(names.has(name), name);
  const dependencies = alerts
    .filter((rule) => rule.alert === 'DependencyDown')
    .map((rule) => rule.labels?.dependency);
  t.same(
    dependencies.sort(),
    ['any', 'kafka', 'mysql', 'redis'],
    'DependencyDown for Redis, MariaDB, Kafka and /ready',
  );
  t.end();
});

void t.test('every alert has for:, a severity, a summary and a description', (t) => {
  for (const rule of alerts) {
    const name = `${rule.alert}${rule.labels?.dependency === undefined ? '' : ` (${rule.labels.dependency})`}`;
    t.match(rule.for ?? '', /^\d+[smh]$/, `${name}: for ${rule.for}`);
    t.match(
      rule.labels?.severity ?? '',
      /^(critical|warning)$/,
      `${name}: severity ${rule.labels?.severity}`,
    );
    t.ok((rule.annotations?.summary ?? '').length > 10, `${name}: summary`);
    t.ok((rule.annotations?.description ?? '').length > 40, `${name}: description`);
  }
  t.end();
});

void t.test('every alert has a unit test where it fires and one where it stays silent', (t) => {
  const tests = (
    parse(readFileSync(file('alerts.test.yml'), 'utf8')) as {
      rule_files: string[];
      tests: { name: string; alert_rule_test?: AlertTestCase[] }[];
    }
  ).tests;
  const cases = tests.flatMap((test) => test.alert_rule_test ?? []);
  for (const rule of alerts) {
    const dependency = rule.labels?.dependency;
    const name = `${rule.alert}${dependency === undefined ? '' : ` (${dependency})`}`;
    const mine = cases.filter((c) => c.alertname === rule.alert);
    const fires = mine.some((c) =>
      (c.exp_alerts ?? []).some((e) => dependency === undefined || e.exp_labels?.dependency === dependency),
    );
    t.ok(fires, `${name}: a test where it fires`);
    // Silent cases are named after the rule (with its dependency, for the several DependencyDown rules).
    const silent = tests.some(
      (test) =>
        test.name.startsWith(
          `${rule.alert} ${dependency === undefined ? '' : `${dependency} `}stays silent`,
        ) &&
        (test.alert_rule_test ?? []).some(
          (c) => c.alertname === rule.alert && (c.exp_alerts ?? []).length === 0,
        ),
    );
    t.ok(silent, `${name}: a test where it stays silent`);
  }
  t.end();
});

void t.test("promtool check config: the production prometheus.yml and the local stack's rewrite", (t) => {
  const production = run('promtool', ['check', 'config', file('prometheus.yml')]);
  t.equal(production.status, 0, production.output);
  const dir = mkdtempSync(join(tmpdir(), 'prometheus-local-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const localText = localPrometheusConfig(readFileSync(file('prometheus.yml'), 'utf8'));
  writeFileSync(join(dir, 'prometheus.yml'), localText);
  const localCheck = run('promtool', ['check', 'config', join(dir, 'prometheus.yml')]);
  t.equal(localCheck.status, 0, localCheck.output);
  const local = parse(localText) as {
    global: Record<string, string>;
    scrape_configs: {
      job_name: string;
      file_sd_configs?: unknown[];
      static_configs?: { targets: string[] }[];
    }[];
  };
  const productionJobs = (
    parse(readFileSync(file('prometheus.yml'), 'utf8')) as { scrape_configs: { job_name: string }[] }
  ).scrape_configs.map((job) => job.job_name);
  t.same(
    local.scrape_configs.map((job) => job.job_name),
    productionJobs,
    'the same jobs locally',
  );
  t.equal(local.global.scrape_interval, '2s', 'local scrapes every 2 s');
  const targets = local.scrape_configs.flatMap((job) => (job.static_configs ?? []).flatMap((g) => g.targets));
  for (const target of targets) t.match(target, /127\.0\.0\.1:\d+$/, `${target}: a loopback address`);
  for (const job of ['flashsale', 'flashsale-ready'])
    t.ok(
      local.scrape_configs.find((j) => j.job_name === job)?.file_sd_configs,
      `${job}: the app nodes from the launchers' file_sd files`,
    );
  t.end();
});

void t.test('amtool and the blackbox exporter accept their files', (t) => {
  const am = run('amtool', ['check-config', file('alertmanager.yml')]);
  t.equal(am.status, 0, am.output);
  const blackbox = run('prometheus-blackbox-exporter', [
    `--config.file=${file('blackbox.yml')}`,
    '--config.check',
  ]);
  t.equal(blackbox.status, 0, blackbox.output);
  t.end();
});
