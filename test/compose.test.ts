// Validates the production layout (docker-compose.yml) and the files it builds from and mounts, without a
// Docker engine: structure, mounted paths, interpolated variables, the app's env names, the quorum fix,
// healthchecks and ports; plus `docker compose config` and `nginx -t` when those tools are installed.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { SERVICE_NODE_FLAGS } from '../scripts/service-flags.mjs';

type Dict = Record<string, unknown>;

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const composePath = join(root, 'docker-compose.yml');
const envExamplePath = join(root, 'docker', '.env.example');

function isDict(value: unknown): value is Dict {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
function dict(value: unknown): Dict {
  return isDict(value) ? value : {};
}
function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}
/** A scalar as text (YAML numbers included); anything else is the fallback. */
function str(value: unknown, fallback = ''): string {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean'
    ? String(value)
    : fallback;
}
function strings(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  return list(value).filter((v): v is string => typeof v === 'string');
}

/**
 * The parsed file with YAML merge keys (`<<: *anchor`) applied, as Compose applies them. The alias limit
 * guards against hostile documents ("billion laughs"); this one is ours and uses anchors on purpose.
 */
const compose = dict(parse(readFileSync(composePath, 'utf8'), { merge: true, maxAliasCount: -1 }));
const services = dict(compose.services);
const service = (name: string): Dict => dict(services[name]);

/** `environment:` as a map, whether written as a map or as a `KEY=value` list. */
function environment(svc: Dict): Record<string, string> {
  const env = svc.environment;
  const out: Record<string, string> = {};
  if (Array.isArray(env)) {
    for (const item of strings(env)) {
      const eq = item.indexOf('=');
      if (eq < 0) out[item] = '';
      else out[item.slice(0, eq)] = item.slice(eq + 1);
    }
  } else {
    for (const [key, value] of Object.entries(dict(env))) out[key] = str(value);
  }
  return out;
}

/** Compose interpolation with the given variables: ${X}, ${X:-d}, ${X-d}, ${X:?msg}, ${X?msg}, $X; `$$` is `$`. */
function interpolate(text: string, vars: Record<string, string>): string {
  return text.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (match: string, braced?: string, op?: string, arg?: string, bare?: string) => {
      if (match === '$$') return '$';
      const name = braced ?? bare ?? '';
      const value = vars[name];
      const empty = value === undefined || (op?.startsWith(':') === true && value === '');
      if (op?.endsWith('-') && empty) return arg ?? '';
      if (op?.endsWith('?') && empty) throw new Error(`${name}: ${arg ?? 'required'}`);
      return value ?? '';
    },
  );
}

/** Names of the variables a string interpolates (`$$` escapes excluded). */
function interpolatedNames(text: string): string[] {
  const names: string[] = [];
  for (const m of text
    .replace(/\$\$/g, '')
    .matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)|\$([A-Za-z_][A-Za-z0-9_]*)/g)) {
    names.push(m[1] ?? m[2] ?? '');
  }
  return names;
}

/** Every string in the document, keys included (x- fields too: that is where anchors live). */
function allStrings(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const v of value) allStrings(v, out);
  else if (isDict(value))
    for (const [k, v] of Object.entries(value)) {
      out.push(k);
      allStrings(v, out);
    }
  return out;
}

/** `KEY=value` lines of docker/.env.example. */
function envExample(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(envExamplePath, 'utf8').split('\n')) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!.trim();
  }
  return out;
}

/** Every variable the file interpolates, set to a dummy value (secrets) or its example value. */
function dummyEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(envExample()))
    env[name] = value === '' ? `dummy-${name.toLowerCase()}` : value;
  return env;
}

/** Java-style `.properties` (the subset our files use: `key=value`, # comments). */
function properties(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([^#!\s][^=:\s]*)\s*[=:]\s*(.*?)\s*$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

const serverOf = (name: string): string => str(dict(service(name).labels)['flashsale.server']);

/** True when the voters that remain after losing any one server are still a majority of all voters. */
function survivesAnyServerLoss(voterServers: string[], needed: number): { ok: boolean; worst: string } {
  let worst = '';
  for (const server of new Set(voterServers)) {
    const left = voterServers.filter((s) => s !== server).length;
    if (left < needed)
      return { ok: false, worst: `losing server ${server} leaves ${left} of ${voterServers.length}` };
    worst = `losing any one server leaves at least ${left}`;
  }
  return { ok: true, worst };
}

const REQUIRED_SERVICES = [
  'app1',
  'app2',
  'db-primary',
  'db-replica',
  'redis-1',
  'redis-2',
  'sentinel-1',
  'sentinel-2',
  'sentinel-3',
  'kafka-1',
  'kafka-2',
  'kafka-3',
  'nginx',
];
const APP_SERVICES = ['app1', 'app2'];
const SECRETS = [
  'MYSQL_PASSWORD',
  'MYSQL_MIGRATION_PASSWORD',
  'MYSQL_ROOT_PASSWORD',
  'MYSQL_REPLICATION_PASSWORD',
  'REDIS_PASSWORD',
  'REDIS_APP_PASSWORD',
  'KAFKA_BROKER_PASSWORD',
  'KAFKA_APP_PASSWORD',
  'MYSQL_EXPORTER_PASSWORD',
  'GRAFANA_ADMIN_PASSWORD',
];
/** The local stack's config files: production must mount these very files. */
const SHARED_CONFIGS = [
  'docker/mariadb/primary.cnf',
  'docker/mariadb/replica.cnf',
  'docker/redis/redis.conf',
  'docker/kafka/server.properties',
  'docker/kafka/log4j.properties',
  'docker/nginx/nginx.conf',
  // Monitoring (scripts/stack/monitoring.ts runs these; prometheus.yml with local addresses and intervals).
  'docker/prometheus/prometheus.yml',
  'docker/prometheus/alerts.yml',
  'docker/prometheus/alertmanager.yml',
  'docker/prometheus/blackbox.yml',
  'docker/prometheus/consoles',
];
/** Production-only files the services mount besides (TLS and users). */
const PRODUCTION_FILES = [
  'docker/kafka/production.properties',
  'docker/mariadb/initdb/primary-users.sh',
  'docker/mariadb/initdb/replica-tls.sql',
  'docker/grafana/flash-sale.json',
  'docker/grafana/provisioning',
];

void t.test('the production services are all there, each placed on one of servers 1-6', (t) => {
  for (const name of REQUIRED_SERVICES) t.ok(isDict(services[name]), `service ${name}`);
  for (const name of Object.keys(services)) {
    if (name === 'nginx') continue;
    t.match(serverOf(name), /^[1-6]$/, `${name} carries label flashsale.server (1-6)`);
  }
  t.same(APP_SERVICES.map(serverOf), ['1', '2'], 'app nodes on servers 1-2');
  t.same(['db-primary', 'db-replica'].map(serverOf), ['3', '4'], 'databases on servers 3-4');
  t.same(
    ['redis-1', 'redis-2', 'kafka-1', 'kafka-2'].map(serverOf),
    ['5', '6', '5', '6'],
    'Redis and Kafka brokers on servers 5-6',
  );
  for (const name of APP_SERVICES) {
    t.same(
      dict(service(name).build),
      { context: '.', dockerfile: 'docker/Dockerfile' },
      `${name} builds from docker/Dockerfile`,
    );
  }
  for (const name of ['db-primary', 'db-replica'])
    t.equal(service(name).image, 'mariadb:10.11', `${name} runs mariadb:10.11`);
  t.end();
});

void t.test(
  'every file or folder a service builds from or mounts exists, and the local configs are the ones mounted',
  (t) => {
    const declaredVolumes = new Set(Object.keys(dict(compose.volumes)));
    const mounted = new Set<string>();
    for (const [name, raw] of Object.entries(services)) {
      const svc = dict(raw);
      const build = svc.build;
      if (build !== undefined) {
        const context = typeof build === 'string' ? build : str(dict(build).context, '.');
        const contextPath = resolve(root, context);
        t.ok(existsSync(contextPath), `${name}: build context ${context} exists`);
        const dockerfile =
          typeof build === 'string' ? 'Dockerfile' : str(dict(build).dockerfile, 'Dockerfile');
        t.ok(existsSync(resolve(contextPath, dockerfile)), `${name}: ${dockerfile} exists`);
      }
      for (const volume of list(svc.volumes)) {
        let source: string;
        if (typeof volume === 'string') source = volume.split(':')[0]!;
        else source = str(dict(volume).source);
        if (source.startsWith('.') || source.startsWith('/') || source.startsWith('~')) {
          const path = isAbsolute(source) ? source : resolve(root, source);
          const relative = path.startsWith(root + '/') ? path.slice(root.length + 1) : path;
          mounted.add(relative);
          t.ok(existsSync(path), `${name}: mounted ${source} exists`);
          t.notOk(path.includes('${'), `${name}: mount source ${source} is a fixed path`);
        } else {
          t.ok(declaredVolumes.has(source), `${name}: named volume ${source} is declared`);
        }
      }
      for (const file of strings(svc.env_file))
        t.ok(existsSync(resolve(root, file)), `${name}: env_file ${file} exists`);
    }
    for (const config of SHARED_CONFIGS) {
      t.ok(mounted.has(config), `${config} (shared with the local stack) is mounted`);
      t.ok(existsSync(join(root, config)), `${config} exists`);
    }
    for (const file of PRODUCTION_FILES) t.ok(mounted.has(file), `${file} is mounted`);
    t.ok(existsSync(join(root, '.dockerignore')), '.dockerignore exists');
    t.end();
  },
);

void t.test(
  'every interpolated variable is listed in docker/.env.example, and secrets are required, never literal',
  (t) => {
    const listed = envExample();
    const used = new Set(allStrings(compose).flatMap(interpolatedNames));
    t.ok(used.size > 0, 'the file interpolates variables');
    for (const name of used) t.ok(name in listed, `\${${name}} is listed in docker/.env.example`);
    for (const name of Object.keys(listed))
      t.ok(used.has(name), `${name} in docker/.env.example is used by docker-compose.yml`);

    const text = allStrings(compose).join('\n');
    for (const secret of SECRETS) {
      t.ok(used.has(secret), `${secret} is interpolated`);
      t.equal(listed[secret], '', `${secret} has no value in docker/.env.example`);
      const occurrences = [
        ...text.replace(/\$\$/g, '').matchAll(new RegExp(`\\$\\{?${secret}\\b[^}]*\\}?`, 'g')),
      ].map((m) => m[0]);
      for (const occurrence of occurrences)
        t.match(occurrence, new RegExp(`^\\$\\{${secret}:\\?.+\\}$`), `${occurrence} uses :? (required)`);
    }
    for (const [name, raw] of Object.entries(services)) {
      for (const [key, value] of Object.entries(environment(dict(raw)))) {
        if (/PASSWORD|SECRET/.test(key))
          t.match(value, /^\$\{[A-Z_]+:\?/, `${name}: ${key} comes from the environment`);
      }
    }
    t.throws(() => interpolate(text, {}), /_PASSWORD|TLS_DIR/, 'an unset secret stops interpolation');
    t.end();
  },
);

void t.test('the app nodes get only variables the app reads, and values it accepts', async (t) => {
  let configModule: Dict | undefined;
  try {
    configModule = dict(await import('../src/config.js'));
  } catch (error) {
    t.comment(`src/config.js could not be imported: ${String(error)}`);
  }
  const names = strings(configModule?.CONFIG_ENV_NAMES);
  const required = [
    'NODE_ID',
    'PORT',
    'HOST',
    'MYSQL_PRIMARY_URL',
    'MYSQL_REPLICA_URL',
    'MYSQL_POOL_SIZE',
    'REDIS_URL',
    'REDIS_SENTINELS',
    'REDIS_SENTINEL_NAME',
    'KAFKA_BROKERS',
    'LOG_LEVEL',
  ];
  const vars = dummyEnv();
  const nodeIds = new Set<string>();
  for (const app of APP_SERVICES) {
    const env = environment(service(app));
    for (const name of required) t.ok(name in env, `${app} sets ${name}`);
    if (names.length === 0) {
      t.pass(`${app}: env names checked against the app`, {
        skip: 'src/config.ts does not export CONFIG_ENV_NAMES (yet)',
      });
    } else {
      for (const name of Object.keys(env))
        t.ok(names.includes(name), `${app}: ${name} is read by src/config.ts`);
    }
    t.equal(env.HOST, '0.0.0.0', `${app} listens on all interfaces of its container`);
    t.equal(env.PORT, '8080', `${app} listens on 8080`);
    nodeIds.add(env.NODE_ID ?? '');

    const resolved = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, interpolate(v, vars)]));
    t.equal(
      resolved.MYSQL_PRIMARY_URL,
      `mysql://flashsale:${vars.MYSQL_PASSWORD}@db-primary:3306/flashsale`,
      `${app}: MYSQL_PRIMARY_URL`,
    );
    const hostsOf = (value: string | undefined): string[] =>
      (value ?? '').split(',').map((hp) => hp.trim().split(':')[0]!);
    for (const host of hostsOf(resolved.REDIS_SENTINELS))
      t.ok(isDict(services[host]), `${app}: sentinel ${host} is a service`);
    for (const host of hostsOf(resolved.KAFKA_BROKERS))
      t.ok(isDict(services[host]), `${app}: broker ${host} is a service`);
    t.equal(hostsOf(resolved.REDIS_SENTINELS).length, 3, `${app}: three sentinels`);

    const loadConfig = configModule?.loadConfig;
    if (typeof loadConfig === 'function') {
      t.doesNotThrow(
        () => (loadConfig as (env: Record<string, string>) => unknown)(resolved),
        `${app}: loadConfig accepts the environment`,
      );
    } else {
      t.pass(`${app}: loadConfig accepts the environment`, {
        skip: 'src/config.ts does not export loadConfig',
      });
    }
  }
  t.equal(nodeIds.size, APP_SERVICES.length, 'each app node has its own NODE_ID');
});

void t.test(
  'Kafka KRaft: an odd number (>= 3) of controller voters, a majority left after losing any one server',
  (t) => {
    const base = properties(readFileSync(join(root, 'docker/kafka/server.properties'), 'utf8'));
    const nodes = Object.keys(services).filter((name) => str(service(name).image).startsWith('apache/kafka'));
    t.ok(nodes.length >= 3, `${nodes.length} Kafka nodes`);
    const effective = new Map<string, Record<string, string>>();
    for (const name of nodes) {
      const props = { ...base };
      const command = strings(service(name).command);
      command.forEach((arg, i) => {
        if (arg === '--override') {
          const kv = command[i + 1] ?? '';
          props[kv.slice(0, kv.indexOf('='))] = kv.slice(kv.indexOf('=') + 1);
        }
      });
      const envVoters = environment(service(name)).KAFKA_CONTROLLER_QUORUM_VOTERS;
      if (envVoters !== undefined) props['controller.quorum.voters'] = envVoters;
      effective.set(name, props);
    }
    const voterStrings = new Set([...effective.values()].map((p) => p['controller.quorum.voters'] ?? ''));
    t.equal(voterStrings.size, 1, 'every node has the same controller.quorum.voters');
    const voters = [...voterStrings][0]!
      .split(',')
      .filter(Boolean)
      .map((v) => {
        const m = /^(\d+)@([^:]+):(\d+)$/.exec(v.trim());
        return { id: m?.[1] ?? '', host: m?.[2] ?? '', port: m?.[3] ?? '' };
      });
    t.ok(voters.length >= 3 && voters.length % 2 === 1, `${voters.length} voters: odd and >= 3`);
    for (const voter of voters) {
      const props = effective.get(voter.host);
      t.ok(props, `voter ${voter.host} is a Kafka service`);
      t.equal(props?.['node.id'], voter.id, `${voter.host} has node.id ${voter.id}`);
      t.match(props?.['process.roles'] ?? '', /controller/, `${voter.host} is a controller`);
    }
    const brokers = nodes.filter((name) => (effective.get(name)?.['process.roles'] ?? '').includes('broker'));
    t.same(brokers, ['kafka-1', 'kafka-2'], 'brokers kafka-1 and kafka-2 (servers 5-6)');
    for (const name of brokers) {
      t.equal(
        effective.get(name)?.['process.roles'],
        'broker,controller',
        `${name}: process.roles=broker,controller`,
      );
      t.match(
        effective.get(name)?.['advertised.listeners'] ?? '',
        new RegExp(`//${name}:`),
        `${name} advertises its own name`,
      );
    }
    const controllerOnly = nodes.filter((name) => effective.get(name)?.['process.roles'] === 'controller');
    t.ok(controllerOnly.length >= 1, 'a controller-only voter');
    for (const name of controllerOnly)
      t.ok(['1', '2'].includes(serverOf(name)), `${name} is co-located with an app server`);
    const ids = new Set([...effective.values()].map((p) => p['node.id']));
    t.equal(ids.size, nodes.length, 'node ids are unique');
    const survival = survivesAnyServerLoss(
      voters.map((v) => serverOf(v.host)),
      Math.floor(voters.length / 2) + 1,
    );
    t.ok(survival.ok, `KRaft quorum: ${survival.worst}`);
    t.end();
  },
);

void t.test('Redis Sentinel: >= 3 sentinels, quorum 2, a majority left after losing any one server', (t) => {
  const sentinels = Object.keys(services).filter((name) =>
    allStrings([service(name).entrypoint, service(name).command]).some((s) =>
      /--sentinel|redis-sentinel/.test(s),
    ),
  );
  t.ok(sentinels.length >= 3, `${sentinels.length} sentinels`);
  for (const name of sentinels) {
    const env = environment(service(name));
    const script = allStrings([service(name).entrypoint, service(name).command]).join('\n');
    const monitor = /sentinel monitor (\S+) (\S+) (\d+) (\S+)/.exec(script);
    t.ok(monitor, `${name} monitors a primary`);
    const quorum = monitor?.[4]?.startsWith('$') ? env[monitor[4].replace(/^\$+\{?|\}$/g, '')] : monitor?.[4];
    t.equal(quorum, '2', `${name}: quorum 2`);
    const master = monitor?.[2] ?? '';
    t.ok(isDict(services[master]), `${name} monitors service ${master}`);
    const masterName = monitor?.[1]?.startsWith('$')
      ? env[monitor[1].replace(/^\$+\{?|\}$/g, '')]
      : monitor?.[1];
    t.equal(masterName, 'flashsale', `${name}: master name matches REDIS_SENTINEL_NAME`);
  }
  t.equal(new Set(sentinels.map(serverOf)).size, sentinels.length, 'sentinels on distinct servers');
  t.ok(
    sentinels.some((name) => ['1', '2'].includes(serverOf(name))),
    'a sentinel on an app server',
  );
  const survival = survivesAnyServerLoss(
    sentinels.map(serverOf),
    Math.max(2, Math.floor(sentinels.length / 2) + 1),
  );
  t.ok(survival.ok, `Sentinel majority: ${survival.worst}`);
  const replicaCommand = strings(service('redis-2').command);
  t.equal(
    replicaCommand[replicaCommand.indexOf('--replicaof') + 1],
    'redis-1',
    'redis-2 starts as a replica of redis-1',
  );
  t.end();
});

void t.test('every service has a healthcheck', (t) => {
  for (const [name, raw] of Object.entries(services)) {
    const healthcheck = dict(dict(raw).healthcheck);
    t.notOk(healthcheck.disable, `${name}: healthcheck not disabled`);
    t.ok(strings(healthcheck.test).length > 0, `${name}: healthcheck test`);
  }
  t.end();
});

void t.test('no two services publish the same host port', (t) => {
  const vars = dummyEnv();
  const seen = new Map<string, string>();
  for (const [name, raw] of Object.entries(services)) {
    for (const port of list(dict(raw).ports)) {
      let key: string;
      if (typeof port === 'string' || typeof port === 'number') {
        const spec = interpolate(String(port), vars);
        const [mapping, protocol = 'tcp'] = spec.split('/');
        const parts = mapping!.split(':');
        if (parts.length < 2) continue; // container port only: the host picks a free one
        const hostIp = parts.length === 3 ? parts[0] : '0.0.0.0';
        key = `${hostIp}:${parts[parts.length - 2]}/${protocol}`;
      } else {
        const p = dict(port);
        if (p.published === undefined) continue;
        key = `${str(p.host_ip, '0.0.0.0')}:${interpolate(str(p.published), vars)}/${str(p.protocol, 'tcp')}`;
      }
      t.notOk(
        seen.has(key),
        `${name}: ${key} not already published by ${seen.get(key) ?? 'another service'}`,
      );
      seen.set(key, name);
    }
  }
  t.ok(seen.size >= 1, 'the load balancer publishes a port');
  t.end();
});

void t.test('nginx: upstreams are the app nodes; nginx.conf passes nginx -t when nginx is installed', (t) => {
  const upstreams = readFileSync(join(root, 'docker/nginx/upstreams.conf'), 'utf8');
  const servers = [...upstreams.matchAll(/^\s*server\s+([^\s;]+)([^;]*);/gm)];
  t.same(
    servers.map((m) => m[1]),
    APP_SERVICES.map((app) => `${app}:8080`),
    'upstreams.conf lists app1:8080 and app2:8080',
  );
  for (const m of servers)
    t.match(m[2] ?? '', /max_fails=\d+.*fail_timeout=\d+s/, `${m[1]} has passive health checks`);
  const conf = readFileSync(join(root, 'docker/nginx/nginx.conf'), 'utf8');
  t.match(
    conf,
    /\n {8}proxy_next_upstream\s+error timeout;/,
    "server-wide retries: a POST only if it was never sent (admin POSTs carry no key); a node's 503 passes",
  );
  t.match(
    conf,
    /location = \/purchases \{[^}]*proxy_next_upstream\s+error timeout non_idempotent;[^}]*\}/,
    'keyed purchases are retried even after they were sent',
  );
  t.match(conf, /include upstreams\.conf;/, 'upstream servers come from the included file');
  t.notMatch(conf, /^\s*pid\s/m, 'pid is left to the command line');

  if (spawnSync('nginx', ['-v']).error) {
    t.pass('nginx -t', { skip: 'nginx is not installed (apt-get install nginx)' });
    t.end();
    return;
  }
  // The local layout: a folder with a symlink to the same nginx.conf, its own upstreams and listen files.
  const dir = mkdtempSync(join(tmpdir(), 'nginx-conf-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'logs'));
  symlinkSync(join(root, 'docker/nginx/nginx.conf'), join(dir, 'nginx.conf'));
  writeFileSync(
    join(dir, 'upstreams.conf'),
    'server 127.0.0.1:18081 max_fails=3 fail_timeout=5s;\nserver 127.0.0.1:18082 max_fails=3 fail_timeout=5s;\n',
  );
  writeFileSync(join(dir, 'listen.conf'), 'listen 127.0.0.1:18080;\n');
  const result = spawnSync(
    'nginx',
    ['-t', '-p', `${dir}/`, '-c', join(dir, 'nginx.conf'), '-e', 'stderr', '-g', `pid ${dir}/nginx.pid;`],
    {
      encoding: 'utf8',
    },
  );
  t.equal(result.status, 0, `nginx -t: ${result.stderr.trim()}`);
  t.end();
});

void t.test('the app image: bookworm base, build and runtime stages, non-root, healthcheck', (t) => {
  const dockerfile = readFileSync(join(root, 'docker/Dockerfile'), 'utf8');
  t.match(dockerfile, /node:20-bookworm-slim/, 'node:20-bookworm-slim');
  t.match(dockerfile, /npm ci --no-audit/, 'npm ci in the build stage');
  t.match(dockerfile, /npm run build/, 'npm run build');
  t.match(dockerfile, /npm ci --omit=dev/, 'production dependencies only at run time');
  t.match(dockerfile, /^USER node$/m, 'runs as a non-root user');
  t.match(dockerfile, /^HEALTHCHECK .*\n.*\/health/m, 'HEALTHCHECK on /health');
  t.match(dockerfile, /^EXPOSE 8080$/m, 'EXPOSE 8080');
  const cmd = `CMD ${JSON.stringify(['node', ...SERVICE_NODE_FLAGS, 'dist/src/main.js']).replaceAll(',', ', ')}`;
  t.ok(dockerfile.split('\n').includes(cmd), `${cmd}: the service's node flags, as every local node runs`);
  const ignore = readFileSync(join(root, '.dockerignore'), 'utf8');
  t.match(ignore, /^\*$/m, '.dockerignore is an allowlist');
  for (const needed of [
    'package.json',
    'package-lock.json',
    'tsconfig.json',
    'tsconfig.build.json',
    'src/',
  ]) {
    t.match(
      ignore,
      new RegExp(`^!${needed.replace(/\./g, '\\.')}$`, 'm'),
      `build context includes ${needed}`,
    );
  }
  t.end();
});

void t.test('docker compose config accepts the file (when the compose plugin is installed)', (t) => {
  const docker = spawnSync('docker', ['--version'], { encoding: 'utf8' });
  if (docker.error) {
    t.pass('docker compose config', { skip: 'the docker CLI is not installed' });
    t.end();
    return;
  }
  const plugin = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8' });
  if (plugin.status !== 0) {
    t.pass('docker compose config', {
      skip: `the docker compose plugin is not installed (${(plugin.stderr || plugin.stdout).trim().split('\n')[0]})`,
    });
    t.end();
    return;
  }
  const result = spawnSync(
    'docker',
    ['compose', '--project-directory', root, '-f', composePath, 'config', '-q'],
    {
      encoding: 'utf8',
      env: { ...process.env, ...dummyEnv() },
    },
  );
  if (result.status !== 0 && /Cannot connect to the Docker daemon|docker daemon/i.test(result.stderr)) {
    t.pass('docker compose config', {
      skip: `docker compose config needs a daemon here: ${result.stderr.trim()}`,
    });
    t.end();
    return;
  }
  t.equal(result.status, 0, `docker compose config -q: ${result.stderr.trim() || 'ok'}`);
  t.end();
});

/** The value after `flag` in an argument list (`--flag value`), or the part after `flag=` (`--flag=value`). */
function argument(args: string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  if (i >= 0) return args[i + 1];
  return args.find((arg) => arg.startsWith(`${flag}=`))?.slice(flag.length + 1);
}

/** `/run/secrets/<name>` when `name` is one of the service's secrets, else a marker that never matches. */
function secretPath(svc: Dict, name: string): string {
  return strings(svc.secrets).includes(name) ? `/run/secrets/${name}` : `(no secret ${name})`;
}

void t.test('production TLS material: Compose secrets from files in $TLS_DIR, declared where used', (t) => {
  const declared = dict(compose.secrets);
  for (const name of ['tls-ca', 'tls-cert', 'tls-key']) {
    t.match(
      str(dict(declared[name]).file),
      /^\$\{TLS_DIR:\?[^}]+\}\/[\w.-]+\.pem$/,
      `secret ${name}: a file in the required $TLS_DIR (outside the repository)`,
    );
  }
  for (const [name, raw] of Object.entries(services)) {
    for (const secret of strings(dict(raw).secrets))
      t.ok(secret in declared, `${name}: secret ${secret} is declared`);
  }
  t.match(envExample().TLS_DIR ?? '', /^\//, 'docker/.env.example names an absolute TLS_DIR');
  t.end();
});

void t.test('production MariaDB: TLS required, replication over TLS, least-privilege users', (t) => {
  for (const name of ['db-primary', 'db-replica']) {
    const svc = service(name);
    const command = strings(svc.command);
    t.ok(command.includes('--require-secure-transport=ON'), `${name}: --require-secure-transport=ON`);
    t.equal(argument(command, '--ssl-ca'), secretPath(svc, 'tls-ca'), `${name}: --ssl-ca from the secret`);
    t.equal(argument(command, '--ssl-cert'), secretPath(svc, 'tls-cert'), `${name}: --ssl-cert`);
    t.equal(argument(command, '--ssl-key'), secretPath(svc, 'tls-key'), `${name}: --ssl-key`);
    const env = environment(svc);
    t.notOk('MARIADB_USER' in env, `${name}: no MARIADB_USER (the image would grant it ALL)`);
  }
  for (const cnf of ['primary.cnf', 'replica.cnf']) {
    const text = readFileSync(join(root, 'docker/mariadb', cnf), 'utf8');
    t.notMatch(
      text,
      /^\s*(ssl|require)/m,
      `${cnf} leaves TLS paths to the command line (the local stack's differ)`,
    );
  }
  // A failover swaps the roles: each server must replicate as well as it serves as the primary.
  const settings = (cnf: string) =>
    readFileSync(join(root, 'docker/mariadb', cnf), 'utf8')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'))
      .filter((line) => !/^server_id\b/.test(line) && !/^loose-super_read_only\b/.test(line))
      .sort();
  t.same(
    settings('primary.cnf'),
    settings('replica.cnf'),
    'primary.cnf and replica.cnf set the same, but for server_id (and MySQL 8 super_read_only on the replica)',
  );
  const users = readFileSync(join(root, 'docker/mariadb/initdb/primary-users.sh'), 'utf8');
  t.match(
    users,
    /GRANT SELECT, INSERT, UPDATE, DELETE ON \\`flashsale\\`\.\* TO 'flashsale'@'%'/,
    'app user: data only',
  );
  t.notMatch(users, /GRANT ALL[^;]* TO 'flashsale'@/, 'app user: no ALL');
  t.match(users, /GRANT ALL PRIVILEGES ON \\`flashsale\\`\.\* TO 'flashsale_migrate'@'%'/, 'schema owner');
  t.match(
    users,
    /ALTER USER 'flashsale'@'%', 'flashsale_migrate'@'%', '\$\{MARIADB_REPLICATION_USER\}'@'%' REQUIRE SSL/,
  );
  const primaryEnv = environment(service('db-primary'));
  for (const variable of users.matchAll(/\$\{(FLASHSALE_[A-Z_]+):\?\}/g))
    t.match(
      primaryEnv[variable[1]!] ?? '',
      /^\$\{[A-Z_]+:\?/,
      `db-primary: ${variable[1]} from a required secret`,
    );
  const replication = readFileSync(join(root, 'docker/mariadb/initdb/replica-tls.sql'), 'utf8');
  t.match(replication, /MASTER_SSL = 1/, 'the replica connects with TLS');
  t.match(replication, /MASTER_SSL_VERIFY_SERVER_CERT = 1/, "and verifies the primary's certificate");
  t.match(replication, `MASTER_SSL_CA = '${secretPath(service('db-replica'), 'tls-ca')}'`, 'against the CA');
  const initMounts = (name: string) =>
    list(service(name).volumes)
      .map((v) => str(v))
      .filter((v) => v.includes(':/docker-entrypoint-initdb.d/'));
  t.match(
    initMounts('db-primary').join('\n'),
    /initdb\/primary-users\.sh:/,
    'db-primary runs the users script',
  );
  t.match(initMounts('db-replica').join('\n'), /initdb\/replica-tls\.sql:/, 'db-replica runs the TLS switch');
  t.end();
});

void t.test(
  'production Redis: TLS only, the app an ACL user without administration; Sentinel over TLS',
  (t) => {
    const conf = readFileSync(join(root, 'docker/redis/redis.conf'), 'utf8');
    for (const line of ['port 0', 'tls-port 6379', 'tls-replication yes', 'tls-auth-clients no'])
      t.match(conf, new RegExp(`^${line}$`, 'm'), `redis.conf: ${line}`);
    for (const name of ['redis-1', 'redis-2']) {
      const svc = service(name);
      const command = strings(svc.command);
      t.notOk(command.includes('--port'), `${name}: no --port (a plaintext port) on the command line`);
      t.equal(argument(command, '--tls-cert-file'), secretPath(svc, 'tls-cert'), `${name}: certificate`);
      t.equal(argument(command, '--tls-key-file'), secretPath(svc, 'tls-key'), `${name}: key`);
      t.equal(argument(command, '--tls-ca-cert-file'), secretPath(svc, 'tls-ca'), `${name}: CA`);
      const user = command.slice(command.indexOf('--user'), command.indexOf('--user') + 12);
      t.same(user.slice(0, 3), ['--user', 'flashsale', 'on'], `${name}: ACL user flashsale`);
      t.match(user[3] ?? '', /^>\$\{REDIS_APP_PASSWORD:\?/, `${name}: its password from a required secret`);
      t.ok(user.includes('-@admin') && user.includes('-flushall'), `${name}: no admin commands, no FLUSHALL`);
      t.match(
        strings(dict(svc.healthcheck).test).join(' '),
        /redis-cli --tls --cacert \/run\/secrets\/tls-ca/,
      );
    }
    for (const name of ['sentinel-1', 'sentinel-2', 'sentinel-3']) {
      const svc = service(name);
      const script = allStrings([svc.entrypoint, svc.command]).join('\n');
      for (const line of [
        'port 0',
        'tls-port 26379',
        'tls-replication yes',
        'tls-ca-cert-file /run/secrets/tls-ca',
      ])
        t.match(script, new RegExp(`^${line}$`, 'm'), `${name}: ${line}`);
      t.equal(secretPath(svc, 'tls-cert'), '/run/secrets/tls-cert', `${name} has the certificate`);
      t.match(
        strings(dict(svc.healthcheck).test).join(' '),
        /redis-cli --tls --cacert \/run\/secrets\/tls-ca/,
      );
    }
    t.end();
  },
);

void t.test(
  'production app nodes: TLS to MariaDB and Redis with the CA secret, migrations as the owner',
  async (t) => {
    const { loadConfig } = await import('../src/config.js');
    const vars = dummyEnv();
    for (const app of APP_SERVICES) {
      const svc = service(app);
      const env = Object.fromEntries(
        Object.entries(environment(svc)).map(([k, v]) => [k, interpolate(v, vars)]),
      );
      t.not(env.MYSQL_TLS, 'off', `${app}: MYSQL_TLS is not off`);
      t.equal(env.MYSQL_TLS_CA_FILE, secretPath(svc, 'tls-ca'), `${app}: MYSQL_TLS_CA_FILE is the CA secret`);
      t.equal(env.REDIS_TLS_CA_FILE, secretPath(svc, 'tls-ca'), `${app}: REDIS_TLS_CA_FILE is the CA secret`);
      t.match(env.REDIS_URL ?? '', /^rediss:\/\/flashsale:/, `${app}: REDIS_URL is TLS as the ACL user`);
      const config = loadConfig(env);
      t.same(config.mysql.primary.tls, { caFile: '/run/secrets/tls-ca' }, `${app}: TLS to the primary`);
      t.same(config.mysql.replica.tls, { caFile: '/run/secrets/tls-ca' }, `${app}: TLS to the replica`);
      t.same(config.redis.tls, { caFile: '/run/secrets/tls-ca' }, `${app}: TLS to Redis and the sentinels`);
      t.equal(config.mysql.primary.user, 'flashsale', `${app}: the app's user for data`);
      t.match(
        config.mysql.migration,
        {
          user: 'flashsale_migrate',
          host: 'db-primary',
          database: 'flashsale',
          password: vars.MYSQL_MIGRATION_PASSWORD,
        },
        `${app}: migrations as flashsale_migrate`,
      );
      t.same(config.kafka.tls, { caFile: '/run/secrets/tls-ca' }, `${app}: TLS to the Kafka brokers`);
      t.match(
        config.kafka.sasl,
        { mechanism: 'scram-sha-512', username: 'flashsale' },
        `${app}: SCRAM login`,
      );
      t.equal(config.production, true, `${app}: NODE_ENV=production (the default PEER_SECRET is refused)`);
      t.match(config.auth.jwksUrl, /^https:\/\//, `${app}: tokens verified against the provider's JWKS`);
      t.same(
        config.rateLimit.trustedProxies,
        [vars.NGINX_ADDRESS],
        `${app}: only nginx may set X-Forwarded-For`,
      );
    }
  },
);

void t.test(
  'production Kafka: SASL_SSL for clients and brokers, mutual TLS for controllers; local stays PLAINTEXT',
  (t) => {
    const overlay = properties(readFileSync(join(root, 'docker/kafka/production.properties'), 'utf8'));
    t.notMatch(
      overlay['listener.security.protocol.map'] ?? 'PLAINTEXT',
      /PLAINTEXT/,
      'no PLAINTEXT listener',
    );
    t.equal(overlay['inter.broker.listener.name'], 'SASL_SSL', 'brokers talk SASL_SSL');
    t.equal(overlay['sasl.enabled.mechanisms'], 'SCRAM-SHA-512', 'SCRAM-SHA-512');
    t.equal(overlay['sasl.mechanism.inter.broker.protocol'], 'SCRAM-SHA-512');
    t.equal(
      overlay['ssl.truststore.location'],
      '/run/secrets/tls-ca',
      'servers verified against the CA secret',
    );
    t.equal(overlay['ssl.endpoint.identification.algorithm'], 'https', 'host names verified');
    t.equal(
      overlay['listener.name.controller.ssl.client.auth'],
      'required',
      'controllers: client certificates',
    );
    const nodes = Object.keys(services).filter((name) => str(service(name).image).startsWith('apache/kafka'));
    for (const name of nodes) {
      const svc = service(name);
      const script = strings(svc.entrypoint).join('\n');
      t.match(
        script,
        /cat \S*server\.properties \S*production\.properties > "\$\$node"/,
        `${name}: overlay appended`,
      );
      t.match(script, /kafka-server-start\.sh "\$\$node"/, `${name}: starts from the copy with the overlay`);
      t.match(script, /--add-scram "SCRAM-SHA-512=\[name=broker,/, `${name}: SCRAM user broker`);
      t.match(script, /--add-scram "SCRAM-SHA-512=\[name=flashsale,/, `${name}: SCRAM user flashsale`);
      for (const secret of ['tls-ca', 'tls-cert', 'tls-key'])
        t.equal(secretPath(svc, secret), `/run/secrets/${secret}`, `${name} has ${secret}`);
      const command = strings(svc.command);
      const overrides = command.filter((_, i) => command[i - 1] === '--override');
      for (const key of ['listeners', 'advertised.listeners']) {
        const value = overrides.find((kv) => kv.startsWith(`${key}=`)) ?? '';
        t.notMatch(value, /PLAINTEXT/, `${name}: ${value}`);
      }
      t.match(
        strings(dict(svc.healthcheck).test).join(' '),
        /--command-config \/tmp\/kafka-tls\//,
        `${name}: healthcheck over TLS`,
      );
      for (const secret of ['KAFKA_BROKER_PASSWORD', 'KAFKA_APP_PASSWORD'])
        t.match(
          environment(svc)[secret] ?? '',
          /^\$\{[A-Z_]+:\?/,
          `${name}: ${secret} from a required secret`,
        );
    }
    const base = properties(readFileSync(join(root, 'docker/kafka/server.properties'), 'utf8'));
    t.match(
      base['listener.security.protocol.map'],
      /PLAINTEXT:PLAINTEXT/,
      'server.properties (the local stack) stays PLAINTEXT',
    );
    t.end();
  },
);
