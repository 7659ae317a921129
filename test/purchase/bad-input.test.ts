import t from 'tap';
import { startApp } from '../helpers/app.js';
import { uniq } from '../helpers/isolation.js';
import { totals } from '../helpers/database.js';
import { asUser } from '../helpers/tokens.js';

t.test('every bad purchase gets its status, code and field, and changes nothing', async (t) => {
  const running = await startApp(t, { PURCHASE_MAX_QUANTITY: '10', MAX_BODY_BYTES: '1024' });
  const productId = await running.createProduct({ stock: 20 });
  const before = await totals(running.infra.mysql.primary, productId);
  const user = uniq('u');
  const customer = await asUser(user);
  const headers = (key: string) => ({ ...customer, 'idempotency-key': key });
  const cases: {
    name: string;
    body: unknown;
    headers?: Record<string, string>;
    status: number;
    code: string;
    field?: string;
  }[] = [
    {
      name: 'quantity not an integer',
      body: { productId, quantity: 1.5 },
      status: 400,
      code: 'VALIDATION_FAILED',
      field: 'quantity',
    },
    {
      name: 'quantity as a string',
      body: { productId, quantity: '2' },
      status: 400,
      code: 'VALIDATION_FAILED',
      field: 'quantity',
    },
    {
      name: 'quantity zero',
      body: { productId, quantity: 0 },
      status: 400,
      code: 'VALIDATION_FAILED',
      field: 'quantity',
    },
    {
      name: 'quantity negative',
      body: { productId, quantity: -3 },
      status: 400,
      code: 'VALIDATION_FAILED',
      field: 'quantity',
    },
    {
      name: 'quantity above the per-order cap',
      body: { productId, quantity: 11 },
      status: 400,
      code: 'VALIDATION_FAILED',
      field: 'quantity',
    },
    {
      name: 'quantity missing',
      body: { productId },
      status: 400,
      code: 'VALIDATION_FAILED',
      field: 'quantity',
    },
    {
      name: 'productId missing',
      body: { quantity: 1 },
      status: 400,
      code: 'VALIDATION_FAILED',
      field: 'productId',
    },
    {
      name: 'productId not an integer',
      body: { productId: 'abc', quantity: 1 },
      status: 400,
      code: 'VALIDATION_FAILED',
      field: 'productId',
    },
    {
      name: 'unknown field',
      body: { productId, quantity: 1, price: 0 },
      status: 400,
      code: 'VALIDATION_FAILED',
      field: 'price',
    },
    { name: 'malformed JSON', body: '{"productId": 1, ', status: 400, code: 'MALFORMED_JSON', field: 'body' },
    {
      name: 'JSON that is not an object',
      body: '[1,2]',
      status: 400,
      code: 'VALIDATION_FAILED',
      field: 'body',
    },
    { name: 'empty body', body: '', status: 400, code: 'MALFORMED_JSON', field: 'body' },
    {
      name: 'body over the size cap',
      body: { productId, quantity: 1, pad: 'x'.repeat(2_000) },
      status: 413,
      code: 'PAYLOAD_TOO_LARGE',
      field: 'body',
    },
    {
      name: 'unknown product',
      body: { productId: 9_999_999_999, quantity: 1 },
      status: 404,
      code: 'PRODUCT_NOT_FOUND',
      field: 'productId',
    },
    {
      name: 'no Idempotency-Key',
      body: { productId, quantity: 1 },
      headers: customer,
      status: 400,
      code: 'IDEMPOTENCY_KEY_REQUIRED',
      field: 'Idempotency-Key',
    },
    {
      name: 'Idempotency-Key with bad characters',
      body: { productId, quantity: 1 },
      headers: { ...customer, 'idempotency-key': 'a b' },
      status: 400,
      code: 'VALIDATION_FAILED',
      field: 'Idempotency-Key',
    },
    {
      name: 'Idempotency-Key too long',
      body: { productId, quantity: 1 },
      headers: { ...customer, 'idempotency-key': 'k'.repeat(129) },
      status: 400,
      code: 'VALIDATION_FAILED',
      field: 'Idempotency-Key',
    },
    {
      name: 'no user',
      body: { productId, quantity: 1 },
      headers: { 'idempotency-key': 'k' },
      status: 401,
      code: 'UNAUTHENTICATED',
      field: 'Authorization',
    },
  ];
  for (const [i, c] of cases.entries()) {
    const answer = await running.post('/purchases', c.body, c.headers ?? headers(`bad-${i}`));
    t.equal(answer.status, c.status, `${c.name}: status ${c.status}`);
    t.match(
      answer.body,
      { error: { code: c.code, message: String, retryable: false, ...(c.field ? { field: c.field } : {}) } },
      `${c.name}: ${c.code}`,
    );
  }
  t.same(await totals(running.infra.mysql.primary, productId), before, 'stock, version and orders unchanged');
});

t.test('bad catalog requests', async (t) => {
  const running = await startApp(t);
  const productId = await running.createProduct({ stock: 5 });
  const before = await totals(running.infra.mysql.primary, productId);
  const checks: [string, Promise<{ status: number; body: any }>, number, string, string][] = [
    ['non-numeric id', running.get('/products/abc'), 400, 'VALIDATION_FAILED', 'id'],
    ['unknown id', running.get('/products/9999999999'), 404, 'PRODUCT_NOT_FOUND', 'id'],
    ['ids missing', running.get('/products'), 400, 'VALIDATION_FAILED', 'ids'],
    ['ids malformed', running.get('/products?ids=1,x'), 400, 'VALIDATION_FAILED', 'ids'],
    [
      'too many ids',
      running.get(`/products?ids=${Array.from({ length: 101 }, (_, i) => i + 1).join(',')}`),
      400,
      'VALIDATION_FAILED',
      'ids',
    ],
    [
      'create without name',
      running.adminPost('/products', { priceCents: 1, stock: 1 }),
      400,
      'VALIDATION_FAILED',
      'name',
    ],
    [
      'create with negative stock',
      running.adminPost('/products', { name: 'x', priceCents: 1, stock: -1 }),
      400,
      'VALIDATION_FAILED',
      'stock',
    ],
    [
      'create with unknown strategy',
      running.adminPost('/products', { name: 'x', priceCents: 1, stock: 1, strategy: 'magic' }),
      400,
      'VALIDATION_FAILED',
      'strategy',
    ],
    [
      'create with a control character in the name',
      running.adminPost('/products', { name: 'a\u0007b', priceCents: 1, stock: 1 }),
      400,
      'VALIDATION_FAILED',
      'name',
    ],
    [
      'create with a bidi override in the name',
      running.adminPost('/products', { name: 'abc\u202Egpj.exe', priceCents: 1, stock: 1 }),
      400,
      'VALIDATION_FAILED',
      'name',
    ],
    [
      'create with a name of 201 characters',
      running.adminPost('/products', { name: 'n'.repeat(201), priceCents: 1, stock: 1 }),
      400,
      'VALIDATION_FAILED',
      'name',
    ],
    [
      'restock zero',
      running.adminPost(`/products/${productId}/restock`, { quantity: 0 }),
      400,
      'VALIDATION_FAILED',
      'quantity',
    ],
    [
      'restock unknown field',
      running.adminPost(`/products/${productId}/restock`, { quantity: 1, stock: 9 }),
      400,
      'VALIDATION_FAILED',
      'stock',
    ],
    [
      'restock unknown product',
      running.adminPost('/products/9999999999/restock', { quantity: 1 }),
      404,
      'PRODUCT_NOT_FOUND',
      'productId',
    ],
  ];
  for (const [name, pending, status, code, field] of checks) {
    const answer = await pending;
    t.equal(answer.status, status, `${name}: ${status}`);
    t.match(answer.body, { error: { code, field } }, `${name}: ${code} on ${field}`);
  }
  t.same(await totals(running.infra.mysql.primary, productId), before, 'nothing changed');
});

t.test(
  'past its mailbox bound a product answers 503 with Retry-After, and sells exactly what it accepted',
  async (t) => {
    const running = await startApp(t, { MAILBOX_LIMIT: '5' });
    const productId = await running.createProduct({ stock: 1_000 });
    const user = uniq('u');
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) => running.purchase(productId, 1, user, `m${i}`)),
    );
    const overloaded = answers.filter((a) => a.status === 503);
    const created = answers.filter((a) => a.status === 201);
    t.ok(overloaded.length > 0, `some requests were turned away (${overloaded.length})`);
    t.ok(created.length > 0, `some were accepted (${created.length})`);
    t.equal(overloaded.length + created.length, answers.length, 'nothing else happened');
    t.match(overloaded[0]?.body, { error: { code: 'OVERLOADED', retryable: true } });
    t.equal(overloaded[0]?.headers['retry-after'], '1');
    const db = await totals(running.infra.mysql.primary, productId);
    t.equal(db.sold, created.length, 'every accepted purchase, and only those, is an order');
    t.equal(db.stock, 1_000 - created.length);
  },
);
