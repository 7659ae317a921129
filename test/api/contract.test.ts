// The routes' compiled checks answer as the hand-written ones did: code, field and the message's wording.
import t from 'tap';
import { compileInput, type RouteContract } from '../../src/api/contract.js';
import {
  createProductContract,
  getOrderContract,
  getProductContract,
  listProductsContract,
  purchaseContract,
  restockContract,
} from '../../src/api/routes.js';
import type { RequestContext } from '../../src/http/server.js';
import { decodeRequest } from '../../src/ws/frames.js';

const request = (parts: Partial<RequestContext>) =>
  ({ params: [], query: '', headers: {}, body: Buffer.alloc(0), ...parts }) as unknown as RequestContext;
const json = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value));
const outcome = (contract: RouteContract, parts: Partial<RequestContext>) => {
  try {
    return compileInput(contract)(request(parts));
  } catch (err) {
    const e = err as { code: string; field?: string; message: string };
    return { code: e.code, field: e.field, message: e.message };
  }
};

t.test('path and query parameters', async (t) => {
  const cases: [RouteContract, Partial<RequestContext>, unknown][] = [
    [
      getProductContract,
      { params: ['12'], query: 'minVersion=007' },
      { params: { id: 12 }, query: { minVersion: 7 } },
    ],
    [
      getProductContract,
      { params: ['abc'] },
      { code: 'VALIDATION_FAILED', field: 'id', message: 'id must be a positive integer, got "abc"' },
    ],
    [
      getProductContract,
      { params: ['0123'] },
      { field: 'id', message: 'id must be a positive integer, got "0123"' },
    ],
    [
      getProductContract,
      { params: ['0'] },
      { field: 'id', message: 'id must be a positive integer, got "0"' },
    ],
    [getProductContract, { params: ['99999999999999999'] }, { field: 'id' }],
    [
      getProductContract,
      { params: ['1'], query: 'minVersion=' },
      { field: 'minVersion', message: 'minVersion must be a non-negative integer, got ""' },
    ],
    [
      getProductContract,
      { params: ['1'], query: 'foo=1&minVersion=2' },
      { field: 'foo', message: 'unknown query parameter "foo"' },
    ],
    [getProductContract, { params: ['1'], query: '__proto__=1' }, { field: '__proto__' }],
    [listProductsContract, { query: 'ids=1, 2,2,3&other=1' }, { query: { ids: [1, 2, 3], other: '1' } }],
    [listProductsContract, { query: '' }, { field: 'ids', message: 'query parameter ids=1,2,3 is required' }],
    [
      listProductsContract,
      { query: 'ids=' },
      { field: 'ids', message: 'query parameter ids=1,2,3 is required' },
    ],
    [
      listProductsContract,
      { query: 'ids=1,x' },
      { field: 'ids', message: 'ids must be a positive integer, got "x"' },
    ],
    [
      listProductsContract,
      { query: 'ids=1,,2' },
      { field: 'ids', message: 'ids must be a positive integer, got ""' },
    ],
    [
      listProductsContract,
      { query: `ids=${Array.from({ length: 101 }, (_, i) => i + 1).join(',')}` },
      { field: 'ids', message: 'ids may list at most 100 products' },
    ],
    [
      listProductsContract,
      { query: `ids=${Array.from({ length: 101 }, (_, i) => (i % 50) + 1).join(',')}` },
      { query: { ids: Array.from({ length: 50 }, (_, i) => i + 1) } },
    ],
    [getOrderContract, { params: ['nope'] }, { field: 'id', message: 'order id must be a UUID, got "nope"' }],
  ];
  for (const [contract, parts, expected] of cases)
    t.match(outcome(contract, parts), expected, JSON.stringify(parts));
});

t.test('headers, then the body', async (t) => {
  const purchase = purchaseContract(10);
  const key = { 'idempotency-key': 'k1' };
  const cases: [RouteContract, Partial<RequestContext>, unknown][] = [
    [
      purchase,
      { headers: key, body: json({ productId: 1, quantity: 2 }) },
      { headers: { 'Idempotency-Key': 'k1' }, body: { productId: 1, quantity: 2 } },
    ],
    [
      purchase,
      { body: json({ productId: 1, quantity: 2 }) },
      {
        code: 'IDEMPOTENCY_KEY_REQUIRED',
        field: 'Idempotency-Key',
        message: 'the Idempotency-Key header is required',
      },
    ],
    [purchase, { headers: { 'idempotency-key': '' }, body: json({}) }, { code: 'IDEMPOTENCY_KEY_REQUIRED' }],
    [
      purchase,
      { headers: { 'idempotency-key': 'a b' }, body: json('{') },
      { code: 'VALIDATION_FAILED', field: 'Idempotency-Key' },
    ],
    [purchase, { headers: { 'idempotency-key': 'k'.repeat(129) } }, { field: 'Idempotency-Key' }],
    [purchase, { headers: key, body: json('{"productId": 1, ') }, { code: 'MALFORMED_JSON', field: 'body' }],
    [purchase, { headers: key, body: json('[1]') }, { code: 'VALIDATION_FAILED', field: 'body' }],
    [
      purchase,
      { headers: key, body: json({ productId: 1, quantity: 1.5 }) },
      { field: 'quantity', message: 'quantity must be an integer, got 1.5' },
    ],
    [
      purchase,
      { headers: key, body: json({ productId: 1, quantity: '2' }) },
      { field: 'quantity', message: 'quantity must be an integer, got "2"' },
    ],
    [
      purchase,
      { headers: key, body: json({ productId: 1, quantity: 11 }) },
      { field: 'quantity', message: 'quantity must be from 1 to 10, got 11' },
    ],
    [
      purchase,
      { headers: key, body: json({ quantity: 1, price: 0 }) },
      { field: 'price', message: 'unknown field "price"; allowed: productId, quantity' },
    ],
    [
      purchase,
      { headers: key, body: json({ quantity: 1 }) },
      { field: 'productId', message: 'productId is required' },
    ],
    [
      purchase,
      { headers: key, body: json('{"__proto__": 1, "productId": 1, "quantity": 1}') },
      { field: '__proto__' },
    ],
    [
      createProductContract,
      { body: json({ name: 'a\u0007b', priceCents: 1, stock: 1 }) },
      { field: 'name', message: /control characters/ },
    ],
    [
      createProductContract,
      { body: json({ name: 'abc\u202Egpj.exe', priceCents: 1, stock: 1 }) },
      { field: 'name', message: /bidi/ },
    ],
    [
      createProductContract,
      { body: json({ name: ' x', priceCents: 1, stock: 1 }) },
      { field: 'name', message: /spaces/ },
    ],
    [
      createProductContract,
      { body: json({ name: 'n'.repeat(201), priceCents: 1, stock: 1 }) },
      { field: 'name', message: 'name must be a non-empty string of at most 200 characters' },
    ],
    [createProductContract, { body: json({ name: '', priceCents: 1, stock: 1 }) }, { field: 'name' }],
    [
      createProductContract,
      { body: json({ name: 'x', priceCents: 1, stock: 1, strategy: 'magic' }) },
      { field: 'strategy', message: 'strategy must be one of actor, baseline' },
    ],
    [createProductContract, { body: json({ priceCents: 1, stock: -1 }) }, { field: 'name' }],
    [
      createProductContract,
      { body: json({ name: 'x', priceCents: 1, stock: -1 }) },
      { field: 'stock', message: 'stock must be from 0 to 1000000000, got -1' },
    ],
    [restockContract, { params: ['1'], body: json({ quantity: 1, stock: 9 }) }, { field: 'stock' }],
    [restockContract, { params: ['x'], body: json({ quantity: 0 }) }, { field: 'id' }],
  ];
  for (const [contract, parts, expected] of cases)
    t.match(outcome(contract, parts), expected, JSON.stringify(parts.body?.toString() ?? parts.headers));
});

t.test('WebSocket frames', async (t) => {
  const frame = (value: unknown) => {
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    try {
      return decodeRequest('json', new TextEncoder().encode(text).buffer, 3);
    } catch (err) {
      const e = err as { code: string; field?: string; message: string; ref?: unknown };
      return { code: e.code, field: e.field, message: e.message, ref: e.ref };
    }
  };
  t.same(frame({ op: 'subscribe', ids: [1, 2, 2], ref: 'r' }), { op: 'subscribe', ids: [1, 2], ref: 'r' });
  t.same(frame({ op: 'ping', ref: 'x'.repeat(65) }), { op: 'ping' }, 'an unusable ref is ignored');
  t.same(frame({ op: 'ping', ids: 'ignored' }), { op: 'ping' });
  t.match(frame('nope'), { code: 'MALFORMED_FRAME' });
  t.match(frame('[1]'), { code: 'VALIDATION_FAILED', field: 'op' });
  t.match(frame({ op: 'ping', extra: 1, ref: 1 }), {
    field: 'extra',
    message: 'unknown field "extra"',
    ref: 1,
  });
  t.match(frame({ op: 'x' }), { field: 'op' });
  t.match(frame({ op: 'subscribe' }), {
    field: 'ids',
    message: '`ids` must be a non-empty array of product ids',
  });
  t.match(frame({ op: 'unsubscribe', ids: [] }), { field: 'ids' });
  t.match(frame({ op: 'subscribe', ids: [1, 'a'], ref: 'u' }), {
    code: 'VALIDATION_FAILED',
    field: 'ids[1]',
    message: 'ids[1] must be a positive integer product id',
    ref: 'u',
  });
  t.match(frame({ op: 'subscribe', ids: [1, 2, 3, 'x'] }), { code: 'TOO_MANY_SUBSCRIPTIONS', field: 'ids' });
});
