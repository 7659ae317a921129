import { hostname } from 'node:os';
import { Setting, addresses, int, oneOf, text } from './setting.js';
import { auth, cache, rateLimit, ws } from './edge.js';
import { kafka, mysql, outbox, payment, projection, redis } from './stores.js';

/**
 * The settings table: every setting once, with its environment variable, parser, default (with its unit),
 * bounds and meaning. Its shape is the `Config`'s: a group's variables start with the group's name
 * (`lease.ttlMs` is LEASE_TTL_MS), a top-level setting's variable is its own name (`shardCount` is
 * SHARD_COUNT). `loadConfig`, `Config`, `CONFIG_ENV_NAMES` and the README's table come from it
 * (`npx tsx scripts/config-table.ts` rewrites the README's). Groups of the servers it talks to are in
 * `stores.ts`, those of its edge (caches, WebSocket, auth, rate limits) in `edge.ts`. Defaults fit the
 * local stack.
 */

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export { JWT_ALGORITHMS } from './edge.js';

/** PEER_SECRET's built-in value, for the local stack only: NODE_ENV=production refuses it. */
const LOCAL_PEER_SECRET = 'flashsale-local-peer-secret';

/** Variables the service no longer reads, by the name that replaced them: setting one is an error. */
export const RENAMED_ENV: Readonly<Record<string, string>> = {
  MAX_QUANTITY_PER_ORDER: 'PURCHASE_MAX_QUANTITY',
  TRUSTED_PROXIES: 'RATE_LIMIT_TRUSTED_PROXIES',
};

const flag = (env: string, doc: string, parse: (raw: string | undefined) => boolean): Setting<boolean> =>
  new Setting(env, '—', 'text', doc, (read) => parse(read.raw(env)));

const leaseTtlMs = int('LEASE_TTL_MS', {
  default: 3_000, // with 500 ms renewals a dead node's shards move within about 3.5 s
  min: 200,
  max: 600_000,
  unit: 'ms',
  doc: "lifetime of a shard lease: a dead node's shards move after about this long",
});

const purchaseDeadlineMs = int('PURCHASE_DEADLINE_MS', {
  default: 2_000,
  min: 10,
  max: 60_000,
  unit: 'ms',
  doc: 'a purchase that has not reached the stock by then is dropped untouched (504)',
});

const host = text('HOST', { default: '127.0.0.1', doc: 'interface the HTTP server binds' });
const port = int('PORT', { default: 8080, min: 0, max: 65535, doc: 'HTTP port; 0 picks a free one' });
const production = flag(
  'NODE_ENV',
  '`production` refuses unsafe local defaults (the built-in `PEER_SECRET`, a secret under 16 characters)',
  (raw) => raw === 'production',
);

export const settings = {
  nodeId: text('NODE_ID', {
    default: (read) => `${hostname()}:${read.value(port)}`,
    shown: '`<hostname>:<PORT>`',
    doc: "this node's name in logs, leases and the membership (unique per node)",
  }),
  host,
  port,
  logLevel: oneOf('LOG_LEVEL', LOG_LEVELS, {
    default: 'info',
    doc: '`debug` adds each request\'s trail by request id (README "Logs")',
  }),
  production,
  mysql,
  redis,
  kafka,
  outbox,
  projection,
  payment,
  shardCount: int('SHARD_COUNT', {
    default: 256,
    min: 1,
    max: 65_536,
    doc: 'shards products hash into; every node of a cluster must use the same number',
  }),
  lease: {
    ttlMs: leaseTtlMs,
    renewMs: int('LEASE_RENEW_MS', {
      default: 500,
      min: 50,
      max: 600_000,
      unit: 'ms',
      doc: 'pause between lease renewals and rebalances: at most half of `LEASE_TTL_MS`',
    }).map((renewMs, read) => {
      const ttlMs = read.value(leaseTtlMs);
      if (renewMs * 2 > ttlMs)
        read.problems.push(
          `LEASE_RENEW_MS=${renewMs} must be at most half of LEASE_TTL_MS=${ttlMs}, or leases lapse between renewals`,
        );
      return renewMs;
    }),
    outageGraceMs: int('LEASE_OUTAGE_GRACE_MS', {
      default: 10_000, // twice the specification's 5 s Redis failover
      min: 0,
      max: 600_000,
      unit: 'ms',
      doc: 'how long a node keeps serving the shards it holds after it lost Redis (a Sentinel failover, an outage); MySQL row versions fence every write meanwhile (0: drop them when their leases could have expired, as after a pause)',
    }),
  },
  advertiseHost: text('ADVERTISE_HOST', {
    default: (read) => {
      const bound = read.value(host);
      return bound === '0.0.0.0' || bound === '::' ? '127.0.0.1' : bound;
    },
    shown: '`HOST` (127.0.0.1 for 0.0.0.0)',
    doc: 'the host other nodes reach this one at (with its `PORT`)',
  }),
  peerSecret: text('PEER_SECRET', {
    default: LOCAL_PEER_SECRET,
    shown: 'a fixed local value',
    doc: 'shared secret of the node-to-node channel; `NODE_ENV=production` refuses the default and secrets under 16 characters',
  }).map((secret, read) => {
    if (read.value(production) && secret === LOCAL_PEER_SECRET)
      read.problems.push(
        'PEER_SECRET is the built-in local value, which NODE_ENV=production refuses: set a secret of your own (at least 16 characters)',
      );
    if (read.value(production) && secret.length < 16)
      read.problems.push('PEER_SECRET must be at least 16 characters when NODE_ENV=production');
    return secret;
  }),
  saga: {
    deadlineMs: int('SAGA_DEADLINE_MS', {
      default: 30_000,
      min: 100,
      max: 86_400_000,
      unit: 'ms',
      doc: 'a saga not ended by then is compensated: its payment voided, the order cancelled, the stock released',
    }),
  },
  maxBodyBytes: int('MAX_BODY_BYTES', {
    default: 16 * 1024,
    min: 256,
    max: 16 * 1024 * 1024,
    unit: 'bytes',
    shown: '`16384` bytes (16 KiB)',
    doc: 'largest request body accepted (413 past it)',
  }),
  maxHeaderBytes: int('MAX_HEADER_BYTES', {
    default: 8 * 1024, // as nginx's large_client_header_buffers
    min: 1024,
    max: 1024 * 1024,
    unit: 'bytes',
    shown: '`8192` bytes (8 KiB)',
    doc: "largest sum of a request's header names and values (431 past it)",
  }),
  purchase: {
    deadlineMs: purchaseDeadlineMs,
    timeoutMs: int('PURCHASE_TIMEOUT_MS', {
      default: 5_000,
      min: 10,
      max: 120_000,
      unit: 'ms',
      doc: 'the longest an HTTP purchase waits for its outcome before answering 504; at least `PURCHASE_DEADLINE_MS`',
    }).map((timeoutMs, read) => {
      const deadlineMs = read.value(purchaseDeadlineMs);
      if (timeoutMs < deadlineMs)
        read.problems.push(
          `PURCHASE_TIMEOUT_MS=${timeoutMs} must be at least PURCHASE_DEADLINE_MS=${deadlineMs}`,
        );
      return timeoutMs;
    }),
    waitBudgetMs: int('PURCHASE_WAIT_BUDGET_MS', {
      default: 2_000,
      min: 0,
      max: 120_000,
      unit: 'ms',
      doc: "how long `POST /purchases` waits for the saga's end before answering 202",
    }),
    maxQuantity: int('PURCHASE_MAX_QUANTITY', {
      default: 10,
      min: 1,
      max: 1_000_000,
      doc: 'most units one order may buy',
    }),
  },
  mailboxLimit: int('MAILBOX_LIMIT', {
    default: 5_000,
    min: 1,
    max: 10_000_000,
    doc: 'requests one product actor may hold (queued + reserved + being written) before it answers 503; about 250 ms of work at 20,000 commits/s',
  }),
  actor: {
    passivateAfterMs: int('ACTOR_PASSIVATE_AFTER_MS', {
      default: 60_000,
      min: 10,
      max: 86_400_000,
      unit: 'ms',
      doc: 'an idle product actor is stopped (passivated) after this',
    }),
  },
  commitLanes: int('COMMIT_LANES', {
    default: 2,
    min: 1,
    max: 64,
    doc: "commit cycles the node's pipeline runs at once, each on a primary connection of its own (at most `MYSQL_POOL_SIZE`)",
  }),
  confirmLingerMs: int('CONFIRM_LINGER_MS', {
    default: 10,
    min: 0,
    max: 1_000,
    unit: 'ms',
    doc: "longest a saga's confirmation waits to ride with a product batch's commit cycle before it starts one of its own; the purchase's answer waits as long",
  }),
  baseline: {
    lockTtlMs: int('BASELINE_LOCK_TTL_MS', {
      default: 5_000,
      min: 100,
      max: 600_000,
      unit: 'ms',
      doc: "lifetime of the baseline path's per-product Redis lock",
    }),
    // On one hot product at 200 concurrent requests (25 Nov, `c8fe33f`) caps of 32, 256 and 1024 ms
    // gave the same throughput (195, 192, 195/s): the lock-held write is the limit. 32 had the shortest
    // tail (p99 4.7 s against 6.2 and 8.3 s) and no request past its deadline (against 2 and 38).
    lockRetryMaxMs: int('BASELINE_LOCK_RETRY_MAX_MS', {
      default: 32,
      min: 2,
      max: 10_000,
      unit: 'ms',
      doc: "longest pause between two tries of the baseline's lock (jittered exponential backoff from 2 ms)",
    }),
  },
  cache,
  ws,
  auth,
  rateLimit,
  metricsAllowFrom: addresses('METRICS_ALLOW_FROM', {
    default: '127.0.0.1,::1',
    doc: 'socket addresses that may read `/metrics` directly (the scraper; never through a proxy)',
  }),
  readyCheckTimeoutMs: int('READY_CHECK_TIMEOUT_MS', {
    default: 1_000,
    min: 50,
    max: 60_000,
    unit: 'ms',
    doc: 'time a dependency check may take before `/ready` calls it down',
  }),
  shutdownGraceMs: int('SHUTDOWN_GRACE_MS', {
    default: 10_000,
    min: 0,
    max: 600_000,
    unit: 'ms',
    doc: 'SIGTERM: stop accepting, answer in-flight requests for up to this long, then close',
  }),
  /** The consistency monitor (README "Observability"): compares the stores of the products a node owns. */
  consistency: {
    intervalMs: int('CONSISTENCY_CHECK_INTERVAL_MS', {
      default: 30_000,
      min: 0,
      max: 86_400_000,
      unit: 'ms',
      doc: 'pause between two rounds of the consistency monitor (README "Observability"); 0 turns it off',
    }),
    productsPerRound: int('CONSISTENCY_CHECK_PRODUCTS', {
      default: 100,
      min: 1,
      max: 10_000,
      doc: 'products the monitor compares per round',
    }),
  },
  uwsFallbackRequested: flag(
    'UWS_USE_FALLBACK',
    "if set (not `0` or `false`), the service refuses to start: it never runs on uWebSockets.js's slow pure-Node fallback",
    (raw) => !['', '0', 'false'].includes((raw ?? '').toLowerCase()),
  ),
};
