import { addresses, int, listOf, text, url } from './setting.js';

/**
 * The settings of the service's edge: the caches of reads, WebSocket subscribers, callers' tokens and rate
 * limits. Part of the table in `settings.ts`.
 */

/** Signature algorithms AUTH_ALGORITHMS may name (asymmetric only: a shared HMAC secret could mint tokens). */
export const JWT_ALGORITHMS = ['EdDSA', 'Ed25519', 'ES256', 'ES384', 'RS256', 'PS256'] as const;

export const cache = {
  detailsTtlSeconds: int('CACHE_DETAILS_TTL_S', {
    default: 300,
    min: 1,
    max: 86_400,
    unit: 's',
    doc: 'lifetime of cached product details in Redis',
  }),
  stockTtlMs: int('CACHE_STOCK_TTL_MS', {
    default: 5_000,
    min: 100,
    max: 3_600_000,
    unit: 'ms',
    doc: 'lifetime of a cached stock in Redis (a safety net: every committed change writes it through)',
  }),
  memoryProducts: int('CACHE_MEMORY_PRODUCTS', {
    default: 50_000,
    min: 0,
    max: 10_000_000,
    doc: 'products each node keeps in memory for reads (0 turns the memory tier off; README "Reads")',
  }),
  memoryStockTtlMs: int('CACHE_MEMORY_STOCK_TTL_MS', {
    default: 1_000,
    min: 0,
    max: 60_000,
    unit: 'ms',
    doc: 'longest a stock in memory is served with no feed message or reload confirming it',
  }),
};

export const ws = {
  maxSubscriptions: int('WS_MAX_SUBSCRIPTIONS', {
    default: 100,
    min: 1,
    max: 10_000,
    doc: 'products one WebSocket connection may follow',
  }),
  maxFrameBytes: int('WS_MAX_FRAME_BYTES', {
    default: 4 * 1024,
    min: 256,
    max: 1024 * 1024,
    unit: 'bytes',
    doc: 'largest client frame; a larger one closes the connection with 1009',
  }),
  // uWS checks timeouts every 4 s: below 8 s a connection could be closed before its ping is answered.
  idleTimeoutSeconds: int('WS_IDLE_TIMEOUT_S', {
    default: 60,
    min: 8,
    max: 3_600,
    unit: 's',
    doc: 'a connection silent this long (no pong either) is closed; the server pings it before',
  }),
  maxBackpressureBytes: int('WS_MAX_BACKPRESSURE_BYTES', {
    default: 64 * 1024,
    min: 1024,
    max: 64 * 1024 * 1024,
    unit: 'bytes',
    shown: '`65536` bytes (64 KiB)',
    doc: 'unsent bytes a connection may hold before live changes skip it',
  }),
  slowConsumerMs: int('WS_SLOW_CONSUMER_MS', {
    default: 5_000,
    min: 100,
    max: 600_000,
    unit: 'ms',
    doc: 'a connection over the backpressure limit that has not caught up within this is closed with 4001',
  }),
};

export const auth = {
  jwksUrl: url('AUTH_JWKS_URL', ['http:', 'https:'], 'http://host:port', {
    default: '',
    shown: '—',
    doc: 'JWKS of the identity provider (production): fetched, cached 10 min, fetched again for an unknown `kid` (at most every 30 s); when set, `AUTH_JWKS_FILE` is ignored',
  }).map((value, read) => (read.raw('AUTH_JWKS_URL') === undefined ? undefined : value.replace(/\/+$/, ''))),
  jwksFile: text('AUTH_JWKS_FILE', {
    default: '.stack/auth/jwks.json',
    doc: 'local public key set, used when `AUTH_JWKS_URL` is unset (`npm run stack -- up` writes it)',
  }),
  algorithms: listOf('AUTH_ALGORITHMS', JWT_ALGORITHMS, {
    default: 'EdDSA',
    doc: 'accepted signature algorithms (never taken from the token; no HMAC, no `none`)',
  }),
  issuer: text('AUTH_ISSUER', { default: 'flash-sale-local', doc: 'required `iss` claim' }),
  audience: text('AUTH_AUDIENCE', { default: 'flash-sale', doc: 'required `aud` claim' }),
  clockSkewSeconds: int('AUTH_CLOCK_SKEW_S', {
    default: 30,
    min: 0,
    max: 300,
    unit: 's',
    doc: 'tolerated clock difference for `exp` and `nbf`',
  }),
  tokenCacheSize: int('AUTH_TOKEN_CACHE_SIZE', {
    default: 100_000,
    min: 0,
    max: 10_000_000,
    doc: 'verified tokens each node remembers until their `exp` (0: verify every time)',
  }),
};

/** Every limit is requests per second; 0 turns it off. */
export const rateLimit = {
  userPurchasesPerSecond: int('RATE_LIMIT_USER_PURCHASES_PER_S', {
    default: 10,
    min: 0,
    max: 1_000_000,
    unit: 'per second',
    doc: 'purchases one user may make per second, shared by all nodes through Redis (0: off)',
  }),
  ipRequestsPerSecond: int('RATE_LIMIT_IP_PER_S', {
    default: 200,
    min: 0,
    max: 100_000_000,
    unit: 'per second',
    doc: 'requests (every route, WebSocket upgrades) one client IP may make per second to one node (0: off)',
  }),
  nodes: int('RATE_LIMIT_NODES', {
    default: 2,
    min: 1,
    max: 1_000,
    doc: 'nodes sharing the user limit: while Redis is down each node allows 1/N of it',
  }),
  trustedProxies: addresses('RATE_LIMIT_TRUSTED_PROXIES', {
    default: '127.0.0.1,::1',
    doc: 'addresses whose `X-Forwarded-For` is believed for the client IP (the balancer)',
  }),
};
