import { hostname } from 'node:os';
import { isAddressOrRange } from './auth/client-ip.js';

/**
 * The only reader of process.env. `loadConfig` validates every setting, reports all problems in one
 * error, and returns a frozen, typed Config. Defaults point at the local stack (`npm run stack -- up`).
 */

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

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

export interface Config {
  /** Identifies this app node in logs, leases and node registration. Default `<hostname>:<PORT>`. */
  readonly nodeId: string;
  /** Interface the HTTP server binds. Default 127.0.0.1. */
  readonly host: string;
  /** HTTP port. Default 8080; 0 picks a free port. */
  readonly port: number;
  readonly logLevel: LogLevel;
  readonly mysql: {
    readonly primary: Readonly<MysqlEndpoint>;
    readonly replica: Readonly<MysqlEndpoint>;
    /**
     * The schema owner that applies migrations (DDL); the app's own user has data rights only. Same
     * database as the primary. Default: the local stack's `flashsale_migrate` on the primary's host, port
     * and database.
     */
    readonly migration: Readonly<MysqlEndpoint>;
    /** Connections per pool (primary and replica each). Default 32. */
    readonly poolSize: number;
    /**
     * How often each node asks both servers which one is writable (the elected primary) and whether the
     * other replicates from it, ms: after a failover the pools follow the promoted server, and reads go to
     * the primary while no replica follows it. 0: never (the configured roles stay). Default 2000.
     */
    readonly discoveryMs: number;
  };
  readonly redis: {
    /**
     * Single-node Redis URL; ignored when sentinels are set, except for its user, password, database and
     * scheme: `rediss://` is TLS (to sentinels too), `redis://` plaintext. Default
     * rediss://flashsale:flashsale@127.0.0.1:16379 (the local stack).
     */
    readonly url: string;
    /** TLS (a `rediss://` URL): servers are verified against this CA (REDIS_TLS_CA_FILE); null: plaintext. */
    readonly tls: { readonly caFile: string } | null;
    /**
     * Sentinel addresses `host:port`; empty for a single node. Default: the local stack's three Sentinels
     * (127.0.0.1:16381-16383) when REDIS_URL is not set either; none when REDIS_URL is set alone.
     */
    readonly sentinels: readonly { host: string; port: number }[];
    /** Sentinel master name. Default `flashsale`. */
    readonly sentinelName: string;
    /**
     * Addresses the Sentinels report (the primary, replicas, other Sentinels) mapped to the address this
     * node reaches each at: Sentinel behind NAT, a container network or a proxy. Empty by default.
     */
    readonly natMap: Readonly<Record<string, { readonly host: string; readonly port: number }>>;
    /** Prefix of every key the service writes. Default `fs:`. */
    readonly keyPrefix: string;
  };
  readonly kafka: {
    readonly brokers: readonly string[];
    readonly clientId: string;
    /** Topic names by event domain; created at start if missing. */
    readonly topics: { readonly inventory: string; readonly orders: string; readonly payments: string };
    /** Partitions of each topic when created. Default 6. */
    readonly partitions: number;
    /** SASL login to the brokers (KAFKA_SASL_MECHANISM, _USERNAME, _PASSWORD); null: none (the local stack). */
    readonly sasl: {
      readonly mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512';
      readonly username: string;
      readonly password: string;
    } | null;
    /** TLS to the brokers, verified against this CA (KAFKA_TLS=on, KAFKA_TLS_CA_FILE); null: plaintext. */
    readonly tls: { readonly caFile: string } | null;
    /**
     * Replication factor of each topic when created. Default: the number of KAFKA_BROKERS, at most 3 (the
     * local stack: 3; production, two brokers: 2). Writes need all but one replica in sync (topics.ts).
     */
    readonly replicationFactor: number;
  };
  readonly outbox: {
    /** Pause between outbox polls when nothing is waiting, ms. Default 20. */
    readonly pollMs: number;
    /** Most outbox rows published in one Kafka send. Default 500. */
    readonly batchSize: number;
    /**
     * Least time between the starts of two relay rounds woken by commits, ms. Default 10: under load,
     * the commits of 10 ms go out in one Kafka send and one `sent_at` stamp (one MySQL commit).
     */
    readonly lingerMs: number;
    /**
     * MySQL named lock (GET_LOCK) that elects the one relay of the primary's database. Named locks are
     * server-wide, so the default names the database: two services on one server each get a relay.
     * Default `flashsale.outbox-relay.<database>` (at most 64 characters).
     */
    readonly relayLock: string;
  };
  readonly projection: {
    /** Kafka consumer group of the sales projection. Default `flashsale-sales-projection`. */
    readonly groupId: string;
  };
  readonly payment: {
    /** Base URL of the payment provider. Default http://127.0.0.1:18090 (the local stack's simulator). */
    readonly url: string;
    /** Per-call timeout, ms. Default 1000. */
    readonly timeoutMs: number;
    /** Retries after a retryable failure (5xx, timeout, connection error), with backoff. Default 3. */
    readonly retries: number;
  };
  readonly cluster: {
    /** Shards products hash into; every node of a cluster must use the same number. Default 256. */
    readonly shardCount: number;
    /** Lifetime of a shard lease: a dead node's shards move after about this long, ms. Default 3000. */
    readonly leaseTtlMs: number;
    /** Pause between lease renewals and rebalances, ms. Default 500. */
    readonly leaseRenewMs: number;
    /**
     * While Redis cannot be reached (a Sentinel failover, an outage), a node keeps serving the shards it
     * holds for this long after it lost Redis, ms; MySQL row versions fence every write meanwhile. 0: drop
     * them when their lease could have expired, as after a pause. Default 10000 (twice the spec's 5 s
     * Redis failover).
     */
    readonly leaseOutageGraceMs: number;
    /** Host other nodes use to reach this one. Default HOST (127.0.0.1 when HOST is 0.0.0.0). */
    readonly advertiseHost: string;
    /** Shared secret of the node-to-node channel. Default a fixed local value: set it in production. */
    readonly peerSecret: string;
  };
  readonly saga: {
    /** A saga not terminal by then is compensated (payment voided, stock released), ms. Default 30000. */
    readonly deadlineMs: number;
    /** How long POST /purchases waits for a terminal saga before answering 202, ms. Default 2000. */
    readonly waitBudgetMs: number;
  };
  readonly http: {
    /** Largest request body accepted, bytes. Default 16384 (16 KiB). */
    readonly maxBodyBytes: number;
    /** Largest sum of a request's header names and values, bytes; past it 431. Default 8192 (8 KiB). */
    readonly maxHeaderBytes: number;
  };
  readonly purchase: {
    /** Longest a purchase may wait before it reaches the stock; after that it is dropped untouched, ms. Default 2000. */
    readonly deadlineMs: number;
    /** Longest the HTTP answer waits for the purchase's outcome before answering 504, ms. Default 5000. */
    readonly timeoutMs: number;
    /** Most units one order may buy. Default 10. */
    readonly maxQuantity: number;
    /** Requests one product actor may hold (queued, reserved, being written) before it answers 503. Default 5000. */
    readonly mailboxLimit: number;
    /** Idle time after which a product actor is passivated, ms. Default 60000. */
    readonly passivateAfterMs: number;
    /** Commit cycles the node's pipeline runs at once, each on a primary connection of its own. Default 2. */
    readonly commitLanes: number;
    /** Lifetime of the baseline path's per-product Redis lock, ms. Default 5000. */
    readonly baselineLockTtlMs: number;
    /**
     * Longest pause between two tries of the baseline's lock, ms (jittered exponential backoff from 2 ms).
     * Default 32. On one hot product at 200 concurrent requests (bench/RESULTS.md, 25 Nov, since the
     * baseline's confirmations stopped taking the lock) caps of 32, 256 and 1024 ms gave the same
     * throughput (195, 192, 195/s): the lock-held write is the limit. 32 had the shortest tail (p99 4.7 s
     * against 6.2 and 8.3 s) and no request past its deadline (against 2 and 38).
     */
    readonly baselineLockRetryMaxMs: number;
  };
  readonly cache: {
    /** Lifetime of cached product details, s. Default 300. */
    readonly detailsTtlSeconds: number;
    /** Lifetime of a cached stock (a safety net: every commit writes it through), ms. Default 5000. */
    readonly stockTtlMs: number;
    /** Products each node keeps in memory for reads. Default 50,000. */
    readonly memoryProducts: number;
    /** Longest a stock in memory is served with no feed message or reload confirming it, ms. Default 1000. */
    readonly memoryStockTtlMs: number;
  };
  /** WebSocket stock subscribers on `/ws` (README "WebSocket stock subscribers"). */
  readonly ws: {
    /** Products one connection may subscribe to. Default 100. */
    readonly maxSubscriptions: number;
    /** Largest client frame; a larger one closes the connection with 1009, bytes. Default 4096. */
    readonly maxFrameBytes: number;
    /** A connection silent this long is closed; the server pings it before that, s. Default 60. */
    readonly idleTimeoutSeconds: number;
    /** Unsent bytes a connection may hold before live changes skip it, bytes. Default 65536 (64 KiB). */
    readonly maxBackpressureBytes: number;
    /** A connection over the backpressure limit this long is closed with 4001, ms. Default 5000. */
    readonly slowConsumerMs: number;
  };
  /** Who callers are (README "Security"): JWT bearer tokens. */
  readonly auth: {
    /** JWKS URL of the identity provider (production); when set, AUTH_JWKS_FILE is ignored. */
    readonly jwksUrl: string | undefined;
    /** Local JWKS file (public keys). Default `.stack/auth/jwks.json`, written by `npm run stack -- up`. */
    readonly jwksFile: string;
    /** Accepted signature algorithms (never taken from the token). Default `EdDSA`. */
    readonly algorithms: readonly string[];
    /** Required `iss` claim. Default `flash-sale-local`. */
    readonly issuer: string;
    /** Required `aud` claim. Default `flash-sale`. */
    readonly audience: string;
    /** Tolerated clock difference for `exp` and `nbf`, s. Default 30. */
    readonly clockSkewSeconds: number;
    /** Verified tokens each node remembers until their `exp`. Default 100000. */
    readonly tokenCacheSize: number;
  };
  /** Rate limits (README "Rate limits"). Every limit is requests per second; 0 turns it off. */
  readonly rateLimit: {
    /** Purchases one user may make per second, shared by all nodes through Redis. Default 10. */
    readonly userPurchasesPerSecond: number;
    /** Requests one client IP may make per second to one node (every route and WebSocket upgrade). Default 200. */
    readonly ipRequestsPerSecond: number;
    /** Nodes sharing the user limit: while Redis is down each node allows 1/N of it. Default 2. */
    readonly nodes: number;
    /** Addresses and CIDR ranges whose `X-Forwarded-For` is believed (the balancer). Default `127.0.0.1,::1`. */
    readonly trustedProxies: readonly string[];
  };
  /** Socket addresses and CIDR ranges that may read `/metrics` directly (never through a proxy). Default `127.0.0.1,::1`. */
  readonly metricsAllowFrom: readonly string[];
  /** `production` makes unsafe local defaults (the built-in PEER_SECRET) an error. From NODE_ENV. */
  readonly production: boolean;
  /** Time a dependency check may take before /ready calls it down, ms. Default 1000. */
  readonly readyCheckTimeoutMs: number;
  /** UWS_USE_FALLBACK asks uWebSockets.js for its slow pure-Node fallback; the service refuses to start then. */
  readonly uwsFallbackRequested: boolean;
  /** Time SIGTERM waits for in-flight requests before closing clients, ms. Default 10000. */
  readonly shutdownGraceMs: number;
  /** The consistency monitor (README "Observability"): compares the stores of the products a node owns. */
  readonly consistency: {
    /** Pause between two rounds, ms; 0 turns the monitor off. Default 30000. */
    readonly intervalMs: number;
    /** Products compared per round. Default 100. */
    readonly productsPerRound: number;
  };
}

/** Signature algorithms AUTH_ALGORITHMS may name (asymmetric only: a shared HMAC secret could mint tokens). */
export const JWT_ALGORITHMS = ['EdDSA', 'Ed25519', 'ES256', 'ES384', 'RS256', 'PS256'] as const;

/** Every environment variable the service reads (docker-compose.yml is checked against this list). */
export const CONFIG_ENV_NAMES = [
  'NODE_ID',
  'HOST',
  'PORT',
  'LOG_LEVEL',
  'MYSQL_PRIMARY_URL',
  'MYSQL_REPLICA_URL',
  'MYSQL_POOL_SIZE',
  'MYSQL_DISCOVERY_MS',
  'MYSQL_MIGRATION_URL',
  'MYSQL_TLS',
  'MYSQL_TLS_CA_FILE',
  'REDIS_URL',
  'REDIS_SENTINELS',
  'REDIS_SENTINEL_NAME',
  'REDIS_NAT_MAP',
  'REDIS_KEY_PREFIX',
  'REDIS_TLS_CA_FILE',
  'KAFKA_BROKERS',
  'KAFKA_CLIENT_ID',
  'KAFKA_SASL_MECHANISM',
  'KAFKA_SASL_USERNAME',
  'KAFKA_SASL_PASSWORD',
  'KAFKA_TLS',
  'KAFKA_TLS_CA_FILE',
  'KAFKA_TOPIC_INVENTORY',
  'KAFKA_TOPIC_ORDERS',
  'KAFKA_TOPIC_PAYMENTS',
  'KAFKA_TOPIC_PARTITIONS',
  'KAFKA_REPLICATION_FACTOR',
  'OUTBOX_POLL_MS',
  'OUTBOX_BATCH_SIZE',
  'OUTBOX_LINGER_MS',
  'OUTBOX_RELAY_LOCK',
  'PROJECTION_GROUP_ID',
  'PAYMENT_URL',
  'PAYMENT_TIMEOUT_MS',
  'PAYMENT_RETRIES',
  'SHARD_COUNT',
  'LEASE_TTL_MS',
  'LEASE_RENEW_MS',
  'LEASE_OUTAGE_GRACE_MS',
  'ADVERTISE_HOST',
  'PEER_SECRET',
  'SAGA_DEADLINE_MS',
  'PURCHASE_WAIT_BUDGET_MS',
  'MAX_BODY_BYTES',
  'MAX_HEADER_BYTES',
  'PURCHASE_DEADLINE_MS',
  'PURCHASE_TIMEOUT_MS',
  'MAX_QUANTITY_PER_ORDER',
  'MAILBOX_LIMIT',
  'ACTOR_PASSIVATE_AFTER_MS',
  'COMMIT_LANES',
  'BASELINE_LOCK_TTL_MS',
  'BASELINE_LOCK_RETRY_MAX_MS',
  'CACHE_DETAILS_TTL_S',
  'CACHE_STOCK_TTL_MS',
  'CACHE_MEMORY_PRODUCTS',
  'CACHE_MEMORY_STOCK_TTL_MS',
  'AUTH_JWKS_URL',
  'AUTH_JWKS_FILE',
  'AUTH_ALGORITHMS',
  'AUTH_ISSUER',
  'AUTH_AUDIENCE',
  'AUTH_CLOCK_SKEW_S',
  'AUTH_TOKEN_CACHE_SIZE',
  'RATE_LIMIT_USER_PURCHASES_PER_S',
  'RATE_LIMIT_IP_PER_S',
  'RATE_LIMIT_NODES',
  'TRUSTED_PROXIES',
  'METRICS_ALLOW_FROM',
  'NODE_ENV',
  'READY_CHECK_TIMEOUT_MS',
  'SHUTDOWN_GRACE_MS',
  'WS_MAX_SUBSCRIPTIONS',
  'WS_MAX_FRAME_BYTES',
  'WS_IDLE_TIMEOUT_S',
  'WS_MAX_BACKPRESSURE_BYTES',
  'WS_SLOW_CONSUMER_MS',
  'UWS_USE_FALLBACK',
  'CONSISTENCY_CHECK_INTERVAL_MS',
  'CONSISTENCY_CHECK_PRODUCTS',
] as const;

export type ConfigEnvName = (typeof CONFIG_ENV_NAMES)[number];
export type Env = Partial<Record<string, string>>;

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration (${problems.length} problem(s)):\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export const defaults = {
  host: '127.0.0.1',
  port: 8080,
  logLevel: 'info',
  mysqlPrimaryUrl: 'mysql://flashsale:flashsale@127.0.0.1:13306/flashsale',
  mysqlReplicaUrl: 'mysql://flashsale:flashsale@127.0.0.1:13307/flashsale',
  mysqlPoolSize: 32,
  mysqlDiscoveryMs: 2_000,
  mysqlMigrationUser: 'flashsale_migrate',
  mysqlMigrationPassword: 'flashsale_migrate',
  mysqlTls: 'on',
  mysqlTlsCaFile: '.stack/tls/ca.pem', // the local stack's CA (scripts/stack/tls.ts)
  redisUrl: 'rediss://flashsale:flashsale@127.0.0.1:16379',
  redisTlsCaFile: '.stack/tls/ca.pem',
  redisSentinels: '127.0.0.1:16381,127.0.0.1:16382,127.0.0.1:16383',
  redisSentinelName: 'flashsale',
  redisKeyPrefix: 'fs:',
  kafkaBrokers: '127.0.0.1:19092,127.0.0.1:19192,127.0.0.1:19292', // the local stack's three Kafka nodes
  kafkaClientId: 'flash-sale',
  kafkaSaslMechanism: 'none',
  kafkaTls: 'off', // the local stack's broker is PLAINTEXT on loopback; production: on (docker-compose.yml)
  kafkaTopicInventory: 'flashsale.inventory',
  kafkaTopicOrders: 'flashsale.orders',
  kafkaTopicPayments: 'flashsale.payments',
  kafkaTopicPartitions: 6,
  kafkaReplicationFactor: 3, // at most: never more than the brokers listed
  outboxPollMs: 20,
  outboxBatchSize: 500,
  outboxLingerMs: 100,
  projectionGroupId: 'flashsale-sales-projection',
  paymentUrl: 'http://127.0.0.1:18090',
  paymentTimeoutMs: 1_000, // 1 s
  paymentRetries: 3,
  shardCount: 256,
  leaseTtlMs: 3_000, // 3 s: with 500 ms renewals a dead node's shards move within about 3.5 s
  leaseRenewMs: 500,
  leaseOutageGraceMs: 10_000,
  peerSecret: 'flashsale-local-peer-secret',
  sagaDeadlineMs: 30_000, // 30 s
  purchaseWaitBudgetMs: 2_000, // 2 s
  maxBodyBytes: 16 * 1024, // 16 KiB
  maxHeaderBytes: 8 * 1024, // 8 KiB, as nginx's large_client_header_buffers
  purchaseDeadlineMs: 2_000, // 2 s
  purchaseTimeoutMs: 5_000, // 5 s
  maxQuantityPerOrder: 10,
  mailboxLimit: 5_000, // about 250 ms of work at 20,000 commits/s on one product
  passivateAfterMs: 60_000, // 1 min
  commitLanes: 2,
  baselineLockTtlMs: 5_000, // 5 s
  baselineLockRetryMaxMs: 32,
  cacheDetailsTtlSeconds: 300, // 5 min
  cacheStockTtlMs: 5_000, // 5 s
  cacheMemoryProducts: 50_000,
  cacheMemoryStockTtlMs: 1_000, // 1 s
  consistencyCheckIntervalMs: 30_000, // 30 s
  consistencyCheckProducts: 100,
  authJwksFile: '.stack/auth/jwks.json',
  authAlgorithms: 'EdDSA',
  authIssuer: 'flash-sale-local',
  authAudience: 'flash-sale',
  authClockSkewSeconds: 30,
  authTokenCacheSize: 100_000,
  rateLimitUserPurchasesPerSecond: 10,
  rateLimitIpPerSecond: 200,
  rateLimitNodes: 2,
  trustedProxies: '127.0.0.1,::1',
  metricsAllowFrom: '127.0.0.1,::1',
  readyCheckTimeoutMs: 1_000, // 1 s
  shutdownGraceMs: 10_000, // 10 s
  wsMaxSubscriptions: 100,
  wsMaxFrameBytes: 4 * 1024, // 4 KiB
  wsIdleTimeoutSeconds: 60, // 1 min
  wsMaxBackpressureBytes: 64 * 1024, // 64 KiB
  wsSlowConsumerMs: 5_000, // 5 s
} as const;

/** Reads env values one by one, recording every problem instead of stopping at the first. */
class EnvReader {
  readonly problems: string[] = [];
  constructor(private readonly env: Env) {}

  raw(name: ConfigEnvName): string | undefined {
    const value = this.env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  string(name: ConfigEnvName, fallback: string): string {
    return this.raw(name) ?? fallback;
  }

  int(name: ConfigEnvName, fallback: number, min: number, max: number): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const n = Number(value);
    if (!/^-?\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
      this.problems.push(`${name}=${JSON.stringify(value)}: expected an integer from ${min} to ${max}`);
      return fallback;
    }
    return n;
  }

  oneOf<T extends string>(name: ConfigEnvName, fallback: T, allowed: readonly T[]): T {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    if (!(allowed as readonly string[]).includes(value)) {
      this.problems.push(`${name}=${JSON.stringify(value)}: expected one of ${allowed.join(', ')}`);
      return fallback;
    }
    return value as T;
  }

  mysqlUrl(name: ConfigEnvName, fallback: string): MysqlAddress {
    const value = this.raw(name) ?? fallback;
    const url = parseUrl(value);
    if (url === undefined || url.protocol !== 'mysql:' || url.hostname === '' || url.pathname.length < 2) {
      this.problems.push(
        `${name}=${JSON.stringify(value)}: expected mysql://user:password@host:port/database`,
      );
      return { host: '127.0.0.1', port: 3306, user: '', password: '', database: '' };
    }
    return {
      host: url.hostname,
      port: url.port === '' ? 3306 : Number(url.port),
      user: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password),
      database: decodeURIComponent(url.pathname.slice(1)),
    };
  }

  redisUrl(name: ConfigEnvName, fallback: string): string {
    const value = this.raw(name) ?? fallback;
    const url = parseUrl(value);
    if (
      url === undefined ||
      (url.protocol !== 'redis:' && url.protocol !== 'rediss:') ||
      url.hostname === ''
    ) {
      this.problems.push(`${name}=${JSON.stringify(value)}: expected redis://[:password@]host:port[/db]`);
      return fallback;
    }
    return value;
  }

  httpUrl(name: ConfigEnvName, fallback: string): string {
    const value = this.raw(name) ?? fallback;
    const url = parseUrl(value);
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') {
      this.problems.push(`${name}=${JSON.stringify(value)}: expected http://host:port`);
      return fallback;
    }
    return value.replace(/\/+$/, '');
  }

  /** A comma-separated list, each item one of `allowed`. */
  list(name: ConfigEnvName, fallback: string, allowed: readonly string[]): string[] {
    const items = (this.raw(name) ?? fallback)
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    const bad = items.filter((item) => !allowed.includes(item));
    if (bad.length > 0 || items.length === 0) {
      this.problems.push(
        `${name}=${JSON.stringify(this.raw(name))}: expected a list of ${allowed.join(', ')}`,
      );
      return fallback.split(',');
    }
    return items;
  }

  /** A comma-separated list of IP addresses and CIDR ranges; set but empty is an empty list. */
  addresses(name: ConfigEnvName, fallback: string): string[] {
    const value = this.raw(name) ?? (this.env[name] === undefined ? fallback : '');
    const items = value
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    const bad = items.filter((item) => !isAddressOrRange(item));
    if (bad.length > 0) {
      this.problems.push(
        `${name}: ${bad.map((b) => JSON.stringify(b)).join(', ')}: expected IP addresses or CIDR ranges (10.0.0.0/8)`,
      );
      return [];
    }
    return items;
  }

  hostPorts(name: ConfigEnvName, fallback: string): { host: string; port: number }[] {
    const value = this.raw(name) ?? fallback;
    if (value === '') return [];
    const out: { host: string; port: number }[] = [];
    for (const item of value.split(',').map((s) => s.trim())) {
      const address = parseHostPort(item);
      if (address === undefined) {
        this.problems.push(
          `${name}: ${JSON.stringify(item)} is not host:port (comma-separated list expected)`,
        );
        continue;
      }
      out.push(address);
    }
    return out;
  }

  /** `host:port=host:port,…` (what a server reports = where this node reaches it); empty when unset. */
  addressMap(name: ConfigEnvName): Record<string, { host: string; port: number }> {
    const out: Record<string, { host: string; port: number }> = {};
    const value = this.raw(name) ?? '';
    if (value === '') return out;
    for (const item of value.split(',').map((s) => s.trim())) {
      const [from = '', to = '', extra] = item.split('=');
      const reported = parseHostPort(from);
      const reached = parseHostPort(to);
      if (reported === undefined || reached === undefined || extra !== undefined) {
        this.problems.push(
          `${name}: ${JSON.stringify(item)} is not host:port=host:port (comma-separated list expected)`,
        );
        continue;
      }
      out[`${reported.host}:${reported.port}`] = reached;
    }
    return out;
  }
}

/** `host:port` (a name, an IPv4 address or a bracketed IPv6 one; port 1-65535), else undefined. */
function parseHostPort(item: string): { host: string; port: number } | undefined {
  const match = /^([A-Za-z0-9.\-_]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(item);
  const port = match ? Number(match[2]) : 0;
  return match && port >= 1 && port <= 65535 ? { host: match[1]!, port } : undefined;
}

function parseUrl(value: string): URL | undefined {
  try {
    return new URL(value);
  } catch {
    return undefined;
  }
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/** MYSQL_MIGRATION_URL, by default the local migration user on the primary's server and database. */
function mysqlMigration(read: EnvReader, primary: MysqlEndpoint): MysqlEndpoint {
  if (read.raw('MYSQL_MIGRATION_URL') === undefined)
    return { ...primary, user: defaults.mysqlMigrationUser, password: defaults.mysqlMigrationPassword };
  const migration = { ...read.mysqlUrl('MYSQL_MIGRATION_URL', ''), tls: primary.tls };
  if (migration.user !== '' && migration.database !== primary.database) {
    read.problems.push(
      `MYSQL_MIGRATION_URL names database ${JSON.stringify(migration.database)}, MYSQL_PRIMARY_URL ${JSON.stringify(primary.database)}: migrations must apply to the app's database`,
    );
  }
  return migration;
}

/** KAFKA_TLS=on: brokers verified against KAFKA_TLS_CA_FILE (default the local stack's CA). */
function kafkaTls(read: EnvReader): Config['kafka']['tls'] {
  const caFile = read.string('KAFKA_TLS_CA_FILE', defaults.mysqlTlsCaFile);
  return read.oneOf('KAFKA_TLS', defaults.kafkaTls, ['on', 'off'] as const) === 'on' ? { caFile } : null;
}

/** KAFKA_SASL_*: a mechanism other than `none` needs a username and a password. */
function kafkaSasl(read: EnvReader): Config['kafka']['sasl'] {
  const mechanism = read.oneOf('KAFKA_SASL_MECHANISM', defaults.kafkaSaslMechanism, [
    'none',
    'plain',
    'scram-sha-256',
    'scram-sha-512',
  ] as const);
  const username = read.string('KAFKA_SASL_USERNAME', '');
  const password = read.string('KAFKA_SASL_PASSWORD', '');
  if (mechanism === 'none') return null;
  if (username === '' || password === '')
    read.problems.push(`KAFKA_SASL_MECHANISM=${mechanism} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD`);
  return { mechanism, username, password };
}

/** Builds the Config from an environment; throws one ConfigError naming every bad setting. */
export function loadConfig(env: Env = process.env): Config {
  const read = new EnvReader(env);
  const port = read.int('PORT', defaults.port, 0, 65535);
  const brokers = read.hostPorts('KAFKA_BROKERS', defaults.kafkaBrokers);
  if (brokers.length === 0 && read.problems.every((p) => !p.startsWith('KAFKA_BROKERS'))) {
    read.problems.push('KAFKA_BROKERS: at least one broker host:port is required');
  }
  const mysqlTls =
    read.oneOf('MYSQL_TLS', defaults.mysqlTls, ['on', 'off'] as const) === 'on'
      ? { caFile: read.string('MYSQL_TLS_CA_FILE', defaults.mysqlTlsCaFile) }
      : null;
  const primary = { ...read.mysqlUrl('MYSQL_PRIMARY_URL', defaults.mysqlPrimaryUrl), tls: mysqlTls };
  const redisUrl = read.redisUrl('REDIS_URL', defaults.redisUrl);
  const config: Config = {
    nodeId: read.string('NODE_ID', `${hostname()}:${port}`),
    host: read.string('HOST', defaults.host),
    port,
    logLevel: read.oneOf('LOG_LEVEL', defaults.logLevel, LOG_LEVELS),
    mysql: {
      primary,
      replica: { ...read.mysqlUrl('MYSQL_REPLICA_URL', defaults.mysqlReplicaUrl), tls: mysqlTls },
      migration: mysqlMigration(read, primary),
      poolSize: read.int('MYSQL_POOL_SIZE', defaults.mysqlPoolSize, 1, 1000),
      discoveryMs: read.int('MYSQL_DISCOVERY_MS', defaults.mysqlDiscoveryMs, 0, 600_000),
    },
    redis: {
      url: redisUrl,
      tls: redisUrl.startsWith('rediss:')
        ? { caFile: read.string('REDIS_TLS_CA_FILE', defaults.redisTlsCaFile) }
        : null,
      // The local stack's Sentinels unless a single node is named (REDIS_URL alone).
      sentinels: read.hostPorts(
        'REDIS_SENTINELS',
        read.raw('REDIS_URL') === undefined ? defaults.redisSentinels : '',
      ),
      sentinelName: read.string('REDIS_SENTINEL_NAME', defaults.redisSentinelName),
      natMap: read.addressMap('REDIS_NAT_MAP'),
      keyPrefix: read.string('REDIS_KEY_PREFIX', defaults.redisKeyPrefix),
    },
    kafka: {
      brokers: brokers.map((b) => `${b.host}:${b.port}`),
      clientId: read.string('KAFKA_CLIENT_ID', defaults.kafkaClientId),
      sasl: kafkaSasl(read),
      tls: kafkaTls(read),
      topics: {
        inventory: read.string('KAFKA_TOPIC_INVENTORY', defaults.kafkaTopicInventory),
        orders: read.string('KAFKA_TOPIC_ORDERS', defaults.kafkaTopicOrders),
        payments: read.string('KAFKA_TOPIC_PAYMENTS', defaults.kafkaTopicPayments),
      },
      partitions: read.int('KAFKA_TOPIC_PARTITIONS', defaults.kafkaTopicPartitions, 1, 10_000),
      replicationFactor: read.int(
        'KAFKA_REPLICATION_FACTOR',
        Math.min(defaults.kafkaReplicationFactor, Math.max(1, brokers.length)),
        1,
        10,
      ),
    },
    outbox: {
      pollMs: read.int('OUTBOX_POLL_MS', defaults.outboxPollMs, 1, 60_000),
      batchSize: read.int('OUTBOX_BATCH_SIZE', defaults.outboxBatchSize, 1, 100_000),
      lingerMs: read.int('OUTBOX_LINGER_MS', defaults.outboxLingerMs, 0, 1_000),
      relayLock: read.string('OUTBOX_RELAY_LOCK', `flashsale.outbox-relay.${primary.database}`.slice(0, 64)),
    },
    projection: {
      groupId: read.string('PROJECTION_GROUP_ID', defaults.projectionGroupId),
    },
    payment: {
      url: read.httpUrl('PAYMENT_URL', defaults.paymentUrl),
      timeoutMs: read.int('PAYMENT_TIMEOUT_MS', defaults.paymentTimeoutMs, 10, 120_000),
      retries: read.int('PAYMENT_RETRIES', defaults.paymentRetries, 0, 100),
    },
    cluster: {
      shardCount: read.int('SHARD_COUNT', defaults.shardCount, 1, 65_536),
      leaseTtlMs: read.int('LEASE_TTL_MS', defaults.leaseTtlMs, 200, 600_000),
      leaseRenewMs: read.int('LEASE_RENEW_MS', defaults.leaseRenewMs, 50, 600_000),
      leaseOutageGraceMs: read.int('LEASE_OUTAGE_GRACE_MS', defaults.leaseOutageGraceMs, 0, 600_000),
      advertiseHost: '',
      peerSecret: read.string('PEER_SECRET', defaults.peerSecret),
    },
    saga: {
      deadlineMs: read.int('SAGA_DEADLINE_MS', defaults.sagaDeadlineMs, 100, 86_400_000),
      waitBudgetMs: read.int('PURCHASE_WAIT_BUDGET_MS', defaults.purchaseWaitBudgetMs, 0, 120_000),
    },
    http: {
      maxBodyBytes: read.int('MAX_BODY_BYTES', defaults.maxBodyBytes, 256, 16 * 1024 * 1024),
      maxHeaderBytes: read.int('MAX_HEADER_BYTES', defaults.maxHeaderBytes, 1024, 1024 * 1024),
    },
    purchase: {
      deadlineMs: read.int('PURCHASE_DEADLINE_MS', defaults.purchaseDeadlineMs, 10, 60_000),
      timeoutMs: read.int('PURCHASE_TIMEOUT_MS', defaults.purchaseTimeoutMs, 10, 120_000),
      maxQuantity: read.int('MAX_QUANTITY_PER_ORDER', defaults.maxQuantityPerOrder, 1, 1_000_000),
      mailboxLimit: read.int('MAILBOX_LIMIT', defaults.mailboxLimit, 1, 10_000_000),
      passivateAfterMs: read.int('ACTOR_PASSIVATE_AFTER_MS', defaults.passivateAfterMs, 10, 86_400_000),
      commitLanes: read.int('COMMIT_LANES', defaults.commitLanes, 1, 64),
      baselineLockTtlMs: read.int('BASELINE_LOCK_TTL_MS', defaults.baselineLockTtlMs, 100, 600_000),
      baselineLockRetryMaxMs: read.int(
        'BASELINE_LOCK_RETRY_MAX_MS',
        defaults.baselineLockRetryMaxMs,
        2,
        10_000,
      ),
    },
    cache: {
      detailsTtlSeconds: read.int('CACHE_DETAILS_TTL_S', defaults.cacheDetailsTtlSeconds, 1, 86_400),
      stockTtlMs: read.int('CACHE_STOCK_TTL_MS', defaults.cacheStockTtlMs, 100, 3_600_000),
      memoryProducts: read.int('CACHE_MEMORY_PRODUCTS', defaults.cacheMemoryProducts, 0, 10_000_000),
      memoryStockTtlMs: read.int('CACHE_MEMORY_STOCK_TTL_MS', defaults.cacheMemoryStockTtlMs, 0, 60_000),
    },
    ws: {
      maxSubscriptions: read.int('WS_MAX_SUBSCRIPTIONS', defaults.wsMaxSubscriptions, 1, 10_000),
      maxFrameBytes: read.int('WS_MAX_FRAME_BYTES', defaults.wsMaxFrameBytes, 256, 1024 * 1024),
      // uWS checks timeouts every 4 s: below 8 s a connection could be closed before its ping is answered.
      idleTimeoutSeconds: read.int('WS_IDLE_TIMEOUT_S', defaults.wsIdleTimeoutSeconds, 8, 3_600),
      maxBackpressureBytes: read.int(
        'WS_MAX_BACKPRESSURE_BYTES',
        defaults.wsMaxBackpressureBytes,
        1024,
        64 * 1024 * 1024,
      ),
      slowConsumerMs: read.int('WS_SLOW_CONSUMER_MS', defaults.wsSlowConsumerMs, 100, 600_000),
    },
    auth: {
      jwksUrl: read.raw('AUTH_JWKS_URL') === undefined ? undefined : read.httpUrl('AUTH_JWKS_URL', ''),
      jwksFile: read.string('AUTH_JWKS_FILE', defaults.authJwksFile),
      algorithms: read.list('AUTH_ALGORITHMS', defaults.authAlgorithms, JWT_ALGORITHMS),
      issuer: read.string('AUTH_ISSUER', defaults.authIssuer),
      audience: read.string('AUTH_AUDIENCE', defaults.authAudience),
      clockSkewSeconds: read.int('AUTH_CLOCK_SKEW_S', defaults.authClockSkewSeconds, 0, 300),
      tokenCacheSize: read.int('AUTH_TOKEN_CACHE_SIZE', defaults.authTokenCacheSize, 0, 10_000_000),
    },
    rateLimit: {
      userPurchasesPerSecond: read.int(
        'RATE_LIMIT_USER_PURCHASES_PER_S',
        defaults.rateLimitUserPurchasesPerSecond,
        0,
        1_000_000,
      ),
      ipRequestsPerSecond: read.int('RATE_LIMIT_IP_PER_S', defaults.rateLimitIpPerSecond, 0, 100_000_000),
      nodes: read.int('RATE_LIMIT_NODES', defaults.rateLimitNodes, 1, 1_000),
      trustedProxies: read.addresses('TRUSTED_PROXIES', defaults.trustedProxies),
    },
    metricsAllowFrom: read.addresses('METRICS_ALLOW_FROM', defaults.metricsAllowFrom),
    production: read.raw('NODE_ENV') === 'production',
    readyCheckTimeoutMs: read.int('READY_CHECK_TIMEOUT_MS', defaults.readyCheckTimeoutMs, 50, 60_000),
    shutdownGraceMs: read.int('SHUTDOWN_GRACE_MS', defaults.shutdownGraceMs, 0, 600_000),
    consistency: {
      intervalMs: read.int(
        'CONSISTENCY_CHECK_INTERVAL_MS',
        defaults.consistencyCheckIntervalMs,
        0,
        86_400_000,
      ),
      productsPerRound: read.int('CONSISTENCY_CHECK_PRODUCTS', defaults.consistencyCheckProducts, 1, 10_000),
    },
    uwsFallbackRequested: !['', '0', 'false'].includes((read.raw('UWS_USE_FALLBACK') ?? '').toLowerCase()),
  };
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  (config.cluster as { advertiseHost: string }).advertiseHost = read.string('ADVERTISE_HOST', host);
  if (config.cluster.leaseRenewMs * 2 > config.cluster.leaseTtlMs) {
    read.problems.push(
      `LEASE_RENEW_MS=${config.cluster.leaseRenewMs} must be at most half of LEASE_TTL_MS=${config.cluster.leaseTtlMs}, or leases lapse between renewals`,
    );
  }
  if (config.purchase.timeoutMs < config.purchase.deadlineMs) {
    read.problems.push(
      `PURCHASE_TIMEOUT_MS=${config.purchase.timeoutMs} must be at least PURCHASE_DEADLINE_MS=${config.purchase.deadlineMs}`,
    );
  }
  if (config.production && config.cluster.peerSecret === defaults.peerSecret) {
    read.problems.push(
      'PEER_SECRET is the built-in local value, which NODE_ENV=production refuses: set a secret of your own (at least 16 characters)',
    );
  }
  if (config.production && config.cluster.peerSecret.length < 16) {
    read.problems.push('PEER_SECRET must be at least 16 characters when NODE_ENV=production');
  }
  const lock = config.outbox.relayLock;
  if (lock === '' || lock.length > 64) {
    read.problems.push(`OUTBOX_RELAY_LOCK=${JSON.stringify(lock)}: a MySQL lock name of 1 to 64 characters`);
  }
  if (read.problems.length > 0) throw new ConfigError(read.problems);
  return deepFreeze(config);
}
