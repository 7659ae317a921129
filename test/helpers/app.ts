import type { Test } from 'tap';
import { Agent, request } from 'undici';
import { buildApp, type App } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import { openInfrastructure, type Infrastructure } from '../../src/infrastructure.js';
import { createLogger, type DestinationStream } from '../../src/logger.js';
import { migrate } from '../../src/storage/migrate.js';
import type { RowDataPacket } from '../../src/storage/mysql.js';
import {
  createPaymentProvider,
  type PaymentProvider,
  type PaymentProviderOptions,
} from '../../src/payment-provider/server.js';
import { checkAnswer, uws } from './http.js';
import { deleteUnsentOutboxRows, ownEvents, uniq } from './isolation.js';
import { asAdmin, asUser, UNLIMITED_ENV } from './tokens.js';

let migrated: Promise<unknown> | undefined;

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

export interface RunningApp {
  app: App;
  provider: PaymentProvider;
  infra: Infrastructure;
  config: Config;
  base: string;
  get(path: string, headers?: Record<string, string>): Promise<Answer>;
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<Answer>;
  /** GET as the tests' admin (a bearer token with role admin). */
  adminGet(path: string): Promise<Answer>;
  /** POST as the tests' admin. */
  adminPost(path: string, body: unknown): Promise<Answer>;
  /** POST /purchases as customer `userId` (a bearer token for that sub) with `key`. */
  purchase(productId: number, quantity: number, userId: string, key: string): Promise<Answer>;
  createProduct(input: {
    name?: string;
    priceCents?: number;
    stock: number;
    strategy?: 'actor' | 'baseline';
  }): Promise<number>;
}

/**
 * Builds the whole service in this process against the real stack, on a free port, with its own Redis
 * key prefix; it is stopped when the test ends. `env` overrides settings as environment variables would.
 */
export async function startApp(
  t: Test,
  env: Record<string, string> = {},
  options: {
    /** Resume unfinished sagas at start, as `npm start` does. */
    recover?: boolean;
    payment?: Partial<PaymentProviderOptions>;
    /** Run the sales projection in a consumer group of this app's own. */
    projection?: boolean;
    /** Where the app's log lines go (default stdout; LOG_LEVEL is silent unless `env` says otherwise). */
    logs?: DestinationStream;
  } = {},
): Promise<RunningApp> {
  // Each app gets a payment provider of its own (1 ms latency unless told otherwise), so rates set by
  // one test never reach another.
  const provider = createPaymentProvider({ latencyMs: 1, ...options.payment });
  const providerPort = await provider.listen(0);
  t.teardown(() => provider.close());
  // Topics and the relay's lock of its own too: each test app publishes exactly its own events.
  const id = uniq('test');
  const config = loadConfig({
    LOG_LEVEL: 'silent',
    PORT: '0',
    REDIS_KEY_PREFIX: `${id}:`,
    PAYMENT_URL: `http://127.0.0.1:${providerPort}`,
    ...ownEvents(t, id),
    // A one-node cluster under heavy load in one process: long leases, so event-loop lag cannot expire them.
    LEASE_TTL_MS: '10000',
    LEASE_RENEW_MS: '1000',
    // Tests assert where sagas end: on a loaded CI machine a saga may outlast the 2 s production budget.
    PURCHASE_WAIT_BUDGET_MS: '15000',
    ...UNLIMITED_ENV,
    ...env,
  });
  migrated ??= migrate(config.mysql.migration);
  await migrated;
  const logger = createLogger(config, options.logs);
  const infra = openInfrastructure(config, logger);
  const app = buildApp({
    config,
    logger,
    uws,
    infra,
    ...(options.projection ? {} : { projection: false as const }),
  });
  const port = await app.server.listen('127.0.0.1', 0);
  // Each test app is a one-node cluster of its own (its key prefix): it owns every shard. Recovery stays
  // off unless asked: the database is shared, and another test's unfinished sagas are not this app's.
  await app.start(port, { recover: options.recover === true });
  const base = `http://127.0.0.1:${port}`;
  const agent = new Agent({ connections: 512, pipelining: 1 });
  t.teardown(async () => {
    await app.stop(2_000);
    await deleteUnsentOutboxRows(infra.mysql.primary, config.kafka.topics).catch(() => undefined);
    await infra.close();
    await agent.close();
  });
  const call = async (
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ) => {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const res = await request(`${base}${path}`, {
      method,
      dispatcher: agent,
      headers: { 'content-type': 'application/json', ...headers },
      ...(payload === undefined ? {} : { body: payload }),
    });
    const text = await res.body.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    const contentType = res.headers['content-type'] as string | undefined;
    checkAnswer(t, { method, path, status: res.statusCode, contentType, body: parsed });
    return { status: res.statusCode, headers: res.headers, body: parsed };
  };
  const running: RunningApp = {
    app,
    provider,
    infra,
    config,
    base,
    get: (path, headers) => call('GET', path, undefined, headers),
    post: (path, body, headers) => call('POST', path, body, headers),
    adminGet: async (path) => call('GET', path, undefined, await asAdmin()),
    adminPost: async (path, body) => call('POST', path, body, await asAdmin()),
    purchase: async (productId, quantity, userId, key) =>
      call(
        'POST',
        '/purchases',
        { productId, quantity },
        { ...(await asUser(userId)), 'idempotency-key': key },
      ),
    async createProduct(input) {
      const answer = await running.adminPost('/products', {
        name: input.name ?? uniq('product-'),
        priceCents: input.priceCents ?? 1_000,
        stock: input.stock,
        ...(input.strategy ? { strategy: input.strategy } : {}),
      });
      if (answer.status !== 201)
        throw new Error(`create product failed: ${answer.status} ${JSON.stringify(answer.body)}`);
      return (answer.body as { id: number }).id;
    },
  };
  return running;
}

/**
 * Polls GET /stats/products/:id until it equals MySQL's figures for the product (or gives up). `running`
 * is an in-process app, or any node: its primary pool and a GET of its HTTP API.
 */
export async function projectionMatches(
  running:
    | RunningApp
    | {
        primary: Infrastructure['mysql']['primary'];
        get(path: string, headers?: Record<string, string>): Promise<{ body: any }>;
      },
  productId: number,
  timeoutMs = 20_000,
) {
  const primary = 'infra' in running ? running.infra.mysql.primary : running.primary;
  const [[expected]] = await primary.query<RowDataPacket[]>(
    `SELECT SUM(status = 'CONFIRMED') AS confirmedOrders,
            COALESCE(SUM(IF(status = 'CONFIRMED', quantity, 0)), 0) AS soldQuantity,
            COALESCE(SUM(IF(status = 'CONFIRMED', quantity * unit_price_cents, 0)), 0) AS revenueCents,
            SUM(status = 'CANCELLED') AS cancelledOrders,
            COALESCE(SUM(IF(status = 'CANCELLED', quantity, 0)), 0) AS cancelledQuantity
       FROM orders WHERE product_id = ?`,
    [productId],
  );
  const want = Object.fromEntries(Object.entries(expected ?? {}).map(([k, v]) => [k, Number(v ?? 0)]));
  const until = Date.now() + timeoutMs;
  let got: Record<string, number> = {};
  while (Date.now() < until) {
    const stats = await running.get(`/stats/products/${productId}`, await asAdmin());
    got = Object.fromEntries(Object.keys(want).map((k) => [k, Number(stats.body[k])]));
    if (Object.keys(want).every((k) => got[k] === want[k])) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return { want, got };
}
