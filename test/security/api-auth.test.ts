import { SignJWT, generateKeyPair } from 'jose';
import t from 'tap';
import { defaults } from '../../src/config.js';
import { startApp } from '../helpers/app.js';
import { uniq } from '../helpers/isolation.js';
import { totals } from '../helpers/database.js';
import { asAdmin, asUser, tokenFor } from '../helpers/tokens.js';

t.test('every refused token is 401 with a Bearer challenge, and changes nothing', async (t) => {
  const running = await startApp(t);
  const productId = await running.createProduct({ stock: 10 });
  const before = await totals(running.infra.mysql.primary, productId);
  const user = uniq('u');
  const good = await tokenFor(user);
  const [header, payload, signature] = good.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const other = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  const foreign = await new SignJWT({ role: 'customer' })
    .setProtectedHeader({ alg: 'EdDSA' })
    .setSubject(user)
    .setIssuer(defaults.authIssuer)
    .setAudience(defaults.authAudience)
    .setExpirationTime('10m')
    .sign(other.privateKey);
  const cases: [string, string | undefined][] = [
    ['no token', undefined],
    ['alg none', `Bearer ${b64({ alg: 'none', typ: 'JWT' })}.${payload}.`],
    ['wrong key', `Bearer ${foreign}`],
    ['tampered payload', `Bearer ${header}.${b64({ ...claims, sub: 'someone-else' })}.${signature}`],
    ['expired', `Bearer ${await tokenFor(user, 'customer', { ttlSeconds: -3600 })}`],
    ['not yet valid', `Bearer ${await tokenFor(user, 'customer', { notBeforeSeconds: 3600 })}`],
    ['wrong audience', `Bearer ${await tokenFor(user, 'customer', { audience: 'another-service' })}`],
    ['wrong issuer', `Bearer ${await tokenFor(user, 'customer', { issuer: 'https://evil.example' })}`],
    ['X-User-Id instead of a token', undefined],
  ];
  for (const [name, authorization] of cases) {
    const headers: Record<string, string> = { 'idempotency-key': uniq('k') };
    if (authorization !== undefined) headers['authorization'] = authorization;
    if (name.startsWith('X-User-Id')) headers['x-user-id'] = user;
    const answer = await running.post('/purchases', { productId, quantity: 1 }, headers);
    t.equal(answer.status, 401, `${name}: 401`);
    t.match(answer.body, { error: { code: 'UNAUTHENTICATED', field: 'Authorization', retryable: false } });
    t.match(
      answer.headers['www-authenticate'],
      authorization === undefined ? /^Bearer realm="flash-sale"$/ : /error="invalid_token"/,
      `${name}: WWW-Authenticate`,
    );
    const admin = await running.post(`/products/${productId}/restock`, { quantity: 5 }, { ...headers });
    t.equal(admin.status, 401, `${name}: restock refused`);
  }
  t.same(await totals(running.infra.mysql.primary, productId), before, 'stock, version and orders unchanged');
});

t.test('roles: customers buy, admins run the catalog; the wrong role is 403', async (t) => {
  const running = await startApp(t);
  const productId = await running.createProduct({ stock: 10 });
  const before = await totals(running.infra.mysql.primary, productId);
  const customer = await asUser(uniq('u'));
  const refusals = [
    await running.post('/products', { name: 'x', priceCents: 1, stock: 1 }, customer),
    await running.post(`/products/${productId}/restock`, { quantity: 1000 }, customer),
    await running.get(`/stats/products/${productId}`, customer),
  ];
  for (const answer of refusals) {
    t.equal(answer.status, 403);
    t.match(answer.body, { error: { code: 'FORBIDDEN', message: /needs the role admin/ } });
  }
  const adminBuys = await running.post(
    '/purchases',
    { productId, quantity: 1 },
    { ...(await asAdmin()), 'idempotency-key': 'k' },
  );
  t.equal(adminBuys.status, 403);
  t.match(adminBuys.body, { error: { code: 'FORBIDDEN', message: /needs the role customer/ } });
  t.same(await totals(running.infra.mysql.primary, productId), before, 'nothing changed');

  t.equal((await running.adminPost(`/products/${productId}/restock`, { quantity: 5 })).status, 200);
  t.equal((await running.adminGet(`/stats/products/${productId}`)).status, 200);
  for (const path of [`/products/${productId}`, `/products?ids=${productId}`, '/health', '/ready'])
    t.equal((await running.get(path)).status, 200, `${path} is anonymous`);
});

t.test("orders: a customer reads her own; another's is 404; admins read all", async (t) => {
  const running = await startApp(t);
  const productId = await running.createProduct({ stock: 10 });
  const alice = uniq('alice');
  const bob = uniq('bob');
  const bought = await running.purchase(productId, 1, alice, 'same-key');
  t.equal(bought.status, 201);
  const path = `/orders/${bought.body.orderId}`;
  t.match(await running.get(path, await asUser(alice)), { status: 200, body: { userId: alice } });
  const other = await running.get(path, await asUser(bob));
  t.equal(other.status, 404, 'another user cannot tell the order exists');
  t.match(other.body, { error: { code: 'ORDER_NOT_FOUND' } });
  t.equal((await running.adminGet(path)).status, 200);
  t.equal((await running.get(path)).status, 401);

  // The idempotency key is per user: the same key from bob is a purchase of his own.
  const bobs = await running.purchase(productId, 1, bob, 'same-key');
  t.equal(bobs.status, 201);
  t.not(bobs.body.orderId, bought.body.orderId);
  const replay = await running.purchase(productId, 1, alice, 'same-key');
  t.equal(replay.body.orderId, bought.body.orderId, "alice's retry replays her order");
  t.equal((await totals(running.infra.mysql.primary, productId)).orders, 2);
});

t.test('a user pays the signature check once; then the node answers from its cache', async (t) => {
  const running = await startApp(t);
  const productId = await running.createProduct({ stock: 10 });
  const user = uniq('u');
  for (let i = 0; i < 3; i += 1) t.equal((await running.purchase(productId, 1, user, `k${i}`)).status, 201);
  const metrics = String((await running.get('/metrics')).body);
  const count = (result: string) =>
    Number(new RegExp(`^auth_tokens_total\\{result="${result}"\\} (\\d+)`, 'm').exec(metrics)?.[1] ?? 0);
  t.ok(count('cached') >= 2, `cached ${count('cached')}`);
  t.ok(count('verified') >= 1, `verified ${count('verified')}`);
});

t.test('answers are JSON with nosniff; oversized headers are 431', async (t) => {
  const running = await startApp(t, { MAX_HEADER_BYTES: '2048' });
  const answer = await running.get('/products/1');
  t.match(answer.headers['content-type'], /^application\/json/);
  t.equal(answer.headers['x-content-type-options'], 'nosniff');
  const big = await running.get('/products/1', { 'x-padding': 'p'.repeat(4000) });
  t.equal(big.status, 431);
  t.match(big.body, { error: { code: 'REQUEST_HEADERS_TOO_LARGE' } });
  t.equal(big.headers['x-content-type-options'], 'nosniff');
});

t.test('/metrics is for direct scrapers only: through a proxy or from elsewhere it is 404', async (t) => {
  const open = await startApp(t);
  t.equal((await open.get('/metrics')).status, 200, 'a direct loopback scrape');
  const proxied = await open.get('/metrics', { 'x-forwarded-for': '203.0.113.5' });
  t.equal(proxied.status, 404, 'a request that came through a proxy');
  t.match(proxied.body, { error: { code: 'NOT_FOUND' } });
  const closed = await startApp(t, { METRICS_ALLOW_FROM: '10.1.2.3' });
  t.equal((await closed.get('/metrics')).status, 404, 'a socket address not in METRICS_ALLOW_FROM');
});
