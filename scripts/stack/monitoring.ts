// Monitoring in the local stack, from Debian's packages (scripts/setup.mjs installs them): Prometheus and
// Alertmanager, and the exporters Prometheus scrapes besides the app nodes: redis_exporter (Redis over TLS
// as the app's ACL user), one mysqld_exporter per MariaDB server (root over the unix socket, as the stack
// itself), and the blackbox exporter (TCP probe of Kafka, each node's /ready). All on loopback ports of
// their own (layout.ts); Debian's own system services of these packages are never started or used.
//
// .stack/prometheus/
//   prometheus.yml      generated from docker/prometheus/prometheus.yml (localPrometheusConfig below)
//   targets/nodes/*.json the app nodes, one file per running node (scripts/stack/scrape-targets.mjs)
//   data/               the TSDB (2 days)
// .stack/alertmanager/  its state (silences, notification log); config: docker/prometheus/alertmanager.yml
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import {
  DOCKER_DIR,
  STACK_HOST,
  STACK_PORTS,
  STACK_REDIS,
  STACK_TLS,
  serverPaths,
  type ServerName,
  type ServerPaths,
} from './layout.js';
import { socketPath } from './mariadb.js';
import { StackError } from './process.js';
import { NODE_TARGETS_DIR, pruneNodeTargets } from './scrape-targets.mjs';
import { argumentsChanged, type ServerSpec } from './server.js';
import { ensureTls, olderThanCertificate } from './tls.js';

export const PROMETHEUS_DIR = path.join(DOCKER_DIR, 'prometheus');
const SOURCE_PROMETHEUS = path.join(PROMETHEUS_DIR, 'prometheus.yml');
const ALERTMANAGER_CONFIG = path.join(PROMETHEUS_DIR, 'alertmanager.yml');
const BLACKBOX_CONFIG = path.join(PROMETHEUS_DIR, 'blackbox.yml');

const prometheusPaths = serverPaths('prometheus');
/** The config the stack's Prometheus runs: docker/prometheus/prometheus.yml with local addresses. */
export const LOCAL_PROMETHEUS_CONFIG = path.join(prometheusPaths.dataDir, 'prometheus.yml');

/** Scrape and rule evaluation period of the local Prometheus: short, so alerts fire within seconds of `for:`. */
export const LOCAL_SCRAPE_INTERVAL = '2s';

const local = (port: number): string => `${STACK_HOST}:${port}`;

/**
 * Production address (docker/prometheus/prometheus.yml) → local one; null: no local counterpart (dropped).
 * Every address of the production file must be listed (localPrometheusConfig fails otherwise), so the two
 * stay in step.
 */
const LOCAL_ADDRESSES: Readonly<Record<string, string | null>> = {
  'prometheus:9090': local(STACK_PORTS.prometheus),
  'alertmanager:9093': local(STACK_PORTS.alertmanager),
  'blackbox:9115': local(STACK_PORTS.blackbox),
  'redis-exporter:9121': local(STACK_PORTS.redisExporter),
  'rediss://redis-1:6379': `rediss://${local(STACK_PORTS.redis)}`,
  'rediss://redis-2:6379': `rediss://${local(STACK_PORTS.redis2)}`,
  'mysqld-exporter-primary:9104': local(STACK_PORTS.mysqldExporterPrimary),
  'mysqld-exporter-replica:9104': local(STACK_PORTS.mysqldExporterReplica),
  'kafka-1:9092': local(STACK_PORTS.kafka),
  'kafka-2:9092': local(STACK_PORTS.kafka2),
  // Locally kafka-3 is a broker too; its controller listener stands for production's controller-only node.
  'kafka-3:9093': local(STACK_PORTS.kafka3Controller),
  'sentinel-1:26379': local(STACK_PORTS.sentinels[0]),
  'sentinel-2:26379': local(STACK_PORTS.sentinels[1]),
  'sentinel-3:26379': local(STACK_PORTS.sentinels[2]),
  'db-failover:8091': local(STACK_PORTS.dbFailover),
};
/** The app nodes: production lists them; locally they come from the files the node launchers write. */
const APP_NODE_ADDRESSES = new Set(['app1:8080', 'app2:8080']);
/** Local names of the production servers (the `server` label), where they differ. */
const LOCAL_SERVER_LABELS: Readonly<Record<string, string>> = {
  'redis-1': 'redis',
  'redis-2': 'redis-2',
  'db-primary': 'primary',
  'db-replica': 'replica',
  'kafka-1': 'kafka',
  'kafka-2': 'kafka-2',
  'kafka-3': 'kafka-3',
};

type Dict = Record<string, unknown>;
const isDict = (value: unknown): value is Dict =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** A string of the production file in its local form (addresses inside URLs and replacements too). */
function localString(text: string): string {
  let out = text;
  for (const [production, local] of Object.entries(LOCAL_ADDRESSES))
    if (local !== null) out = out.split(production).join(local);
  return out;
}

function localJob(job: Dict): Dict {
  const { static_configs: staticConfigs, ...rest } = job;
  const out: Dict = JSON.parse(
    JSON.stringify(rest, (_key, value: unknown) => (typeof value === 'string' ? localString(value) : value)),
  ) as Dict;
  if (!Array.isArray(staticConfigs)) return out;
  const groups: Dict[] = [];
  let appNodes = false;
  for (const group of staticConfigs) {
    if (!isDict(group) || !Array.isArray(group.targets)) continue;
    const targets: string[] = [];
    for (const target of group.targets as unknown[]) {
      const address = String(target);
      if (APP_NODE_ADDRESSES.has(address)) {
        appNodes = true;
        continue;
      }
      if (!(address in LOCAL_ADDRESSES))
        throw new StackError(
          `prometheus: ${SOURCE_PROMETHEUS} scrapes ${address}, which has no local counterpart: add it to LOCAL_ADDRESSES in scripts/stack/monitoring.ts`,
        );
      const mapped = LOCAL_ADDRESSES[address];
      if (mapped !== null && mapped !== undefined) targets.push(mapped);
    }
    if (targets.length === 0) continue;
    const labels = isDict(group.labels) ? { ...group.labels } : undefined;
    if (labels !== undefined && typeof labels.server === 'string')
      labels.server = LOCAL_SERVER_LABELS[labels.server] ?? labels.server;
    groups.push(labels === undefined ? { targets } : { targets, labels });
  }
  if (groups.length > 0) out.static_configs = groups;
  // The app nodes: every file the launchers write (node label included); Prometheus re-reads them on change.
  if (appNodes)
    out.file_sd_configs = [{ files: [path.join(NODE_TARGETS_DIR, '*.json')], refresh_interval: '5s' }];
  return out;
}

/** The production Prometheus's scrape interval (docker/prometheus/prometheus.yml `global.scrape_interval`). */
export function productionScrapeInterval(): string {
  const production = parse(fs.readFileSync(SOURCE_PROMETHEUS, 'utf8')) as Dict;
  const interval = isDict(production.global) ? production.global.scrape_interval : undefined;
  if (typeof interval !== 'string')
    throw new StackError(`${SOURCE_PROMETHEUS} has no global scrape_interval`);
  return interval;
}

/**
 * docker/prometheus/prometheus.yml for the local stack: the same jobs, rules and relabelling, with the
 * local intervals, loopback addresses, the app nodes from file_sd, and absolute rule file paths.
 */
export function localPrometheusConfig(productionYaml: string): string {
  const production = parse(productionYaml) as Dict;
  const global = isDict(production.global) ? production.global : {};
  const ruleFiles = Array.isArray(production.rule_files) ? (production.rule_files as string[]) : [];
  const jobs = Array.isArray(production.scrape_configs) ? (production.scrape_configs as Dict[]) : [];
  const config = {
    global: {
      ...global,
      scrape_interval: LOCAL_SCRAPE_INTERVAL,
      evaluation_interval: LOCAL_SCRAPE_INTERVAL,
      scrape_timeout: LOCAL_SCRAPE_INTERVAL,
      external_labels: { environment: 'local' },
    },
    rule_files: ruleFiles.map((file) => path.resolve(PROMETHEUS_DIR, file)),
    alerting: JSON.parse(
      JSON.stringify(production.alerting ?? {}, (_key, value: unknown) =>
        typeof value === 'string' ? localString(value) : value,
      ),
    ) as unknown,
    scrape_configs: jobs.map(localJob),
  };
  return [
    `# Generated from ${SOURCE_PROMETHEUS} by scripts/stack/monitoring.ts at each stack up: do not edit.`,
    stringify(config),
  ].join('\n');
}

/** GET on a loopback port; resolves with the status and body, whatever the status. */
export function httpGet(
  port: number,
  urlPath: string,
  timeoutMs = 2000,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.get(
      { host: STACK_HOST, port, path: urlPath, agent: false, timeout: timeoutMs },
      (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.once('end', () => resolve({ status: response.statusCode ?? 0, body }));
      },
    );
    request.once('timeout', () =>
      request.destroy(new Error(`port ${port}: no answer within ${timeoutMs} ms`)),
    );
    request.once('error', reject);
  });
}

function httpPost(port: number, urlPath: string, timeoutMs = 5000): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      { host: STACK_HOST, port, path: urlPath, method: 'POST', agent: false, timeout: timeoutMs },
      (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      },
    );
    request.once('timeout', () =>
      request.destroy(new Error(`port ${port}: no answer within ${timeoutMs} ms`)),
    );
    request.once('error', reject);
    request.end();
  });
}

const answers200 = async (port: number, urlPath: string): Promise<boolean> =>
  (await httpGet(port, urlPath)).status === 200;

/** Writes the local prometheus.yml; true when its content changed. */
function writePrometheusConfig(): boolean {
  const text = localPrometheusConfig(fs.readFileSync(SOURCE_PROMETHEUS, 'utf8'));
  const before = fs.existsSync(LOCAL_PROMETHEUS_CONFIG)
    ? fs.readFileSync(LOCAL_PROMETHEUS_CONFIG, 'utf8')
    : '';
  if (before === text) return false;
  fs.mkdirSync(prometheusPaths.dataDir, { recursive: true });
  fs.writeFileSync(LOCAL_PROMETHEUS_CONFIG, text);
  return true;
}

/** Recognises an exporter by its executable and its listen address (they have no data folder). */
const ownsByListen = (executable: string, listen: string) => (argv: readonly string[]) =>
  path.basename(argv[0] ?? '') === executable && argv.includes(listen);

export const prometheus: ServerSpec = {
  name: 'prometheus',
  ...prometheusPaths,
  port: STACK_PORTS.prometheus,
  ports: [STACK_PORTS.prometheus],
  dependsOn: [],
  startTimeoutMs: 30_000,
  stopTimeoutMs: 15_000,
  executable: 'prometheus',
  prepare: () => {
    fs.mkdirSync(path.join(prometheusPaths.dataDir, 'data'), { recursive: true });
    fs.mkdirSync(NODE_TARGETS_DIR, { recursive: true });
    writePrometheusConfig();
    return Promise.resolve();
  },
  stale: (_pid, argv) => Promise.resolve(argumentsChanged(prometheus, argv)),
  command: () => ({
    file: '/usr/bin/prometheus',
    args: [
      `--config.file=${LOCAL_PROMETHEUS_CONFIG}`,
      `--storage.tsdb.path=${path.join(prometheusPaths.dataDir, 'data')}`,
      '--storage.tsdb.retention.time=2d',
      // The dashboard (docker/prometheus/consoles/flash-sale.html) at /consoles/flash-sale.html.
      `--web.console.templates=${path.join(PROMETHEUS_DIR, 'consoles')}`,
      `--web.listen-address=${local(STACK_PORTS.prometheus)}`,
      `--web.external-url=http://${local(STACK_PORTS.prometheus)}/`,
      // POST /-/reload: `stack up` reloads a running Prometheus when docker/prometheus/ changed.
      '--web.enable-lifecycle',
    ],
  }),
  probe: () => answers200(STACK_PORTS.prometheus, '/-/ready'),
  configure: async () => {
    pruneNodeTargets();
    // An adopted Prometheus runs the previous config: reload it when docker/prometheus/ changed since.
    const changed = writePrometheusConfig();
    if (changed && (await httpPost(STACK_PORTS.prometheus, '/-/reload')) !== 200)
      throw new StackError(`prometheus: reload of ${LOCAL_PROMETHEUS_CONFIG} failed (see its log)`);
  },
  details: async () => {
    const { body } = await httpGet(STACK_PORTS.prometheus, '/api/v1/targets?state=active');
    const targets = (JSON.parse(body) as { data: { activeTargets: { labels: Dict; health: string }[] } }).data
      .activeTargets;
    return {
      url: `http://${local(STACK_PORTS.prometheus)}/`,
      targets: targets.map((target) => ({
        job: target.labels.job,
        instance: target.labels.instance,
        health: target.health,
      })),
    };
  },
};

const alertmanagerPaths = serverPaths('alertmanager');
export const alertmanager: ServerSpec = {
  name: 'alertmanager',
  ...alertmanagerPaths,
  port: STACK_PORTS.alertmanager,
  ports: [STACK_PORTS.alertmanager],
  dependsOn: [],
  startTimeoutMs: 30_000,
  stopTimeoutMs: 15_000,
  executable: 'prometheus-alertmanager',
  prepare: () => {
    fs.mkdirSync(alertmanagerPaths.dataDir, { recursive: true });
    return Promise.resolve();
  },
  stale: (_pid, argv) => Promise.resolve(argumentsChanged(alertmanager, argv)),
  command: () => ({
    file: '/usr/bin/prometheus-alertmanager',
    args: [
      `--config.file=${ALERTMANAGER_CONFIG}`,
      `--storage.path=${alertmanagerPaths.dataDir}`,
      `--web.listen-address=${local(STACK_PORTS.alertmanager)}`,
      `--web.external-url=http://${local(STACK_PORTS.alertmanager)}/`,
      // One instance: no gossip cluster (it would listen on 0.0.0.0:9094).
      '--cluster.listen-address=',
    ],
  }),
  probe: () => answers200(STACK_PORTS.alertmanager, '/-/ready'),
  // The config is read in place: make a running Alertmanager read it again (a no-op when unchanged).
  configure: async () => {
    if ((await httpPost(STACK_PORTS.alertmanager, '/-/reload')) !== 200)
      throw new StackError(`alertmanager: reload of ${ALERTMANAGER_CONFIG} failed (see its log)`);
  },
  details: async () => {
    const { body } = await httpGet(STACK_PORTS.alertmanager, '/api/v2/alerts?active=true');
    const alerts = JSON.parse(body) as { labels: Dict }[];
    return {
      url: `http://${local(STACK_PORTS.alertmanager)}/`,
      activeAlerts: alerts.map((alert) => alert.labels.alertname),
    };
  },
};

/**
 * What every exporter's spec shares: its name and paths, one port it listens on (`listen`, the flag that
 * sets it, which also tells its process apart), no dependency, and the same timeouts.
 */
function exporterBase(
  name: ServerName,
  port: number,
  executable: string,
  listen: string,
): Pick<
  ServerSpec,
  'name' | 'port' | 'ports' | 'dependsOn' | 'startTimeoutMs' | 'stopTimeoutMs' | 'executable' | 'owns'
> &
  ServerPaths {
  return {
    name,
    ...serverPaths(name),
    port,
    ports: [port],
    dependsOn: [],
    startTimeoutMs: 15_000,
    stopTimeoutMs: 10_000,
    executable,
    owns: ownsByListen(executable, listen),
  };
}

// Go's flag package: one dash.
const redisExporterListen = `-web.listen-address=${local(STACK_PORTS.redisExporter)}`;
export const redisExporter: ServerSpec = {
  ...exporterBase(
    'redis-exporter',
    STACK_PORTS.redisExporter,
    'prometheus-redis-exporter',
    redisExporterListen,
  ),
  prepare: async () => {
    await ensureTls();
  },
  // It reads the CA once: a reissued CA needs a restart.
  stale: async (pid, argv) => {
    await ensureTls();
    return argumentsChanged(redisExporter, argv) ?? olderThanCertificate(pid);
  },
  command: () => ({
    file: '/usr/bin/prometheus-redis-exporter',
    args: [
      // Prometheus scrapes /scrape?target=rediss://…; -redis.addr is the same server, for /metrics.
      `-redis.addr=rediss://${local(STACK_PORTS.redis)}`,
      `-redis.user=${STACK_REDIS.user}`,
      `-tls-ca-cert-file=${STACK_TLS.ca}`,
      redisExporterListen,
    ],
    // The app's (local) password, from the environment rather than the command line.
    env: { REDIS_PASSWORD: STACK_REDIS.password },
  }),
  probe: () => answers200(STACK_PORTS.redisExporter, '/health'),
};

function mysqldExporter(role: 'primary' | 'replica'): ServerSpec {
  const port = role === 'primary' ? STACK_PORTS.mysqldExporterPrimary : STACK_PORTS.mysqldExporterReplica;
  const listen = `--web.listen-address=${local(port)}`;
  const spec: ServerSpec = {
    ...exporterBase(`mysqld-exporter-${role}`, port, 'prometheus-mysqld-exporter', listen),
    prepare: () => Promise.resolve(),
    stale: (_pid, argv) => Promise.resolve(argumentsChanged(spec, argv)),
    command: () => ({
      file: '/usr/bin/prometheus-mysqld-exporter',
      args: [listen, '--collect.slave_status', '--collect.global_status', '--collect.global_variables'],
      // root over the server's unix socket (unix_socket authentication, as the stack's own root login):
      // no password, no TLS needed.
      env: { DATA_SOURCE_NAME: `root@unix(${socketPath(role)})/` },
    }),
    probe: () => answers200(port, '/'),
  };
  return spec;
}
export const mysqldExporterPrimary = mysqldExporter('primary');
export const mysqldExporterReplica = mysqldExporter('replica');

const blackboxListen = `--web.listen-address=${local(STACK_PORTS.blackbox)}`;
export const blackbox: ServerSpec = {
  ...exporterBase('blackbox', STACK_PORTS.blackbox, 'prometheus-blackbox-exporter', blackboxListen),
  prepare: () => Promise.resolve(),
  stale: (_pid, argv) => Promise.resolve(argumentsChanged(blackbox, argv)),
  command: () => ({
    file: '/usr/bin/prometheus-blackbox-exporter',
    args: [`--config.file=${BLACKBOX_CONFIG}`, blackboxListen],
  }),
  probe: () => answers200(STACK_PORTS.blackbox, '/-/healthy'),
  // The modules are read in place: make a running exporter read them again.
  configure: async () => {
    if ((await httpPost(STACK_PORTS.blackbox, '/-/reload')) !== 200)
      throw new StackError(`blackbox: reload of ${BLACKBOX_CONFIG} failed (see its log)`);
  },
};
