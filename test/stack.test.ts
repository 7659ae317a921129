// The local stack that `npm test` starts: all servers up, and the replica follows the primary.
import mysql, { type RowDataPacket } from 'mysql2/promise';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { STACK_TLS } from '../scripts/stack/layout.js';
import { LOCAL_SCRAPE_INTERVAL } from '../scripts/stack/monitoring.js';
import { registerNodeTarget } from '../scripts/stack/scrape-targets.mjs';
import { until } from '../scripts/until.js';
import {
  STACK_HOST,
  STACK_KAFKA_NODES,
  STACK_MYSQL,
  STACK_PORTS,
  stackStatus,
} from '../scripts/stack/stack.js';

const REPLICATION_WAIT_MS = 5000;

/** Over TLS (the servers refuse anything else), as the app's user or the schema owner. */
async function connect(t: Test, port: number, as: 'app' | 'migration' = 'app'): Promise<mysql.Connection> {
  const connection = await mysql.createConnection({
    host: STACK_HOST,
    port,
    user: as === 'app' ? STACK_MYSQL.user : STACK_MYSQL.migrationUser,
    password: as === 'app' ? STACK_MYSQL.password : STACK_MYSQL.migrationPassword,
    database: STACK_MYSQL.database,
    ssl: { ca: readFileSync(STACK_TLS.ca), rejectUnauthorized: true },
  });
  t.teardown(() => connection.end());
  return connection;
}

/** Prometheus's active targets now. */
async function activeTargets<Target>(): Promise<Target[]> {
  const res = await fetch(`http://${STACK_HOST}:${STACK_PORTS.prometheus}/api/v1/targets?state=active`);
  return ((await res.json()) as { data: { activeTargets: Target[] } }).data.activeTargets;
}

void t.test('status reports every server up and replication running', async (t) => {
  const status = await stackStatus();
  for (const name of ['primary', 'replica', 'redis', 'kafka', 'payment'] as const) {
    t.equal(status[name].state, 'up', `${name} is up`);
    t.equal(status[name].port, STACK_PORTS[name], `${name} listens on its stack port`);
  }
  // Kafka: three nodes, each a broker and a controller voter, each seeing all three brokers registered.
  for (const node of STACK_KAFKA_NODES) {
    t.equal(status[node.name].state, 'up', `${node.name} is up`);
    t.equal(status[node.name].port, node.port, `${node.name} listens on its stack port`);
    t.same(status[node.name]['brokers'], [1, 2, 3], `${node.name} sees the three brokers registered`);
  }
  t.match(status.replica, {
    replication: { ioThread: 'Yes', sqlThread: 'Yes', lastError: null, ssl: true, sslCa: STACK_TLS.ca },
  });
  // Redis: two data nodes, one primary and one replica (which is which changes with failovers), and three
  // Sentinels that agree on the primary and can reach a quorum.
  t.equal(status['redis-2'].state, 'up', 'redis-2 is up');
  t.same(
    [status.redis['role'], status['redis-2']['role']].sort(),
    ['master', 'slave'],
    'one Redis data node is the primary, the other its replica',
  );
  const primary = status.redis['role'] === 'master' ? status.redis.address : status['redis-2'].address;
  for (const name of ['sentinel-1', 'sentinel-2', 'sentinel-3'] as const) {
    t.equal(status[name].state, 'up', `${name} is up`);
    t.equal(status[name]['primary'], primary, `${name} names the primary`);
    t.match(status[name]['quorum'], /^OK 3 usable Sentinels/, `${name}: quorum reachable`);
  }
  for (const [name, port] of [
    ['prometheus', STACK_PORTS.prometheus],
    ['alertmanager', STACK_PORTS.alertmanager],
    ['redis-exporter', STACK_PORTS.redisExporter],
    ['mysqld-exporter-primary', STACK_PORTS.mysqldExporterPrimary],
    ['mysqld-exporter-replica', STACK_PORTS.mysqldExporterReplica],
    ['blackbox', STACK_PORTS.blackbox],
  ] as const) {
    t.equal(status[name].state, 'up', `${name} is up`);
    t.equal(status[name].port, port, `${name} listens on its stack port`);
  }
});

void t.test('Prometheus scrapes every server of the stack, and each answers', async (t) => {
  const wanted = ['prometheus', 'alertmanager', 'redis', 'mysql', 'kafka', 'redis-sentinel', 'db-failover'];
  type Target = { labels: Record<string, string>; health: string; lastError: string };
  // A Prometheus started a moment ago has not scraped everything yet (every 2 s).
  const { value: targets } = await until(
    async () => (await activeTargets<Target>()).filter((target) => wanted.includes(target.labels.job ?? '')),
    (list) => list.length >= 6 && list.every((target) => target.health === 'up'),
    15_000,
    500,
  );
  for (const job of wanted)
    t.ok(
      targets.some((target) => target.labels.job === job),
      `a ${job} target`,
    );
  t.equal(targets.filter((target) => target.labels.job === 'mysql').length, 2, 'mysql: primary and replica');
  for (const target of targets)
    t.equal(target.health, 'up', `${target.labels.job} ${target.labels.instance} up ${target.lastError}`);
});

void t.test('a node target is scraped and probed at its own interval when it has one', async (t) => {
  // Two unreachable nodes of this (live) process, one at the production interval (how the bench lists its
  // nodes), one at the job's; Prometheus re-reads the files every 5 s.
  const ports = [1, 2].map((i) => 60_000 + ((process.pid * 2 + i) % 5_000));
  const node = (port: number) => `interval-probe-${port}`;
  const removals = [
    registerNodeTarget({ port: ports[0]!, node: node(ports[0]!), pid: process.pid, scrapeInterval: '15s' }),
    registerNodeTarget({ port: ports[1]!, node: node(ports[1]!), pid: process.pid }),
  ];
  t.teardown(() => removals.forEach((remove) => remove()));
  type Target = { labels: Record<string, string>; scrapeInterval: string };
  const { value: mine } = await until(
    async () =>
      (await activeTargets<Target>()).filter((target) =>
        ports.some((port) => target.labels['node'] === node(port)),
      ),
    (list) => list.length >= 4,
    20_000,
    500,
  );
  const interval = (port: number, job: string) =>
    mine.find((target) => target.labels['node'] === node(port) && target.labels['job'] === job)
      ?.scrapeInterval;
  for (const job of ['flashsale', 'flashsale-ready']) {
    t.equal(interval(ports[0]!, job), '15s', `${job}: the target's own interval`);
    t.equal(interval(ports[1]!, job), LOCAL_SCRAPE_INTERVAL, `${job}: without one, the local stack's`);
  }
});

void t.test('a row written on the primary is read back from the replica', async (t) => {
  const table = `stack_probe_${process.pid}_${Date.now()}`;
  const token = `token-${Math.random().toString(36).slice(2)}`;
  // The app's user may not make tables: the schema owner does.
  const primary = await connect(t, STACK_PORTS.primary, 'migration');
  const replica = await connect(t, STACK_PORTS.replica);
  await primary.query(`CREATE TABLE ${table} (id INT PRIMARY KEY, note VARCHAR(64) NOT NULL)`);
  t.teardown(async () => {
    await primary.query(`DROP TABLE IF EXISTS ${table}`);
  });
  await primary.query(`INSERT INTO ${table} (id, note) VALUES (1, ?)`, [token]);

  const deadline = Date.now() + REPLICATION_WAIT_MS;
  let note: unknown;
  while (note === undefined && Date.now() < deadline) {
    // Until the CREATE TABLE arrives the replica answers "no such table".
    const rows = await replica.query<RowDataPacket[]>(`SELECT note FROM ${table} WHERE id = 1`).then(
      ([result]) => result,
      () => [],
    );
    note = rows[0]?.note;
    if (note === undefined) await sleep(50);
  }
  t.equal(note, token, 'the replica has the row');
  await t.rejects(
    replica.query(`INSERT INTO ${table} (id, note) VALUES (2, 'x')`),
    { code: 'ER_OPTION_PREVENTS_STATEMENT' },
    'the replica is read-only for the app',
  );
});
