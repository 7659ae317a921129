import { EnvReader, Setting, addressMap, hostPorts, int, oneOf, text, url, parseUrl } from './setting.js';

/**
 * The settings of the servers the service talks to: MySQL, Redis, Kafka (and its outbox relay and
 * projection), the payment provider. Part of the table in `settings.ts`; defaults fit the local stack.
 */

/** Where a MySQL server is and who connects: a `mysql://user:password@host:port/database` URL. */
export interface MysqlAddress {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

/** TLS to a MySQL server: the server's certificate is verified against this CA (MYSQL_TLS_CA_FILE). */
export interface MysqlTls {
  /** PEM file; relative paths are resolved against the working directory when a client is created. */
  caFile: string;
}

export interface MysqlEndpoint extends MysqlAddress {
  /** null: plaintext (MYSQL_TLS=off, for a server without TLS). */
  tls: Readonly<MysqlTls> | null;
}

/** The local stack's CA (scripts/stack/tls.ts). */
const LOCAL_CA = '.stack/tls/ca.pem';
const MYSQL_FORM = 'mysql://user:password@host:port/database';

function parseMysqlUrl(read: EnvReader, env: string, value: string): MysqlAddress {
  const parsed = parseUrl(value);
  if (
    parsed === undefined ||
    parsed.protocol !== 'mysql:' ||
    parsed.hostname === '' ||
    parsed.pathname.length < 2
  ) {
    read.expected(env, value, MYSQL_FORM);
    return { host: '127.0.0.1', port: 3306, user: '', password: '', database: '' };
  }
  return {
    host: parsed.hostname,
    port: parsed.port === '' ? 3306 : Number(parsed.port),
    user: decodeURIComponent(parsed.username),
    password: decodeURIComponent(parsed.password),
    database: decodeURIComponent(parsed.pathname.slice(1)),
  };
}

const mysqlTlsCaFile = text('MYSQL_TLS_CA_FILE', {
  default: LOCAL_CA,
  shown: "`.stack/tls/ca.pem` (the local stack's CA)",
  doc: "PEM CA the MySQL servers' certificates are verified against (relative: to the working directory)",
});
const mysqlTls = oneOf('MYSQL_TLS', ['on', 'off'], {
  default: 'on',
  doc: '`on`: TLS to every MySQL server, certificate verified; `off`: plaintext, for a server without TLS',
}).map(
  (mode, read): Readonly<MysqlTls> | null => (mode === 'on' ? { caFile: read.value(mysqlTlsCaFile) } : null),
  [mysqlTlsCaFile],
);

/** A MySQL server by URL, with MYSQL_TLS. */
function mysqlEndpoint(env: string, fallback: string, doc: string): Setting<Readonly<MysqlEndpoint>> {
  return new Setting(
    env,
    `\`${fallback}\``,
    `\`${MYSQL_FORM}\``,
    doc,
    (read) => ({ ...parseMysqlUrl(read, env, read.raw(env) ?? fallback), tls: read.value(mysqlTls) }),
    [mysqlTls],
  );
}

const migrationUser = 'flashsale_migrate';

const primary = mysqlEndpoint(
  'MYSQL_PRIMARY_URL',
  'mysql://flashsale:flashsale@127.0.0.1:13306/flashsale',
  'writes',
);

export const mysql = {
  primary,
  replica: mysqlEndpoint(
    'MYSQL_REPLICA_URL',
    'mysql://flashsale:flashsale@127.0.0.1:13307/flashsale',
    'cache-miss reads',
  ),
  migration: new Setting(
    'MYSQL_MIGRATION_URL',
    `the local \`${migrationUser}:${migrationUser}\` on \`MYSQL_PRIMARY_URL\`'s host, port and database`,
    `\`${MYSQL_FORM}\``,
    "the schema owner that applies migrations at start (the app's user has data rights only, no DDL); must name the primary's database",
    (read): Readonly<MysqlEndpoint> => {
      const { database, tls } = read.value(primary);
      const value = read.raw('MYSQL_MIGRATION_URL');
      if (value === undefined)
        return { ...read.value(primary), user: migrationUser, password: migrationUser };
      const migration = { ...parseMysqlUrl(read, 'MYSQL_MIGRATION_URL', value), tls };
      if (migration.user !== '' && migration.database !== database) {
        read.problems.push(
          `MYSQL_MIGRATION_URL names database ${JSON.stringify(migration.database)}, MYSQL_PRIMARY_URL ${JSON.stringify(database)}: migrations must apply to the app's database`,
        );
      }
      return migration;
    },
  ),
  poolSize: int('MYSQL_POOL_SIZE', {
    default: 32,
    min: 1,
    max: 1000,
    doc: 'connections per pool (primary and replica each)',
  }),
  discoveryMs: int('MYSQL_DISCOVERY_MS', {
    default: 2_000,
    min: 0,
    max: 600_000,
    unit: 'ms',
    doc: 'how often a node asks both MySQL servers which one is writable (the elected primary) and whether the other replicates from it: after a failover the pools follow the promoted server, and reads go to the primary while no replica follows it (0: never; the configured roles stay)',
  }),
};

const redisUrl = url('REDIS_URL', ['redis:', 'rediss:'], 'redis://[:password@]host:port[/db]', {
  default: 'rediss://flashsale:flashsale@127.0.0.1:16379',
  doc: 'single node when set without `REDIS_SENTINELS` (with Sentinel: its user, password and db); `rediss://` is TLS (also to the sentinels), `redis://` plaintext',
});

export const redis = {
  url: redisUrl,
  tls: text('REDIS_TLS_CA_FILE', {
    default: LOCAL_CA,
    doc: "PEM CA the Redis servers' (and sentinels') certificates are verified against, with a `rediss://` URL",
  }).map((caFile, read) => (read.value(redisUrl).startsWith('rediss:') ? { caFile } : null)),
  sentinels: hostPorts('REDIS_SENTINELS', {
    // The local stack's Sentinels unless a single node is named (REDIS_URL alone).
    default: (read) =>
      read.raw('REDIS_URL') === undefined ? '127.0.0.1:16381,127.0.0.1:16382,127.0.0.1:16383' : '',
    shown:
      "the local stack's `127.0.0.1:16381,127.0.0.1:16382,127.0.0.1:16383`; none when `REDIS_URL` is set alone",
    doc: 'the Sentinels to find the Redis primary through; blank: one node at `REDIS_URL`',
  }),
  sentinelName: text('REDIS_SENTINEL_NAME', { default: 'flashsale', doc: 'Sentinel master name' }),
  natMap: addressMap('REDIS_NAT_MAP', {
    doc: "an address the Sentinels report (primary, replica, another Sentinel) and the address this node reaches it at, for Sentinel behind NAT, a container network or a proxy (the chaos run's Redis cut goes through one)",
  }),
  keyPrefix: text('REDIS_KEY_PREFIX', { default: 'fs:', doc: 'prefix of every key the service writes' }),
};

const kafkaBrokers = hostPorts('KAFKA_BROKERS', {
  default: '127.0.0.1:19092,127.0.0.1:19192,127.0.0.1:19292',
  doc: "bootstrap brokers (the local stack's three nodes); at least one",
}).map((brokers, read) => {
  if (brokers.length === 0 && !read.reported('KAFKA_BROKERS'))
    read.problems.push('KAFKA_BROKERS: at least one broker host:port is required');
  return brokers.map((b) => `${b.host}:${b.port}`);
});

const saslUser = text('KAFKA_SASL_USERNAME', {
  default: '',
  shown: '—',
  doc: 'SASL user (with a mechanism)',
});
const saslPassword = text('KAFKA_SASL_PASSWORD', {
  default: '',
  shown: '—',
  doc: 'SASL password (with a mechanism)',
});
const kafkaTlsCaFile = text('KAFKA_TLS_CA_FILE', {
  default: LOCAL_CA,
  doc: "PEM CA the brokers' certificates are verified against, with `KAFKA_TLS=on`",
});

export const kafka = {
  brokers: kafkaBrokers,
  clientId: text('KAFKA_CLIENT_ID', { default: 'flash-sale', doc: "the service's Kafka client id" }),
  sasl: oneOf('KAFKA_SASL_MECHANISM', ['none', 'plain', 'scram-sha-256', 'scram-sha-512'], {
    default: 'none',
    doc: 'login to the brokers: a mechanism other than `none` needs `KAFKA_SASL_USERNAME` and `KAFKA_SASL_PASSWORD` (production: `scram-sha-512`; the local stack: none)',
  }).map(
    (mechanism, read) => {
      const username = read.value(saslUser);
      const password = read.value(saslPassword);
      if (mechanism === 'none') return null;
      if (username === '' || password === '')
        read.problems.push(
          `KAFKA_SASL_MECHANISM=${mechanism} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD`,
        );
      return { mechanism, username, password };
    },
    [saslUser, saslPassword],
  ),
  tls: oneOf('KAFKA_TLS', ['on', 'off'], {
    default: 'off',
    doc: "`on`: TLS to the brokers, certificates verified against `KAFKA_TLS_CA_FILE` (production: `on`; the local stack's brokers are PLAINTEXT on loopback)",
  }).map(
    (mode, read) => {
      const caFile = read.value(kafkaTlsCaFile);
      return mode === 'on' ? { caFile } : null;
    },
    [kafkaTlsCaFile],
  ),
  /** Topic names by event domain; created at start if missing. */
  topics: {
    inventory: text('KAFKA_TOPIC_INVENTORY', {
      default: 'flashsale.inventory',
      doc: 'topic of stock events, created at start if missing',
    }),
    orders: text('KAFKA_TOPIC_ORDERS', {
      default: 'flashsale.orders',
      doc: 'topic of order events, created at start if missing',
    }),
    payments: text('KAFKA_TOPIC_PAYMENTS', {
      default: 'flashsale.payments',
      doc: 'topic of payment events, created at start if missing',
    }),
  },
  partitions: int('KAFKA_TOPIC_PARTITIONS', {
    default: 6,
    min: 1,
    max: 10_000,
    doc: 'partitions of each topic it creates',
  }),
  replicationFactor: int('KAFKA_REPLICATION_FACTOR', {
    default: (read) => Math.min(3, Math.max(1, read.value(kafkaBrokers).length)),
    shown: 'the number of `KAFKA_BROKERS`, at most 3',
    min: 1,
    max: 10,
    doc: 'replicas of each topic it creates, with `min.insync.replicas` = replicas − 1 (at least 1): locally 3 and 2, production (two brokers) 2 and 1',
  }),
};

export const outbox = {
  pollMs: int('OUTBOX_POLL_MS', {
    default: 20,
    min: 1,
    max: 60_000,
    unit: 'ms',
    doc: "relay poll after a round with rows, doubling to 2 s while the outbox stays empty (this node's commits wake it at once; another node's are picked up within 2 s when idle; an empty poll is one query)",
  }),
  batchSize: int('OUTBOX_BATCH_SIZE', {
    default: 500,
    min: 1,
    max: 100_000,
    doc: 'most outbox rows (events) published in one Kafka send (at least one row)',
  }),
  lingerMs: int('OUTBOX_LINGER_MS', {
    default: 100,
    min: 0,
    max: 1_000,
    unit: 'ms',
    doc: "least time between the starts of two relay rounds woken by commits: the commits of 100 ms share one read, one Kafka send and one `sent_at` stamp (one MySQL commit), at any rate; events reach Kafka up to ~100 ms later; against 20 ms it halves the three brokers' CPU in `mix` (bench/RESULTS.md)",
  }),
  relayLock: text('OUTBOX_RELAY_LOCK', {
    // Named locks are server-wide: two services on one server each get a relay.
    default: (read) => `flashsale.outbox-relay.${read.value(primary).database}`.slice(0, 64),
    shown: '`flashsale.outbox-relay.<database>`',
    doc: "MySQL named lock (1 to 64 characters) electing the one relay per database (named locks are server-wide, hence the database in the name); the other nodes wait for it in MySQL (`GET_LOCK` with a 5 s timeout, again and again), so one of them takes over the moment the holder's connection closes (a crash included)",
  }).map((lock, read) => {
    if (lock === '' || lock.length > 64)
      read.problems.push(
        `OUTBOX_RELAY_LOCK=${JSON.stringify(lock)}: a MySQL lock name of 1 to 64 characters`,
      );
    return lock;
  }),
};

export const projection = {
  groupId: text('PROJECTION_GROUP_ID', {
    default: 'flashsale-sales-projection',
    doc: 'Kafka consumer group of the sales projection (one group per database it writes to)',
  }),
  fetchWaitMs: int('PROJECTION_FETCH_WAIT_MS', {
    default: 3_000,
    min: 100,
    max: 3_000,
    unit: 'ms',
    doc: "longest a fetch of the projection's consumer waits for 64 KiB of events, and its heartbeat interval: how late a trickle of events reaches the sales statistics, and what an idle node pays (one fetch per broker and one heartbeat per wait; with 3 s instead of 1 s an idle node took 0.41-0.61% of a core against 0.55-0.80%, side by side, bench/RESULTS.md); a node's shutdown waits up to this for the fetch in flight",
  }),
};

export const payment = {
  url: url('PAYMENT_URL', ['http:', 'https:'], 'http://host:port', {
    default: 'http://127.0.0.1:18090',
    doc: "base URL of the payment provider (the local stack's simulator by default)",
  }).map((value) => value.replace(/\/+$/, '')),
  timeoutMs: int('PAYMENT_TIMEOUT_MS', {
    default: 1_000,
    min: 10,
    max: 120_000,
    unit: 'ms',
    doc: 'timeout of connecting, and of an attempt from when its request is written (a call waiting for a free connection is not timed)',
  }),
  retries: int('PAYMENT_RETRIES', {
    default: 3,
    min: 0,
    max: 100,
    doc: 'retries after a retryable failure (5xx, timeout, connection error), with jittered backoff',
  }),
};
