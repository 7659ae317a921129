// The load generator's HTTP/1.1 client against real servers: answers by length, chunked and to the close, keep-
// alive reuse, `Connection: close`, a server that drops the request, one that never answers, and the set's
// rotation under more requests than connections.
import t, { type Test } from 'tap';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { createServer as httpServer, type Server } from 'node:http';
import { createServer as tcpServer, type AddressInfo, type Socket } from 'node:net';
import { ConnectionSet } from '../../bench/open-loop.js';

async function listen(server: Server | ReturnType<typeof tcpServer>, t: Test): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => void server.close());
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

t.test('answers by content-length and chunked, headers, bodies, and one socket kept alive', async (t) => {
  const peers = new Set<string>();
  const server = httpServer((req, res) => {
    peers.add(`${req.socket.remotePort}`);
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      res.setHeader('x-cache', 'HIT');
      res.setHeader('x-seen', [req.method ?? '', req.headers['content-type'] ?? '-', req.headers.host ?? '']);
      if (req.url === '/chunked') {
        res.write('{"part":1,');
        setTimeout(() => res.end('"part2":"é"}'), 5);
      } else res.end(JSON.stringify({ url: req.url, body, auth: req.headers['authorization'] }));
    });
  });
  const origin = await listen(server, t);
  const set = new ConnectionSet(origin, 1);
  t.teardown(() => set.close());
  t.equal(await set.open('/health'), 1);

  const post = await set.send({
    method: 'POST',
    path: '/p?x=1',
    headers: { authorization: 'Bearer a' },
    body: '{"q":1}',
  });
  t.equal(post.status, 200);
  t.same(JSON.parse(post.body), { url: '/p?x=1', body: '{"q":1}', auth: 'Bearer a' });
  t.equal(post.headers['x-cache'], 'HIT');
  t.equal(post.headers['x-seen'], `POST, application/json, ${origin.slice('http://'.length)}`);

  const chunked = await set.send({ method: 'GET', path: '/chunked' });
  t.equal(chunked.headers['transfer-encoding'], 'chunked');
  t.same(JSON.parse(chunked.body), { part: 1, part2: 'é' });
  t.equal(peers.size, 1, 'every request went over the one keep-alive socket');
});

t.test('Connection: close and a body read to the end of the connection', async (t) => {
  let served = 0;
  const server = tcpServer((socket: Socket) => {
    socket.once('data', () => {
      served += 1;
      // An HTTP/1.0-style answer: no length, the body ends with the connection.
      socket.end('HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\r\n{"error":"OVERLOADED"}');
    });
  });
  const set = new ConnectionSet(await listen(server, t), 1);
  t.teardown(() => set.close());
  for (let i = 0; i < 3; i += 1) {
    const answer = await set.send({ method: 'GET', path: '/' });
    t.equal(answer.status, 503);
    t.equal(answer.body, '{"error":"OVERLOADED"}');
  }
  t.equal(served, 3, 'a new connection for each request after the server closed the last');
});

t.test('a keep-alive connection the server closed while idle is replaced, not failed', async (t) => {
  let accepted = 0;
  const server = tcpServer((socket: Socket) => {
    accepted += 1;
    socket.once('data', () => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      setTimeout(() => socket.end(), 20); // as uWS ends a connection idle past its timeout
    });
  });
  const set = new ConnectionSet(await listen(server, t), 1);
  t.teardown(() => set.close());
  t.equal((await set.send({ method: 'GET', path: '/' })).body, 'ok');
  await sleep(100);
  t.equal(set.connected, 0, 'the closed socket is no longer counted');
  t.equal((await set.send({ method: 'GET', path: '/' })).body, 'ok');
  t.equal(accepted, 2);
});

t.test('a dropped request and a silent server are transport errors; the connection recovers', async (t) => {
  let mode: 'drop' | 'silent' | 'answer' = 'drop';
  const server = tcpServer((socket: Socket) => {
    socket.on('data', () => {
      if (mode === 'drop') socket.destroy();
      else if (mode === 'answer') socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    });
  });
  const set = new ConnectionSet(await listen(server, t), 1, 300);
  t.teardown(() => set.close());
  await t.rejects(set.send({ method: 'GET', path: '/' }), { code: 'CLOSED' });
  mode = 'silent';
  const started = performance.now();
  await t.rejects(set.send({ method: 'GET', path: '/' }), { code: 'TIMEOUT' });
  t.ok(performance.now() - started >= 300, 'failed by the timeout, not before');
  mode = 'answer';
  t.equal((await set.send({ method: 'GET', path: '/' })).body, 'ok');
  const refused = new ConnectionSet('http://127.0.0.1:1', 1);
  t.teardown(() => refused.close());
  await t.rejects(refused.send({ method: 'GET', path: '/' }), { code: 'ECONNREFUSED' });
});

t.test('more requests than connections wait their turn, each answered once', async (t) => {
  const server = httpServer((req, res) => setTimeout(() => res.end(req.url), 2));
  const set = new ConnectionSet(await listen(server, t), 3);
  t.teardown(() => set.close());
  const answers = await Promise.all(
    Array.from({ length: 30 }, (_, i) => set.send({ method: 'GET', path: `/${i}` })),
  );
  t.same(
    answers.map((a) => a.body),
    Array.from({ length: 30 }, (_, i) => `/${i}`),
  );
  t.equal(set.maxWaiting, 27);
  t.equal(set.connected, 3);
});
