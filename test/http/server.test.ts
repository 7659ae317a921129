import http from 'node:http';
import t from 'tap';
import { parseJsonObject } from '../../src/http/body.js';
import { json } from '../../src/http/reply.js';
import { AppError } from '../../src/errors.js';
import { loadNativeUws, NativeUwsUnavailableError } from '../../src/http/uws.js';
import { startServer } from '../helpers/http.js';
import { sleep } from '../../src/timeouts.js';
import { loadConfig } from '../../src/config.js';

t.test('routes get decoded params, query, headers and a JSON body', async (t) => {
  let calls = 0;
  const { base } = await startServer(
    t,
    [
      {
        method: 'get',
        pattern: '/items/:id',
        handler: (ctx) =>
          json(200, { id: ctx.params[0], query: ctx.query, user: ctx.headers['x-trace-user'] }),
      },
      {
        method: 'post',
        pattern: '/echo',
        handler: (ctx) => {
          calls += 1;
          return json(201, parseJsonObject(ctx.body), { 'X-Extra': 'yes' });
        },
      },
    ],
    { maxBodyBytes: 64 },
  );
  const got = await fetch(`${base}/items/a%20b?x=1`, { headers: { 'X-Trace-User': 'u1' } });
  t.equal(got.status, 200);
  t.same(await got.json(), { id: 'a b', query: 'x=1', user: 'u1' });

  const posted = await fetch(`${base}/echo`, { method: 'POST', body: JSON.stringify({ a: 1 }) });
  t.equal(posted.status, 201);
  t.equal(posted.headers.get('x-extra'), 'yes');
  t.same(await posted.json(), { a: 1 });

  const malformed = await fetch(`${base}/echo`, { method: 'POST', body: '{"a":' });
  t.equal(malformed.status, 400);
  t.match(await malformed.json(), { error: { code: 'MALFORMED_JSON', field: 'body' } });

  const tooLarge = await fetch(`${base}/echo`, {
    method: 'POST',
    body: JSON.stringify({ a: 'x'.repeat(100) }),
  });
  t.equal(tooLarge.status, 413);
  t.match(await tooLarge.json(), { error: { code: 'PAYLOAD_TOO_LARGE', field: 'body' } });
  t.equal(calls, 2, 'the handler never saw the oversized body');

  const missing = await fetch(`${base}/nope`);
  t.equal(missing.status, 404);
  t.match(await missing.json(), { error: { code: 'NOT_FOUND', message: /GET \/nope/ } });
});

t.test('errors become their status; unknown faults a 500 that hides the message', async (t) => {
  const { base } = await startServer(t, [
    {
      method: 'get',
      pattern: '/busy',
      handler: () => Promise.reject(new AppError('OVERLOADED', 'queue full', { retryAfterSeconds: 2 })),
    },
    {
      method: 'get',
      pattern: '/bug',
      handler: () => {
        throw new Error('secret detail');
      },
    },
  ]);
  const busy = await fetch(`${base}/busy`);
  t.equal(busy.status, 503);
  t.equal(busy.headers.get('retry-after'), '2');
  t.same(await busy.json(), { error: { code: 'OVERLOADED', message: 'queue full', retryable: true } });
  const bug = await fetch(`${base}/bug`);
  t.equal(bug.status, 500);
  const body = await bug.text();
  t.match(body, 'INTERNAL');
  t.notMatch(body, 'secret');
});

t.test('close drains in-flight requests, then refuses new connections', async (t) => {
  const { base, server, close } = await startServer(t, [
    {
      method: 'get',
      pattern: '/slow',
      handler: async () => {
        await sleep(300);
        return json(200, { done: true });
      },
    },
  ]);
  const slow = fetch(`${base}/slow`);
  await sleep(50);
  t.equal(server.inFlight(), 1);
  const closing = close(5_000);
  const answer = await slow;
  t.equal(answer.status, 200, 'the in-flight request completed');
  t.same(await closing, { drained: true, abandoned: 0 });
  await t.rejects(fetch(`${base}/slow`), 'the listener is closed');
});

t.test(
  'while draining, a request through the balancer is left unanswered, a direct one gets 503',
  async (t) => {
    const { base, close } = await startServer(
      t,
      [
        {
          method: 'get',
          pattern: '/slow',
          handler: async () => {
            await sleep(300);
            return json(200, { done: true });
          },
        },
        { method: 'get', pattern: '/fast', handler: () => json(200, { ran: true }) },
      ],
      { trustedProxies: ['127.0.0.1'] },
    );
    // Two kept-alive connections, opened before the drain (the listener closes with it).
    const direct = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const proxied = new http.Agent({ keepAlive: true, maxSockets: 1 });
    t.teardown(() => {
      direct.destroy();
      proxied.destroy();
    });
    const proxy = { 'x-forwarded-for': '203.0.113.7' };
    t.equal((await get(`${base}/fast`, direct)).status, 200);
    t.equal((await get(`${base}/fast`, proxied, proxy)).status, 200);

    const slow = fetch(`${base}/slow`);
    await sleep(50);
    const closing = close(5_000);
    const refused = await get(`${base}/fast`, direct);
    t.match(
      refused,
      { status: 503, headers: { 'retry-after': '1' } },
      'a direct caller: 503 with Retry-After',
    );
    t.match(JSON.parse(refused.body), { error: { code: 'SHUTTING_DOWN', retryable: true } });
    const unanswered = await get(`${base}/fast`, proxied, proxy).catch((err: NodeJS.ErrnoException) => err);
    t.type(
      unanswered,
      Error,
      'through the balancer: the connection closed with no answer, which nginx retries',
    );
    t.equal((await slow).status, 200, 'the request in flight completed');
    t.same(await closing, { drained: true, abandoned: 0 });
  },
);

t.test('close gives up after the grace period and reports what it abandoned', async (t) => {
  const { base, close } = await startServer(t, [
    { method: 'get', pattern: '/hang', handler: () => new Promise(() => undefined) },
  ]);
  const hanging = fetch(`${base}/hang`).catch((err: unknown) => err);
  await sleep(50);
  t.same(await close(100), { drained: false, abandoned: 1 });
  t.type(await hanging, Error, 'the abandoned client sees its connection closed');
});

t.test('refuses the pure-Node fallback', async (t) => {
  t.throws(() => loadNativeUws({ fallbackRequested: true }), NativeUwsUnavailableError);
  t.type(loadNativeUws({ fallbackRequested: false }).App, 'function');
  t.equal(loadConfig({ UWS_USE_FALLBACK: '1' }).uwsFallbackRequested, true);
  t.equal(loadConfig({}).uwsFallbackRequested, false);
});

/** A GET on `agent`'s kept-alive connection: its status, headers and body. */
function get(url: string, agent: http.Agent, headers: http.OutgoingHttpHeaders = {}) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>(
    (resolve, reject) => {
      http
        .get(url, { agent, headers }, (response) => {
          let body = '';
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => (body += chunk));
          response.on('end', () =>
            resolve({ status: response.statusCode ?? 0, headers: response.headers, body }),
          );
        })
        .once('error', reject);
    },
  );
}
