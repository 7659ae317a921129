import fc from 'fast-check';
import t from 'tap';
import { startApp } from '../helpers/app.js';
import { uniq } from '../helpers/isolation.js';
import { totals } from '../helpers/database.js';
import { asAdmin, asUser, tokenFor } from '../helpers/tokens.js';

/**
 * Property: whatever a client sends to any endpoint, with any headers, the answer is never a 5xx, every
 * error is a JSON error body, and a refused request (4xx) changes no stock, version or order.
 */
t.test('fuzz: any body, headers and path to any endpoint', async (t) => {
  const running = await startApp(t, { PURCHASE_MAX_QUANTITY: '5' });
  const productId = await running.createProduct({ stock: 1_000_000 });
  const customer = await asUser(uniq('fuzz'));
  const admin = await asAdmin();
  const expired = `Bearer ${await tokenFor('fuzz', 'customer', { ttlSeconds: -3600 })}`;
  const printable = fc.string({
    unit: fc.constantFrom(...' !#$%&()*+,-./0123456789:;<=>?@ABCXYZabcxyz[]^_`{|}~"\'\\'),
    maxLength: 60,
  });
  const segment = fc.oneof(
    fc.constant(String(productId)),
    fc.integer({ min: -5, max: 2 ** 53 }).map(String),
    fc.string({ maxLength: 30 }).map(encodeURIComponent),
    fc.constant('01a20000-0000-7000-8000-000000000000'),
  );
  const path = fc.oneof(
    { arbitrary: fc.constant('/purchases'), weight: 6 },
    { arbitrary: fc.constant(`/products/${productId}/restock`), weight: 2 },
    segment.map((s) => `/products/${s}`),
    segment.map((s) => `/products/${s}/restock`),
    fc.constant('/products'),
    fc.array(segment, { maxLength: 5 }).map((ids) => `/products?ids=${ids.join(',')}`),
    fc.constant('/purchases'),
    segment.map((s) => `/orders/${s}`),
    segment.map((s) => `/stats/products/${s}`),
    fc.constantFrom('/health', '/ready', '/metrics', '/internal/peer', '/ws'),
    fc.string({ maxLength: 20 }).map((s) => `/${encodeURIComponent(s)}`),
  );
  const field = fc.oneof(
    fc.integer({ min: -10, max: 10 }),
    fc.constant(productId),
    fc.double(),
    fc.string({ maxLength: 300 }),
    fc.boolean(),
    fc.constant(null),
    fc.array(fc.integer(), { maxLength: 3 }),
  );
  const small = fc.integer({ min: -1, max: 7 });
  const body = fc
    .oneof(
      { arbitrary: fc.record({ productId: fc.constant(productId), quantity: small }), weight: 6 },
      { arbitrary: fc.record({ quantity: small }), weight: 2 },
      fc.record({ name: fc.string({ maxLength: 210 }), priceCents: small, stock: small }),
      fc.record(
        { productId: field, quantity: field, name: field, priceCents: field, stock: field, strategy: field },
        { requiredKeys: [] },
      ),
      fc.dictionary(fc.string({ maxLength: 10 }), field, { maxKeys: 4 }),
      fc.jsonValue(),
      fc.string({ maxLength: 200 }),
    )
    .map((value) => (typeof value === 'string' ? value : JSON.stringify(value)));
  const authorization = fc.oneof(
    fc.constant(undefined),
    { arbitrary: fc.constant(customer.authorization), weight: 4 },
    { arbitrary: fc.constant(admin.authorization), weight: 2 },
    fc.constant(expired),
    printable.map((s) => `Bearer ${s}`),
    printable,
  );
  const request = fc.record({
    method: fc.oneof(fc.constant('GET' as const), { arbitrary: fc.constant('POST' as const), weight: 2 }),
    path,
    body,
    authorization,
    key: fc.option(fc.oneof(printable, { arbitrary: fc.uuid(), weight: 3 }), { nil: undefined, freq: 5 }),
    contentType: fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded'),
    forwardedFor: fc.option(printable, { nil: undefined }),
  });

  let before = await totals(running.infra.mysql.primary, productId);
  const statuses = new Map<number, number>();
  await fc.assert(
    fc.asyncProperty(request, async (r) => {
      const headers: Record<string, string> = { 'content-type': r.contentType };
      if (r.authorization !== undefined) headers['authorization'] = r.authorization;
      if (r.key !== undefined) headers['idempotency-key'] = r.key;
      if (r.forwardedFor !== undefined) headers['x-forwarded-for'] = r.forwardedFor;
      const answer =
        r.method === 'GET' ? await running.get(r.path, headers) : await running.post(r.path, r.body, headers);
      statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
      const after = await totals(running.infra.mysql.primary, productId);
      if (answer.status >= 500)
        throw new Error(`${answer.status} for ${JSON.stringify(r)}: ${JSON.stringify(answer.body)}`);
      if (answer.status >= 400) {
        if (typeof answer.body?.error?.code !== 'string')
          throw new Error(`non-JSON error ${answer.status} for ${JSON.stringify(r)}: ${String(answer.body)}`);
        if (!String(answer.headers['content-type']).startsWith('application/json'))
          throw new Error(`error without a JSON content type for ${JSON.stringify(r)}`);
        if (JSON.stringify(after) !== JSON.stringify(before))
          throw new Error(`refused ${answer.status} changed state: ${JSON.stringify({ r, before, after })}`);
      }
      before = after;
    }),
    { numRuns: 600, seed: Number(process.env['FUZZ_SEED'] ?? Date.now() % 2 ** 31), endOnFailure: true },
  );
  t.comment(`statuses: ${JSON.stringify(Object.fromEntries(statuses))}`);
  t.ok(statuses.has(201) && statuses.has(200), 'purchases and restocks went through');
  t.ok(
    [...statuses.keys()].some((s) => s === 401) && [...statuses.keys()].some((s) => s === 400),
    'and many refused',
  );
});
