// Where the local stack lives: its ports, folders and the docker/ configs it starts from.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Everything the stack writes: one folder per server, logs/ and run/ (pid files, sockets). Git-ignored. */
export const STACK_DIR = path.join(REPO_ROOT, '.stack');
export const LOG_DIR = path.join(STACK_DIR, 'logs');
export const RUN_DIR = path.join(STACK_DIR, 'run');
/** The local CA and the certificates the stack issues with it (scripts/stack/tls.ts); never committed. */
export const TLS_DIR = path.join(STACK_DIR, 'tls');
export const DOCKER_DIR = path.join(REPO_ROOT, 'docker');

/** Every server listens on loopback only. */
export const STACK_HOST = '127.0.0.1';

/**
 * Ports of the local stack: none is a system default, so the machine's own servers never collide. The
 * exception is on purpose: nginx listens on 8080, the service's documented port, so clients of `npm start`
 * talk to the load balancer; the app nodes behind it (`npm start`, scripts/start.mjs) listen on `appNodes`.
 */
export const STACK_PORTS = Object.freeze({
  primary: 13306,
  replica: 13307,
  /** Redis: the first data node (the initial primary), the second (initially its replica), three Sentinels. */
  redis: 16379,
  redis2: 16380,
  sentinels: Object.freeze([16381, 16382, 16383] as const),
  /** Kafka: three KRaft nodes, each a broker (first port) and a controller voter (second port). */
  kafka: 19092,
  kafkaController: 19093,
  kafka2: 19192,
  kafka2Controller: 19193,
  kafka3: 19292,
  kafka3Controller: 19293,
  payment: 18090,
  /** The MariaDB failover manager's HTTP status and switchover API (scripts/stack/db-failover.ts). */
  dbFailover: 18091,
  nginx: 8080,
  appNodes: Object.freeze([8081, 8082] as const),
  // Monitoring (scripts/stack/monitoring.ts): never Debian's 9090/9093/9094/9104/9115/9121, which the
  // packages' own (never started) system services would use.
  prometheus: 19090,
  alertmanager: 19095,
  redisExporter: 19121,
  mysqldExporterPrimary: 19104,
  mysqldExporterReplica: 19105,
  blackbox: 19115,
});

/** The app nodes nginx balances over, as `npm start` runs them: `NODE_ID=node-<n>`, `PORT=<port>`. */
export const APP_NODES: readonly { readonly id: string; readonly port: number }[] = Object.freeze(
  STACK_PORTS.appNodes.map((port, index) => Object.freeze({ id: `node-${index + 1}`, port })),
);

/**
 * Accounts the stack creates on the primary (they replicate to the replica). `user` is the app's: data
 * only (SELECT, INSERT, UPDATE, DELETE), no DDL; `migrationUser` owns the schema (migrations, tests that
 * create tables); `replicationUser` is the replica's. Every TCP connection must use TLS; root connects
 * over the unix socket only.
 */
export const STACK_MYSQL = Object.freeze({
  database: 'flashsale',
  user: 'flashsale',
  password: 'flashsale',
  migrationUser: 'flashsale_migrate',
  migrationPassword: 'flashsale_migrate',
  replicationUser: 'repl',
  replicationPassword: 'repl',
  /** The failover manager's: read-only on/off, KILL, promotion, CHANGE MASTER; never the app's. */
  adminUser: 'flashsale_admin',
  adminPassword: 'flashsale_admin',
});

/**
 * Redis's ACL users (the `default` user is disabled); Redis speaks TLS only. `user` is the app's (no
 * administration); `adminUser` is the Sentinels' and the replica's (REPLICAOF, CONFIG, PSYNC): the stack's
 * own, never the app's. `masterName` is the name the Sentinels monitor the primary under.
 */
export const STACK_REDIS = Object.freeze({
  user: 'flashsale',
  password: 'flashsale',
  adminUser: 'stack-admin',
  adminPassword: 'stack-admin',
  masterName: 'flashsale',
});

/** The Redis data nodes in their initial order: the first starts as the primary. */
export const STACK_REDIS_NODES: readonly { readonly name: 'redis' | 'redis-2'; readonly port: number }[] =
  Object.freeze([
    Object.freeze({ name: 'redis', port: STACK_PORTS.redis }),
    Object.freeze({ name: 'redis-2', port: STACK_PORTS.redis2 }),
  ] as const);

/** The Sentinels' addresses, as REDIS_SENTINELS takes them (`host:port,…`). */
export const STACK_REDIS_SENTINELS = STACK_PORTS.sentinels.map((port) => `${STACK_HOST}:${port}`).join(',');

/** Files of the local CA (scripts/stack/tls.ts): its certificate, and the server certificate it signs. */
export const STACK_TLS = Object.freeze({
  /** CA certificate: what clients verify the servers against (MYSQL_TLS_CA_FILE, REDIS_TLS_CA_FILE). */
  ca: path.join(TLS_DIR, 'ca.pem'),
  caKey: path.join(TLS_DIR, 'ca-key.pem'),
  /** Server certificate for 127.0.0.1 and localhost (MariaDB primary and replica, Redis). */
  cert: path.join(TLS_DIR, 'server.pem'),
  key: path.join(TLS_DIR, 'server-key.pem'),
});

/** The Kafka nodes (broker + controller each): KRaft node id, broker port, controller port. */
export const STACK_KAFKA_NODES: readonly {
  readonly name: 'kafka' | 'kafka-2' | 'kafka-3';
  readonly nodeId: number;
  readonly port: number;
  readonly controllerPort: number;
}[] = Object.freeze([
  Object.freeze({
    name: 'kafka',
    nodeId: 1,
    port: STACK_PORTS.kafka,
    controllerPort: STACK_PORTS.kafkaController,
  }),
  Object.freeze({
    name: 'kafka-2',
    nodeId: 2,
    port: STACK_PORTS.kafka2,
    controllerPort: STACK_PORTS.kafka2Controller,
  }),
  Object.freeze({
    name: 'kafka-3',
    nodeId: 3,
    port: STACK_PORTS.kafka3,
    controllerPort: STACK_PORTS.kafka3Controller,
  }),
] as const);

/** Kafka bootstrap addresses of the local brokers, as `host:port`. */
export const STACK_KAFKA_BROKERS: readonly string[] = Object.freeze(
  STACK_KAFKA_NODES.map((node) => `${STACK_HOST}:${node.port}`),
);

/** Names of the servers the stack runs, in no particular order. */
export type ServerName =
  | 'primary'
  | 'replica'
  | 'redis'
  | 'redis-2'
  | 'sentinel-1'
  | 'sentinel-2'
  | 'sentinel-3'
  | 'kafka'
  | 'kafka-2'
  | 'kafka-3'
  | 'payment'
  | 'db-failover'
  | 'nginx'
  | 'prometheus'
  | 'alertmanager'
  | 'redis-exporter'
  | 'mysqld-exporter-primary'
  | 'mysqld-exporter-replica'
  | 'blackbox';

export interface ServerPaths {
  /** The server's own data folder. */
  readonly dataDir: string;
  /** stdout and stderr of the process (and the server's own log where it has one). */
  readonly logFile: string;
  /** Pid of the process this stack started. */
  readonly pidFile: string;
}

export function serverPaths(name: ServerName): ServerPaths {
  return {
    dataDir: path.join(STACK_DIR, name),
    logFile: path.join(LOG_DIR, `${name}.log`),
    pidFile: path.join(RUN_DIR, `${name}.pid`),
  };
}

/** Shows a path relative to the repository root, for tables and messages. */
export function relativeToRepo(file: string): string {
  return path.relative(REPO_ROOT, file) || '.';
}
