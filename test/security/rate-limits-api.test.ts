import t from 'tap';
import WebSocket from 'ws';
import { startApp } from '../helpers/app.js';
import { uniq } from '../helpers/isolation.js';
import { totals } from '../helpers/database.js';
import { cluster } from '../helpers/cluster.js';
import { asUser } from '../helpers/tokens.js';

/** Waits for the start of a fresh one-second window, so a burst lands in one window. */
async function freshWindow(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 1000 - (Date.now() % 1000) + 5));
}

t.test(
  'per-user purchase limit: 429 with Retry-After and RateLimit headers; a refused purchase changes nothing',
  async (t) => {
    const running = await startApp(t, { RATE_LIMIT_USER_PURCHASES_PER_S: '5' });
    const productId = await running.createProduct({ stock: 100 });
    const user = uniq('u');
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => running.purchase(productId, 1, user, `k${i}`)),
    );
    const limited = answers.filter((a) => a.status === 429);
    const bought = answers.filter((a) => a.status === 201);
    t.equal(limited.length + bought.length, 20, 'every answer is a purchase or a 429');
    t.ok(bought.length >= 5 && bought.length <= 10, `the limit admitted ${bought.length} (5 per window)`);
    const refusal = limited[0]!;
    t.match(refusal.body, { error: { code: 'RATE_LIMITED', retryable: true } });
    t.ok(Number(refusal.headers['retry-after']) >= 1, 'Retry-After');
    t.equal(refusal.headers['ratelimit-policy'], '"user";q=5;w=1');
    t.match(refusal.headers['ratelimit'], /^"user";r=0;t=\d+$/);
    t.match(
      bought[0]!.headers['ratelimit'],
      /^"user";r=\d+;t=\d+$/,
      'admitted purchases carry the headers too',
    );
    const db = await totals(running.infra.mysql.primary, productId);
    t.equal(db.orders, bought.length, 'only admitted purchases are orders');
    t.equal(db.stock, 100 - bought.length);
    const other = await running.purchase(productId, 1, uniq('v'), 'k');
    t.equal(other.status, 201, 'another user has a budget of his own');
  },
);

t.test('per-IP limit on every route, and X-Forwarded-For believed only from a trusted proxy', async (t) => {
  // Loopback is not a trusted proxy here: this client is "the outside".
  const running = await startApp(t, { RATE_LIMIT_IP_PER_S: '20', RATE_LIMIT_TRUSTED_PROXIES: '10.9.9.9' });
  const productId = await running.createProduct({ stock: 1 });
  await freshWindow();
  const spoofed = await Promise.all(
    Array.from({ length: 40 }, (_, i) =>
      running.get(`/products/${productId}`, { 'x-forwarded-for': `198.51.100.${i}` }),
    ),
  );
  const limited = spoofed.filter((a) => a.status === 429);
  t.ok(
    limited.length >= 20,
    `a new X-Forwarded-For per request does not reset the limit (${limited.length} limited)`,
  );
  t.match(limited[0]!.body, { error: { code: 'RATE_LIMITED' } });
  t.equal(limited[0]!.headers['ratelimit-policy'], '"ip";q=20;w=1');
  t.ok(Number(limited[0]!.headers['retry-after']) >= 1);
  t.equal((await running.get('/health')).status, 429, 'health is counted too (same window)');

  // Behind a trusted proxy (the default trusts loopback, where the stack's nginx runs), each client has its own.
  const behindProxy = await startApp(t, { RATE_LIMIT_IP_PER_S: '20' });
  await freshWindow();
  const clients = await Promise.all(
    Array.from({ length: 40 }, (_, i) =>
      behindProxy.get(`/products/${productId}`, { 'x-forwarded-for': `6.6.6.6, 198.51.100.${i % 4}` }),
    ),
  );
  t.equal(
    clients.filter((a) => a.status === 429).length,
    0,
    'four clients of 10 requests each: none limited',
  );
  const oneClient = await Promise.all(
    Array.from({ length: 30 }, (_, i) =>
      behindProxy.get(`/products/${productId}`, { 'x-forwarded-for': `203.0.113.${i}, 198.51.100.0` }),
    ),
  );
  t.ok(
    oneClient.filter((a) => a.status === 429).length >= 10,
    'entries before the last one are the client’s own claims: they do not split its budget',
  );
});

t.test('WebSocket upgrades are counted against the IP limit', async (t) => {
  const running = await startApp(t, { RATE_LIMIT_IP_PER_S: '5' });
  await freshWindow();
  const url = running.base.replace('http', 'ws') + '/ws';
  const results = await Promise.all(
    Array.from(
      { length: 10 },
      () =>
        new Promise<number>((resolve) => {
          const ws = new WebSocket(url);
          ws.on('open', () => {
            ws.close();
            resolve(101);
          });
          ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
          ws.on('error', () => resolve(-1));
        }),
    ),
  );
  t.ok(results.filter((s) => s === 101).length <= 5, `at most 5 upgrades (${results.join(',')})`);
  t.ok(results.filter((s) => s === 429).length >= 5, 'the rest answered 429');
});

t.test('two nodes count one user against one limit', async (t) => {
  const c = await cluster(t, ['a', 'b'], { RATE_LIMIT_USER_PURCHASES_PER_S: '10' });
  await c.balanced(['a', 'b']);
  const a = c.nodes.get('a')!;
  const b = c.nodes.get('b')!;
  const productId = (await c.call(a, 'POST', '/products', { name: 'p', priceCents: 1, stock: 1000 })).body.id;
  const customer = await asUser(uniq('u'));
  await freshWindow();
  const started = Date.now();
  const answers = await Promise.all(
    Array.from({ length: 40 }, (_, i) =>
      c.call(
        i % 2 === 0 ? a : b,
        'POST',
        '/purchases',
        { productId, quantity: 1 },
        {
          ...customer,
          'idempotency-key': `k${i}`,
        },
      ),
    ),
  );
  const elapsed = Date.now() - started;
  const admitted = answers.filter((x) => x.status === 201 || x.status === 202).length;
  t.equal(admitted + answers.filter((x) => x.status === 429).length, 40, 'purchases or 429s');
  if (elapsed < 900) t.equal(admitted, 10, 'both nodes together admitted the limit');
  else t.ok(admitted <= 20, `at most two windows' worth (${admitted} in ${elapsed} ms)`);
  const [[row]] = (await c.mysql.primary.query('SELECT stock FROM products WHERE id = ?', [
    productId,
  ])) as any;
  t.equal(Number(row.stock), 1000 - admitted, 'exactly the admitted purchases took stock');
});
