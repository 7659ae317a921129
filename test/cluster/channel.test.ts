import { createServer as createTcpServer, type Socket } from 'node:net';
import { encode } from '@msgpack/msgpack';
import t, { type Test } from 'tap';
import WebSocket, { WebSocketServer } from 'ws';
import {
  attachPeerServer,
  PeerClient,
  type PeerClientOptions,
  type PeerHandler,
} from '../../src/cluster/channel/index.js';
import {
  decodeRequestFrame,
  decodeResponseFrame,
  fromRemoteError,
  MalformedFrameError,
} from '../../src/cluster/channel/frames.js';
import { AppError } from '../../src/errors.js';
import { createHttpServer } from '../../src/http/server.js';
import { sleep } from '../../src/timeouts.js';
import { freePort } from '../../scripts/node-launcher.js';
import { uws } from '../helpers/http.js';
import { silentLogger } from '../helpers/isolation.js';

const SECRET = 'peer-secret-for-tests';

/** A real uWS HTTP server with the peer channel attached; closed in teardown. */
async function startPeerNode(
  t: Test,
  handle: PeerHandler,
  port = 0,
  extra: { maxInFlightPerConnection?: number } = {},
) {
  const http = createHttpServer({ uws, logger: silentLogger, routes: [] });
  const peer = attachPeerServer(http.app, { secret: SECRET, handle, logger: silentLogger, ...extra });
  const boundPort = await http.listen('127.0.0.1', port);
  let closed = false;
  t.teardown(async () => {
    if (!closed) await http.close(0);
  });
  return {
    peer,
    port: boundPort,
    address: `127.0.0.1:${boundPort}`,
    close: async () => {
      closed = true;
      await http.close(0);
    },
  };
}

function peerClient(t: Test, options: Partial<PeerClientOptions> = {}): PeerClient {
  const client = new PeerClient({ secret: SECRET, logger: silentLogger, ...options });
  t.teardown(() => client.close());
  return client;
}

const echo: PeerHandler = async (op, body) => ({ op, body });
const inMs = (ms: number): number => Date.now() + ms;

/** Resolves with the rejection of `promise` (fails the test if it resolves). */
async function failure(promise: Promise<unknown>): Promise<AppError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof AppError) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}

async function rawSocket(t: Test, address: string, secret = SECRET): Promise<WebSocket> {
  const socket = new WebSocket(`ws://${address}/internal/peer`, { headers: { 'x-peer-secret': secret } });
  t.teardown(() => socket.terminate());
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  return socket;
}

const closeCode = (socket: WebSocket): Promise<number> =>
  new Promise((resolve) => socket.once('close', (code) => resolve(code)));

t.test('1,000 concurrent calls share one connection and each gets its own answer', async (t) => {
  const node = await startPeerNode(t, async (op, body) => {
    if (op === 'bin') return body;
    await sleep(Math.random() * 20); // answers come back out of order
    return { op, n: (body as { n: number }).n * 2 };
  });
  const client = peerClient(t);
  const results = await Promise.all(
    Array.from({ length: 1000 }, (_, n) => client.call(node.address, `op-${n % 7}`, { n }, inMs(10_000))),
  );
  t.ok(
    results.every((result, n) => JSON.stringify(result) === JSON.stringify({ op: `op-${n % 7}`, n: n * 2 })),
  );
  t.match(client.stats(), { openConnections: 1, connectionsOpened: 1, pendingCalls: 0, connectFailures: 0 });
  t.equal(node.peer.stats().connections, 1, 'the server saw one socket');
  const bytes = await client.call(node.address, 'bin', new Uint8Array([1, 2, 3]), inMs(1000));
  t.same([...(bytes as Uint8Array)], [1, 2, 3], 'binary bodies survive the uWS buffer reuse');
});

t.test('remote AppErrors keep their code; other faults become INTERNAL', async (t) => {
  const node = await startPeerNode(t, async (op) => {
    if (op === 'buy') throw new AppError('OUT_OF_STOCK', 'sold out');
    if (op === 'busy') throw new AppError('OVERLOADED', 'mailbox full', { retryAfterSeconds: 2 });
    throw new Error('ER_ACCESS_DENIED for user root');
  });
  const client = peerClient(t);
  const outOfStock = await failure(client.call(node.address, 'buy', {}, inMs(1000)));
  t.match(outOfStock, { code: 'OUT_OF_STOCK', status: 409, retryable: false, message: 'sold out' });
  const busy = await failure(client.call(node.address, 'busy', {}, inMs(1000)));
  t.match(busy, { code: 'OVERLOADED', retryable: true, retryAfterSeconds: 2 });
  const internal = await failure(client.call(node.address, 'crash', {}, inMs(1000)));
  t.match(internal, { code: 'INTERNAL', status: 500, retryable: false });
  t.notMatch(internal.message, 'root', 'the remote fault message is not leaked');
  t.match(fromRemoteError({ code: 'NO_SUCH_CODE', message: 'x', retryable: true }, 'a:1'), {
    code: 'INTERNAL',
  });
});

t.test('a slow handler: DEADLINE_EXCEEDED at the deadline, the late answer is dropped', async (t) => {
  const node = await startPeerNode(t, async (op) => {
    if (op === 'slow') await sleep(400);
    return op;
  });
  const client = peerClient(t);
  t.equal(await client.call(node.address, 'warm', null, inMs(1000)), 'warm');
  const started = performance.now();
  const late = await failure(client.call(node.address, 'slow', null, inMs(150)));
  const elapsed = performance.now() - started;
  t.match(late, { code: 'DEADLINE_EXCEEDED', retryable: true });
  t.ok(elapsed >= 140 && elapsed < 300, `failed after ${Math.round(elapsed)} ms`);
  t.equal(client.stats().pendingCalls, 0, 'the call left the pending map');
  await sleep(400);
  t.equal(client.stats().lateReplies, 1, 'the late answer arrived and was dropped');
  t.equal(await client.call(node.address, 'after', null, inMs(1000)), 'after');
  t.equal(client.stats().connectionsOpened, 1, 'the connection survived');

  const bad = await failure(client.call(node.address, '', null, Infinity));
  t.match(
    bad,
    { code: 'INTERNAL', message: /bad peer call/ },
    'refused locally, not sent to close the socket',
  );
  const expired = await failure(client.call(node.address, 'x', null, Date.now() - 1));
  t.match(expired, { code: 'DEADLINE_EXCEEDED' }, 'a past deadline fails without sending');
});

t.test('the server answers an expired request DEADLINE_EXCEEDED without calling the handler', async (t) => {
  let calls = 0;
  const node = await startPeerNode(t, async () => (calls += 1));
  const socket = await rawSocket(t, node.address);
  const reply = new Promise<Buffer>((resolve) => socket.once('message', (data) => resolve(data as Buffer)));
  socket.send(encode({ t: 'req', id: 7, op: 'buy', deadline: Date.now() - 5, body: null }));
  t.match(decodeResponseFrame(await reply), {
    id: 7,
    ok: false,
    error: { code: 'DEADLINE_EXCEEDED', retryable: true },
  });
  t.equal(calls, 0);
});

t.test(
  'the server closing fails pending calls at once; a new server on the port is reconnected to',
  async (t) => {
    const releases: (() => void)[] = [];
    // A fixed port: uWS sets SO_REUSEADDR only then, so the port can be bound again despite TIME_WAIT.
    const port = await freePort();
    const node = await startPeerNode(
      t,
      (op) => new Promise((resolve) => releases.push(() => resolve(op))),
      port,
    );
    const client = peerClient(t);
    const calls = Array.from({ length: 20 }, () =>
      failure(client.call(node.address, 'hang', null, inMs(10_000))),
    );
    while (releases.length < 20) await sleep(5);
    const started = performance.now();
    await node.close();
    const errors = await Promise.all(calls);
    const elapsed = performance.now() - started;
    t.ok(errors.every((err) => err.code === 'PEER_UNAVAILABLE' && err.retryable));
    t.ok(elapsed < 1000, `failed ${Math.round(elapsed)} ms after the close, not at the deadline`);
    for (const release of releases) release(); // handlers finishing on closed sockets must not throw
    await sleep(20);

    const down = await failure(client.call(node.address, 'x', null, inMs(1000)));
    t.match(down, { code: 'PEER_UNAVAILABLE' }, 'nobody listens now');

    const again = await startPeerNode(t, echo, node.port);
    const stop = inMs(5000);
    let answer: unknown;
    while (answer === undefined && Date.now() < stop) {
      answer = await client.call(again.address, 'back', 1, inMs(1000)).catch(async (err: AppError) => {
        t.equal(err.code, 'PEER_UNAVAILABLE'); // still backing off after the failed attempt
        await sleep(25);
        return undefined;
      });
    }
    t.same(answer, { op: 'back', body: 1 });
    t.match(client.stats(), { connectionsOpened: 2, openConnections: 1 });
  },
);

t.test('a wrong secret is refused at upgrade; the server keeps serving others', async (t) => {
  const node = await startPeerNode(t, echo);
  const intruder = peerClient(t, { secret: 'not-the-secret' });
  const refused = await failure(intruder.call(node.address, 'buy', null, inMs(1000)));
  t.match(refused, { code: 'INTERNAL', retryable: false, message: /refused our peer secret/ });
  const fastFail = await failure(intruder.call(node.address, 'buy', null, inMs(1000)));
  t.match(fastFail, { code: 'INTERNAL', message: /next connect attempt/ }, 'backs off instead of hammering');

  const anonymous = new WebSocket(`ws://${node.address}/internal/peer`);
  anonymous.on('error', () => {}); // the refused handshake is the point
  const status = await new Promise<number | undefined>((resolve) => {
    anonymous.once('unexpected-response', (_req, res) => resolve(res.statusCode));
    anonymous.once('open', () => resolve(undefined));
  });
  anonymous.terminate();
  t.equal(status, 401, 'no secret: 401, no upgrade');
  t.equal(node.peer.stats().rejectedUpgrades, 2);
  t.equal(node.peer.stats().connections, 0);

  const friend = peerClient(t);
  t.same(await friend.call(node.address, 'ok', 1, inMs(1000)), { op: 'ok', body: 1 });
});

t.test('a malformed frame closes only that socket', async (t) => {
  const node = await startPeerNode(t, echo);
  const client = peerClient(t);
  t.same(await client.call(node.address, 'a', 1, inMs(1000)), { op: 'a', body: 1 });

  const garbage = await rawSocket(t, node.address);
  const garbageClosed = closeCode(garbage);
  garbage.send(Buffer.from([0xc1])); // a byte msgpack never uses
  t.equal(await garbageClosed, 1007);

  const badShape = await rawSocket(t, node.address);
  const badShapeClosed = closeCode(badShape);
  badShape.send(encode({ t: 'req', id: -1, op: 'x', deadline: inMs(1000) }));
  t.equal(await badShapeClosed, 1007);

  const text = await rawSocket(t, node.address);
  const textClosed = closeCode(text);
  text.send('{"t":"req"}');
  t.equal(await textClosed, 1003);

  t.equal(node.peer.stats().malformedFrames, 3);
  t.same(await client.call(node.address, 'b', 2, inMs(1000)), { op: 'b', body: 2 });
  t.equal(client.stats().connectionsOpened, 1);
});

t.test('frame validation', async (t) => {
  t.throws(() => decodeRequestFrame(encode([1, 2])), MalformedFrameError);
  t.throws(
    () => decodeRequestFrame(encode({ t: 'req', id: 1.5, op: 'x', deadline: 1 })),
    MalformedFrameError,
  );
  t.throws(() => decodeRequestFrame(encode({ t: 'req', id: 1, op: '', deadline: 1 })), MalformedFrameError);
  t.throws(
    () => decodeRequestFrame(encode({ t: 'req', id: 1, op: 'x', deadline: 'soon' })),
    MalformedFrameError,
  );
  t.throws(
    () => decodeResponseFrame(encode({ t: 'res', id: 1, ok: false, error: { code: 1 } })),
    MalformedFrameError,
  );
  t.throws(() => decodeResponseFrame(encode({ t: 'res', id: 1 })), MalformedFrameError);
  t.match(decodeRequestFrame(encode({ t: 'req', id: 3, op: 'x', deadline: 9, body: { a: 1 } })), {
    id: 3,
    body: { a: 1 },
  });
});

t.test('connect failures fail fast with PEER_UNAVAILABLE and back off', async (t) => {
  const gone = await startPeerNode(t, echo);
  await gone.close();
  const client = peerClient(t, { backoff: () => 60_000 });
  const started = performance.now();
  const refused = await failure(client.call(gone.address, 'x', null, inMs(5000)));
  t.match(refused, { code: 'PEER_UNAVAILABLE', retryable: true, message: /cannot connect/ });
  t.ok(performance.now() - started < 1000, 'not at the deadline');
  t.match(await failure(client.call(gone.address, 'x', null, inMs(5000))), {
    message: /next connect attempt/,
  });
  t.match(client.stats(), { connectFailures: 1, pendingCalls: 0 });

  // A listener that accepts TCP but never answers the upgrade.
  const sockets: Socket[] = [];
  const blackHole = createTcpServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => blackHole.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    blackHole.close();
  });
  const { port } = blackHole.address() as { port: number };
  const slow = peerClient(t, { connectTimeoutMs: 300 });
  const beforeDeadline = await failure(slow.call(`127.0.0.1:${port}`, 'x', null, inMs(100)));
  t.match(beforeDeadline, { code: 'PEER_UNAVAILABLE', message: /no connection .* before/ }, 'deadline first');
  const timedOut = await failure(slow.call(`127.0.0.1:${port}`, 'y', null, inMs(5000)));
  t.match(timedOut, { code: 'PEER_UNAVAILABLE', message: /cannot connect/ }, 'then the connect timeout');
});

t.test('a peer that stops answering pings is dropped and its calls fail', async (t) => {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, autoPong: false });
  await new Promise((resolve) => server.once('listening', resolve));
  t.teardown(() => server.close());
  const { port } = server.address() as { port: number };
  const client = peerClient(t, { heartbeatIntervalMs: 100 });
  const started = performance.now();
  const dropped = await failure(client.call(`127.0.0.1:${port}`, 'x', null, inMs(5000)));
  t.match(dropped, { code: 'PEER_UNAVAILABLE', message: /lost/ });
  t.ok(performance.now() - started < 1000);
  for (const socket of server.clients) socket.terminate();
});

t.test('per-connection in-flight bound answers OVERLOADED', async (t) => {
  const node = await startPeerNode(t, async () => sleep(100), 0, { maxInFlightPerConnection: 2 });
  const client = peerClient(t);
  const results = await Promise.allSettled(
    [1, 2, 3].map(() => client.call(node.address, 'x', null, inMs(2000))),
  );
  t.same(
    results.map((result) => result.status),
    ['fulfilled', 'fulfilled', 'rejected'],
  );
  t.match((results[2] as PromiseRejectedResult).reason, { code: 'OVERLOADED', retryable: true });
});

t.test('close() fails pending calls and refuses new ones', async (t) => {
  const node = await startPeerNode(t, async () => sleep(2000));
  const client = new PeerClient({ secret: SECRET, logger: silentLogger });
  const pending = failure(client.call(node.address, 'x', null, inMs(5000)));
  await sleep(50);
  await client.close();
  t.match(await pending, { code: 'SHUTTING_DOWN' });
  t.match(await failure(client.call(node.address, 'x', null, inMs(5000))), { code: 'SHUTTING_DOWN' });
  t.match(client.stats(), { openConnections: 0, pendingCalls: 0 });
});
