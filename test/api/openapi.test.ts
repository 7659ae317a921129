// The OpenAPI document: valid OpenAPI 3.1, committed as generated, served at GET /openapi.json, and the
// tests' contract check (test/helpers/http.ts) refuses what it does not document.
import { readFileSync } from 'node:fs';
import SwaggerParser from '@apidevtools/swagger-parser';
import t from 'tap';
import { publishedDocument } from '../../src/api/openapi.js';
import { loadConfig } from '../../src/config.js';
import { startApp } from '../helpers/app.js';
import { contractChecker } from '../helpers/http.js';
import { frameMismatch } from '../helpers/ws-client.js';

const generated = () => publishedDocument(loadConfig({}).purchase);
const committed = () => JSON.parse(readFileSync(new URL('../../docs/openapi.json', import.meta.url), 'utf8'));

t.test('the generated document is valid OpenAPI 3.1', async (t) => {
  const document = generated();
  t.equal(document['openapi'], '3.1.0');
  // validate() dereferences in place: give it a copy.
  await t.resolves(SwaggerParser.validate(structuredClone(document) as never), 'swagger-parser validates it');
});

t.test('docs/openapi.json is what the code generates (npm run -s openapi writes it)', async (t) => {
  t.same(committed(), JSON.parse(JSON.stringify(generated())));
});

t.test('every route is documented with its roles, inputs and error answers', async (t) => {
  const { paths } = generated();
  t.same(Object.keys(paths).sort(), [
    '/health',
    '/metrics',
    '/openapi.json',
    '/orders/{id}',
    '/products',
    '/products/{id}',
    '/products/{id}/restock',
    '/purchases',
    '/ready',
    '/stats/products/{id}',
  ]);
  const purchase = paths['/purchases']!['post'] as any;
  t.same(purchase.security, [{ bearer: ['customer'] }]);
  t.same(Object.keys(purchase.responses), [
    '201',
    '202',
    '400',
    '401',
    '402',
    '403',
    '404',
    '409',
    '413',
    '422',
    '429',
    '431',
    '500',
    '503',
    '504',
  ]);
  t.same(purchase.responses['400'].content['application/json'].schema.properties.error.properties.code.enum, [
    'VALIDATION_FAILED',
    'MALFORMED_JSON',
    'IDEMPOTENCY_KEY_REQUIRED',
  ]);
  t.match(purchase.parameters, [{ name: 'Idempotency-Key', in: 'header', required: true }]);
  t.match(purchase.requestBody.content['application/json'].schema, {
    additionalProperties: false,
    required: ['productId', 'quantity'],
    properties: { quantity: { type: 'integer', minimum: 1, maximum: 10 } },
  });
  t.notMatch(JSON.stringify(generated()), /errorMessage|missingCode/, 'the wording keys stay out');
  t.same((paths['/products/{id}']!['get'] as any).security, [], 'reads are anonymous');
});

t.test('the contract check refuses an answer the document does not describe', async (t) => {
  const { mismatch } = contractChecker();
  const product = {
    id: 1,
    name: 'x',
    priceCents: 1,
    stock: 1,
    version: 1,
    strategy: 'actor',
    createdAt: '2030-01-01T00:00:00.000Z',
  };
  const answer = { method: 'GET', path: '/products/1?minVersion=2', contentType: 'application/json' };
  t.equal(mismatch({ ...answer, status: 200, body: product }), undefined);
  t.match(mismatch({ ...answer, status: 200, body: { ...product, extra: 1 } }), /body does not match/);
  t.match(mismatch({ ...answer, status: 402, body: product }), /status not documented/);
  t.match(
    mismatch({
      ...answer,
      status: 404,
      body: { error: { code: 'ORDER_NOT_FOUND', message: 'm', retryable: false } },
    }),
    /body does not match/,
    'a code the route does not answer',
  );
  t.equal(
    mismatch({
      method: 'GET',
      path: '/nope',
      status: 404,
      contentType: 'application/json',
      body: { error: { code: 'NOT_FOUND', message: 'no route', retryable: false } },
    }),
    undefined,
  );
  // The path as the server gets it: the client resolves `./` (the fuzz test's GET /products/./restock is
  // GET /products/restock on the wire, a product id that is not a number).
  t.equal(
    mismatch({
      method: 'GET',
      path: '/products/./restock',
      status: 400,
      contentType: 'application/json',
      body: { error: { code: 'VALIDATION_FAILED', message: 'm', field: 'id', retryable: false } },
    }),
    undefined,
  );
  t.equal(frameMismatch({ type: 'stock', productId: 1, stock: 2, version: 3 }), undefined);
  t.match(frameMismatch({ type: 'stock', productId: 1, stock: -2, version: 3 }), /stock/);
});

t.test('GET /openapi.json serves the document, anonymously', async (t) => {
  const running = await startApp(t);
  const answer = await running.get('/openapi.json');
  t.equal(answer.status, 200);
  t.match(answer.headers['content-type'], /^application\/json/);
  t.same(answer.body, committed(), 'the published document (default settings)');
});
