import type { Test } from 'tap';
import { Agent, request } from 'undici';
import { until } from '../../scripts/until.js';
import { desiredOwner, shardOf } from '../../src/cluster/shards.js';
import { loadConfig } from '../../src/config.js';
import { createPaymentProvider } from '../../src/payment-provider/server.js';
import { createMysqlPools } from '../../src/storage/mysql.js';
import { ownEvents, uniq } from './isolation.js';
import { totals } from './database.js';
import { throwawayDatabase } from './database.js';
import { checkAnswer } from './http.js';
import { startNode, type AppNode } from './node-process.js';
import { asAdmin, asUser, UNLIMITED_ENV } from './tokens.js';

export const SHARDS = 256;

/**
 * App nodes as real processes, one cluster under a key prefix of its own, with a payment provider of its
 * own; `call` talks to a node, `balanced` waits until the live nodes hold every shard between them.
 */
export async function cluster(t: Test, names: string[], extraEnv: Record<string, string> = {}) {
  const provider = createPaymentProvider({ latencyMs: 2 });
  const providerPort = await provider.listen(0);
  t.teardown(() => provider.close());
  const id = uniq('cl');
  const prefix = `${id}:`;
  const db = await throwawayDatabase(t, 'cluster');
  const env = {
    ...db.env,
    ...ownEvents(t, id),
    PAYMENT_URL: `http://127.0.0.1:${providerPort}`,
    REDIS_KEY_PREFIX: prefix,
    PEER_SECRET: uniq('secret'),
    PURCHASE_WAIT_BUDGET_MS: '20000',
    PURCHASE_DEADLINE_MS: '10000',
    PURCHASE_TIMEOUT_MS: '15000',
    ...UNLIMITED_ENV,
    ...extraEnv,
  };
  const nodes = new Map<string, AppNode>();
  const start = (name: string, nodeEnv: Record<string, string> = {}) =>
    startNode(t, { ...env, ...nodeEnv, NODE_ID: name });
  const add = async (name: string, nodeEnv: Record<string, string> = {}) => {
    const node = await start(name, nodeEnv);
    nodes.set(name, node);
    return node;
  };
  // The first nodes start together (each start is ~2 s of loading and connecting); they are listed in
  // `names` order.
  const started = await Promise.all(names.map((name) => start(name)));
  names.forEach((name, i) => nodes.set(name, started[i]!));
  /** A node for a failure message: its name, whether it still runs, and its last log lines. */
  const describe = (node: AppNode): string => {
    const name = [...nodes].find(([, n]) => n === node)?.[0] ?? node.base;
    const { exitCode, signalCode } = node.child;
    const state = exitCode === null && signalCode === null ? 'running' : `exited (${signalCode ?? exitCode})`;
    return `${name} (${state}); its last output:\n${node.output().split('\n').slice(-15).join('\n')}`;
  };
  const agent = new Agent({ connections: 512 });
  t.teardown(() => agent.close());
  const call = async (
    node: AppNode,
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ) => {
    const res = await request(`${node.base}${path}`, {
      method,
      dispatcher: agent,
      // As the tests' admin unless the caller brings its own token (a customer's, for purchases).
      headers: { 'content-type': 'application/json', ...(await asAdmin()), ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    }).catch((err: Error) => {
      throw new Error(`${method} ${path} to ${describe(node)}: ${err.message}`, { cause: err });
    });
    const text = await res.body.text();
    const parsed = text ? JSON.parse(text) : undefined;
    const contentType = res.headers['content-type'] as string | undefined;
    checkAnswer(t, { method, path, status: res.statusCode, contentType, body: parsed ?? '' });
    return { status: res.statusCode, body: parsed };
  };
  /** Waits until the live nodes hold all shards between them. */
  const balanced = async (live: string[], timeoutMs = 15_000) => {
    const held = async () =>
      Promise.all(
        live.map(async (n) => (await call(nodes.get(n)!, 'GET', '/health')).body.cluster.held as number),
      );
    const all = (h: number[]) => h.reduce((a, b) => a + b, 0) === SHARDS && h.every((x) => x > 0);
    const polled = await until(held, all, timeoutMs, 100);
    if (!polled.agreed)
      throw new Error(`shards not balanced over ${live.join(', ')}: ${polled.value.join(', ')}`);
    return polled.value;
  };
  const config = loadConfig({ LOG_LEVEL: 'silent', ...db.env });
  const mysql = createMysqlPools(config);
  t.teardown(() => mysql.close());
  return { nodes, add, call, balanced, mysql, provider, env, prefix };
}

export type Cluster = Awaited<ReturnType<typeof cluster>>;

/**
 * Purchases of one unit from `workers` loops until stopped, spread over `targets()` and `productIds`;
 * records every answer (status 0: no answer).
 */
export function purchaseLoad(c: Cluster, targets: () => AppNode[], productIds: number[], workers = 30) {
  const user = uniq('u');
  const answers: { status: number; code?: string; sentAt: number; at: number }[] = [];
  let seq = 0;
  let running = true;
  const loops = Array.from({ length: workers }, async (_, w) => {
    while (running) {
      const nodes = targets();
      const node = nodes[seq % nodes.length]!;
      const productId = productIds[seq % productIds.length]!;
      const key = `k${(seq += 1)}`;
      const sentAt = Date.now();
      const x = await c
        .call(
          node,
          'POST',
          '/purchases',
          { productId, quantity: 1 },
          { ...(await asUser(`${user}-${w}`)), 'idempotency-key': key },
        )
        .catch(() => ({ status: 0, body: undefined }));
      answers.push({ status: x.status, code: x.body?.error?.code, sentAt, at: Date.now() });
    }
  });
  return {
    answers,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** Waits (up to 30 s) until no purchase of `productId` is pending; `exact`: stock + sold = `initial`. */
export async function settled(c: Cluster, productId: number, initial: number) {
  const polled = await until(
    () => totals(c.mysql.primary, productId),
    (db) => db.pending === 0,
    30_000,
    200,
  );
  const db = polled.value;
  return { db, exact: db.pending === 0 && db.stock + db.sold === initial };
}

/** node-a and node-b as real processes, once they hold every shard between them. */
export async function balancedPair(t: Test) {
  const c = await cluster(t, ['node-a', 'node-b']);
  await c.balanced(['node-a', 'node-b']);
  return { c, a: c.nodes.get('node-a')!, b: c.nodes.get('node-b')! };
}

/** A product whose shard `owner` should own among `nodes`. */
export async function productOwnedBy(
  c: Cluster,
  via: AppNode,
  owner: string,
  nodes: string[],
  stock: number,
): Promise<number> {
  for (;;) {
    const id = (await c.call(via, 'POST', '/products', { name: 'p', priceCents: 100, stock })).body
      .id as number;
    if (desiredOwner(shardOf(id, SHARDS), nodes) === owner) return id;
  }
}
