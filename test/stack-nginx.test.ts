// The stack's nginx (production docker/nginx/nginx.conf) in front of two stand-in app nodes on the ports
// `npm start` uses: round robin; a node's own 503 (a dependency out) passed to the client and not counted
// against the node; a draining node's unanswered request (the connection closed) retried on the other node
// for GET and for a keyed POST (`proxy_next_upstream error timeout non_idempotent` on /purchases) but not for
// an unkeyed admin POST; and a stopped node passed over. Skipped when 8081/8082 are taken (an `npm start` on this machine): nginx would send to real nodes.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import WebSocket, { WebSocketServer } from 'ws';
import { describePortOwner, portAnswers } from '../scripts/stack/process.js';
import { ERROR_CODES } from '../src/errors.js';
import { APP_NODES, STACK_HOST, STACK_PORTS, stackStatus } from '../scripts/stack/stack.js';

/** production upstreams.conf: fail_timeout=5s; a node marked down by an earlier run is back after it. */
const FAIL_TIMEOUT_MS = 5000;

interface Hit {
  readonly method: string;
  readonly path: string;
  readonly key: string | undefined;
  readonly body: string;
}

interface StandIn {
  readonly id: string;
  readonly port: number;
  /**
   * `ok`: 200 with its id; `unavailable`: 503 DEPENDENCY_UNAVAILABLE, as a node answers while MariaDB fails
   * over; `draining`: the connection closed unanswered, as a draining node does with proxied requests.
   */
  mode: 'ok' | 'unavailable' | 'draining';
  readonly hits: Hit[];
  stop(): Promise<void>;
}

async function startStandIn(id: string, port: number): Promise<StandIn> {
  let sockets: WebSocketServer | undefined;
  const standIn: StandIn = {
    id,
    port,
    mode: 'ok',
    hits: [],
    stop: () =>
      new Promise((resolve) => {
        for (const ws of sockets?.clients ?? []) ws.terminate();
        sockets?.close();
        server.close(() => resolve());
        // nginx keeps idle keep-alive connections to its upstreams: close them too, as a dying node would.
        server.closeAllConnections();
      }),
  };
  const server = http.createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => (body += chunk));
    request.on('end', () => {
      const key = request.headers['idempotency-key'];
      standIn.hits.push({
        method: request.method ?? '',
        path: request.url ?? '',
        key: typeof key === 'string' ? key : undefined,
        body,
      });
      if (standIn.mode === 'draining') {
        request.socket.destroy();
        return;
      }
      const [status, payload] =
        standIn.mode === 'ok'
          ? [200, { node: id, method: request.method, key, body }]
          : [
              503,
              {
                error: { code: 'DEPENDENCY_UNAVAILABLE', message: `${id}: MySQL is out`, retryable: true },
                node: id,
              },
            ];
      response.writeHead(status, { 'content-type': 'application/json', 'retry-after': '1' });
      response.end(JSON.stringify(payload));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, STACK_HOST, () => resolve());
  });
  if ((server.address() as AddressInfo).port !== port) throw new Error(`${id}: not listening on ${port}`);
  // WebSocket upgrades on /ws (as the app's stock endpoint): echoes each message with the node's id and
  // the subprotocol it was offered, so a client sees that the upgrade, the protocol and frames pass nginx.
  sockets = new WebSocketServer({
    server,
    path: '/ws',
    handleProtocols: (offered) => [...offered][0] ?? false,
  });
  sockets.on('connection', (ws) =>
    ws.on('message', (data) => ws.send(`${id}:${ws.protocol}:${(data as Buffer).toString()}`)),
  );
  return standIn;
}

interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly json: any;
}

// One keep-alive connection: every request lands on the same nginx worker, whose round robin (and
// passive health state: the upstream has no shared `zone`) is then the only one in play.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
t.teardown(() => agent.destroy());

function viaNginx(method: string, path: string, headers: http.OutgoingHttpHeaders = {}, body?: string) {
  return new Promise<Answer>((resolve, reject) => {
    const request = http.request(
      { host: STACK_HOST, port: STACK_PORTS.nginx, method, path, headers, agent, timeout: 5000 },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => {
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = text;
          }
          resolve({ status: response.statusCode ?? 0, headers: response.headers, json });
        });
      },
    );
    request.once('timeout', () => request.destroy(new Error(`${method} ${path}: no answer within 5 s`)));
    request.once('error', reject);
    request.end(body);
  });
}

t.test("the stack's nginx is up on 8080 with the app nodes as its upstreams", async (t) => {
  const { nginx } = await stackStatus();
  t.equal(nginx.state, 'up', 'nginx is up (npm run stack -- up)');
  t.equal(nginx.port, 8080, 'on the documented service port');
  t.same(
    (nginx['upstreams'] as { address: string }[] | undefined)?.map((upstream) => upstream.address),
    APP_NODES.map(({ port }) => `${STACK_HOST}:${port}`),
    'upstreams 127.0.0.1:8081 and 127.0.0.1:8082',
  );
  const health = await viaNginx('GET', '/nginx-health');
  t.equal(health.status, 200, 'nginx answers itself on /nginx-health');
});

t.test("nginx's own refusals of an oversized request are the API's JSON errors, not HTML", async (t) => {
  const body = await viaNginx(
    'POST',
    '/purchases',
    { 'content-type': 'application/json', 'idempotency-key': `nginx-large-${process.pid}` },
    `{"productId":1,"quantity":1,"pad":"${'a'.repeat(70_000)}"}`,
  );
  t.match(body, {
    status: 413,
    headers: { 'content-type': 'application/json' },
    json: { error: { code: 'PAYLOAD_TOO_LARGE', retryable: false } },
  });
  const header = await viaNginx('GET', '/products/1', { 'x-padding': 'a'.repeat(9_000) });
  t.match(header, {
    status: 431,
    headers: { 'content-type': 'application/json' },
    json: { error: { code: 'REQUEST_HEADERS_TOO_LARGE', retryable: false } },
  });
  for (const answer of [body, header]) {
    t.ok(answer.headers['x-request-id'], 'with the request id');
    t.ok(Object.hasOwn(ERROR_CODES, answer.json.error.code), 'a code of the service registry');
  }
});

const taken: string[] = [];
for (const { id, port } of APP_NODES)
  if (await portAnswers(port, 500)) taken.push(`${port} (${id}) by ${await describePortOwner(port)}`);
const skip =
  taken.length === 0
    ? false
    : `ports of the app nodes are taken: ${taken.join('; ')} — an \`npm start\` running? Stop it to run this test`;

t.test('through nginx to two stand-in app nodes', { skip }, async (t) => {
  const [first, second] = APP_NODES;
  if (first === undefined || second === undefined)
    throw new Error('layout.ts lists fewer than two app nodes');
  const one = await startStandIn(first.id, first.port);
  const two = await startStandIn(second.id, second.port);
  t.teardown(async () => {
    await Promise.all([one.stop(), two.stop()]);
  });

  t.test('round robin: requests reach both nodes', async (t) => {
    // A node an earlier run left marked down (max_fails reached) is skipped until fail_timeout has passed.
    const deadline = Date.now() + FAIL_TIMEOUT_MS + 2000;
    const seen = new Set<string>();
    while (seen.size < 2 && Date.now() < deadline) {
      const answer = await viaNginx('GET', '/products/1');
      t.equal(answer.status, 200, 'answered');
      seen.add(String(answer.json?.node));
      if (seen.size < 2) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    t.same([...seen].sort(), [one.id, two.id], 'both nodes answered');
    const counts = new Map<string, number>();
    for (let i = 0; i < 10; i += 1) {
      const answer = await viaNginx('GET', '/products/1');
      counts.set(answer.json?.node, (counts.get(answer.json?.node) ?? 0) + 1);
    }
    t.same(Object.fromEntries(counts), { [one.id]: 5, [two.id]: 5 }, 'ten requests alternate: 5 each');
  });

  t.test(
    'internal surfaces are not passed: /metrics and /internal/* answer a JSON 404 of nginx',
    async (t) => {
      const before = one.hits.length + two.hits.length;
      for (const [method, path] of [
        ['GET', '/metrics'],
        ['GET', '/%6Detrics'],
        ['GET', '/metrics?format=text'],
        ['GET', '/internal/peer'],
        ['POST', '/internal/anything'],
      ] as const) {
        const answer = await viaNginx(method, path, { 'x-forwarded-for': '127.0.0.1' });
        t.equal(answer.status, 404, `${method} ${path}: 404`);
        t.match(answer.json, { error: { code: 'NOT_FOUND', retryable: false } }, 'a JSON error body');
      }
      t.equal(one.hits.length + two.hits.length, before, 'no app node saw any of them');
    },
  );

  // More 503s than max_fails=3 from node one: none counts, so node one is never marked down.
  t.test("a node's own 503 (a dependency out) reaches the client; the node stays in", async (t) => {
    one.mode = 'unavailable';
    t.teardown(() => {
      one.mode = 'ok';
    });
    const triedBefore = one.hits.length;
    let passed = 0;
    for (let i = 0; i < 20 && passed < 5; i += 1) {
      const answer = await viaNginx('GET', '/products/1');
      if (answer.json?.node === two.id) continue;
      t.match(
        answer,
        {
          status: 503,
          headers: { 'retry-after': '1' },
          json: { error: { code: 'DEPENDENCY_UNAVAILABLE' }, node: one.id },
        },
        "the node's 503, body and Retry-After unchanged",
      );
      passed += 1;
    }
    t.equal(passed, 5, `five requests in twenty went to ${one.id}: round robin kept it after three 503s`);
    t.equal(one.hits.length, triedBefore + 5, 'each tried once, none passed on to the other node');
  });

  // Each retry below costs node one a failure toward max_fails=3 (an unanswered request counts): two in
  // all, so it is never marked down here and each case really tries it first.
  t.test('a draining node (request unanswered): a GET is answered by the other', async (t) => {
    one.mode = 'draining';
    t.teardown(() => {
      one.mode = 'ok';
    });
    const triedBefore = one.hits.length;
    for (let i = 0; i < 4 && one.hits.length === triedBefore; i += 1) {
      const answer = await viaNginx('GET', '/ready');
      t.equal(answer.status, 200, 'the client gets 200');
      t.equal(answer.json?.node, two.id, `answered by ${two.id}`);
    }
    t.equal(one.hits.length, triedBefore + 1, `nginx tried ${one.id} once and passed the request on`);
    t.match(one.hits.at(-1), { method: 'GET', path: '/ready' });
  });

  t.test(
    'a draining node: a POST with an Idempotency-Key is retried on the other (non_idempotent)',
    async (t) => {
      one.mode = 'draining';
      t.teardown(() => {
        one.mode = 'ok';
      });
      const triedBefore = one.hits.length;
      for (let i = 0; i < 4 && one.hits.length === triedBefore; i += 1) {
        const key = `nginx-retry-${process.pid}-${i}`;
        const body = JSON.stringify({ productId: 1, quantity: 1 });
        const answer = await viaNginx(
          'POST',
          '/purchases',
          {
            'content-type': 'application/json',
            'idempotency-key': key,
            authorization: 'Bearer not-checked-by-these-stand-in-nodes',
          },
          body,
        );
        t.equal(answer.status, 200, 'the client gets the answer of the node that took it');
        t.match(answer.json, { node: two.id, method: 'POST', key, body }, 'the same key and body reached it');
      }
      t.equal(one.hits.length, triedBefore + 1, `nginx tried ${one.id} once, then the other node`);
      const refused = one.hits.at(-1);
      t.match(refused, { method: 'POST', path: '/purchases' });
      t.ok(
        two.hits.some((hit) => hit.key === refused?.key && hit.body === refused?.body),
        'the refused POST was resent, body and key unchanged',
      );
    },
  );

  // Node two drains here (node one already took two failures above; max_fails is per node).
  t.test('a draining node: an admin POST (no key) is not sent again to the other', async (t) => {
    two.mode = 'draining';
    t.teardown(() => {
      two.mode = 'ok';
    });
    const triedBefore = two.hits.length;
    for (let i = 0; i < 4 && two.hits.length === triedBefore; i += 1) {
      const body = JSON.stringify({ quantity: 1, nonce: `nginx-admin-${process.pid}-${i}` });
      const answer = await viaNginx(
        'POST',
        '/products/1/restock',
        { 'content-type': 'application/json' },
        body,
      );
      if (two.hits.length === triedBefore) {
        t.match(answer, { status: 200, json: { node: one.id } }, `answered by ${one.id}`);
        continue;
      }
      t.match(
        answer,
        { status: 503, json: { error: { code: 'NO_NODE_AVAILABLE' } } },
        "nginx's JSON 503: the client decides itself",
      );
      t.notOk(
        one.hits.some((hit) => hit.body === body),
        `the restock was not sent again to ${one.id}: a restock sent twice adds its stock twice`,
      );
    }
    t.equal(two.hits.length, triedBefore + 1, `nginx sent it to ${two.id} once`);
  });

  t.test('a WebSocket on /ws passes nginx: the upgrade, the subprotocol, frames both ways', async (t) => {
    const ws = new WebSocket(`ws://${STACK_HOST}:${STACK_PORTS.nginx}/ws`, ['msgpack']);
    t.teardown(() => ws.terminate());
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    t.equal(ws.protocol, 'msgpack', 'the subprotocol the node chose reached the client');
    const echoed = new Promise<string>((resolve) =>
      ws.once('message', (data) => resolve((data as Buffer).toString())),
    );
    ws.send('hello');
    t.match(await echoed, /^node-[12]:msgpack:hello$/, 'a frame went to a node and its answer came back');
  });

  t.test('a stopped node: every request is answered by the other', async (t) => {
    await two.stop();
    for (let i = 0; i < 8; i += 1) {
      const get = await viaNginx('GET', '/products/1');
      t.match(get, { status: 200, json: { node: one.id } }, `GET ${i + 1} answered by ${one.id}`);
    }
    const post = await viaNginx(
      'POST',
      '/purchases',
      {
        'content-type': 'application/json',
        'idempotency-key': `nginx-down-${process.pid}`,
        authorization: 'Bearer not-checked-by-these-stand-in-nodes',
      },
      '{"productId":1,"quantity":1}',
    );
    t.match(post, { status: 200, json: { node: one.id } }, `a POST answered by ${one.id}`);
  });

  t.test("no node left: nginx's own answer is the API's JSON error with Retry-After, not HTML", async (t) => {
    await one.stop();
    const answers = [
      await viaNginx('GET', '/products/1'),
      await viaNginx(
        'POST',
        '/purchases',
        {
          'content-type': 'application/json',
          'idempotency-key': `nginx-none-${process.pid}`,
          authorization: 'Bearer not-checked-by-these-stand-in-nodes',
        },
        '{"productId":1,"quantity":1}',
      ),
    ];
    for (const answer of answers) {
      t.match(answer, {
        status: 503,
        headers: { 'content-type': 'application/json', 'retry-after': '1' },
        json: { error: { code: 'NO_NODE_AVAILABLE', retryable: true } },
      });
      t.ok(Object.hasOwn(ERROR_CODES, answer.json.error.code), 'a code of the service registry');
    }
  });
});
