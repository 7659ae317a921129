// The /ws stock endpoint on one in-process app against the real stack: subscribe with a snapshot, live
// changes of purchases and restocks with versions, unsubscribe, msgpack, the cap, bad input.
import t from 'tap';
import WebSocket from 'ws';
import { startApp } from '../helpers/app.js';
import { uniq } from '../helpers/isolation.js';
import { connectSubscriber, wsUrl } from '../helpers/ws-client.js';

t.test(
  'subscribe, snapshot, changes of purchases and restocks, unsubscribe (JSON and msgpack)',
  async (t) => {
    const running = await startApp(t);
    const url = wsUrl(running.base);
    const productId = await running.createProduct({ stock: 20 });
    const json = await connectSubscriber(t, url);
    const packed = await connectSubscriber(t, url, { protocol: 'msgpack' });
    t.equal(packed.ws.protocol, 'msgpack', 'the server selects the msgpack subprotocol');
    for (const s of [json, packed]) s.send({ op: 'subscribe', ids: [productId], ref: 'r1' });
    for (const s of [json, packed]) {
      const ack = await s.waitFor((f) => f.type === 'subscribed', 10_000, true);
      t.same(ack, { type: 'subscribed', ids: [productId], ref: 'r1' });
      const snapshot = await s.waitForStock(productId, 20);
      t.equal(snapshot.version, 0, 'the snapshot carries the row version');
    }
    t.ok(
      packed.frames.length > 0 && typeof packed.frames[0] === 'object',
      'msgpack frames decode to the same objects',
    );

    const user = uniq('u');
    for (let i = 0; i < 3; i += 1) {
      const answer = await running.purchase(productId, 2, user, `k${i}`);
      t.equal(answer.status, 201);
    }
    const restock = await running.adminPost(`/products/${productId}/restock`, { quantity: 5 });
    t.equal(restock.status, 200);
    for (const s of [json, packed]) {
      const last = await s.waitForStock(productId, 20 - 6 + 5);
      t.equal(last.version, restock.body.version, 'the restock reached the subscriber with its version');
      const stocks = s.applied.get(productId)!.map((x) => x.stock);
      t.same(stocks, [20, 18, 16, 14, 19], 'every change, in order');
      t.ok(
        s.applied
          .get(productId)!
          .slice(1)
          .every((x) => typeof x.at === 'number'),
        'live changes carry their time',
      );
    }

    json.send({ op: 'unsubscribe', ids: [productId], ref: 2 });
    t.same(await json.waitFor((f) => f.type === 'unsubscribed'), {
      type: 'unsubscribed',
      ids: [productId],
      ref: 2,
    });
    const before = json.frames.length;
    await running.adminPost(`/products/${productId}/restock`, { quantity: 1 });
    await packed.waitForStock(productId, 20);
    t.equal(json.frames.length, before, 'no change reaches a connection after it unsubscribed');

    const pong = json.waitFor((f) => f.type === 'pong');
    json.send({ op: 'ping', ref: 'p' });
    t.same(
      await pong,
      { type: 'pong', ref: 'p' },
      'application-level ping for clients without control frames',
    );
    const stats = running.app.subscriptions.stats();
    t.equal(stats.connections, 2);
    t.equal(stats.subscriptions, 1, 'one subscription left (msgpack)');
  },
);

t.test('a baseline-strategy product publishes its changes too', async (t) => {
  const running = await startApp(t);
  const productId = await running.createProduct({ stock: 10, strategy: 'baseline' });
  const s = await connectSubscriber(t, wsUrl(running.base));
  s.send({ op: 'subscribe', ids: [productId] });
  await s.waitForStock(productId, 10);
  const user = uniq('u');
  for (let i = 0; i < 2; i += 1) t.equal((await running.purchase(productId, 3, user, `b${i}`)).status, 201);
  const restock = await running.adminPost(`/products/${productId}/restock`, { quantity: 1 });
  t.equal(restock.status, 200);
  await s.waitForStock(productId, 5);
  t.same(
    s.applied.get(productId)!.map((x) => x.stock),
    [10, 7, 4, 5],
    'every change of the lock-per-request path, in order',
  );
});

t.test('bad input: error frames or documented close codes; others keep being served', async (t) => {
  const running = await startApp(t, { WS_MAX_SUBSCRIPTIONS: '3', WS_MAX_FRAME_BYTES: '512' });
  const url = wsUrl(running.base);
  const productId = await running.createProduct({ stock: 10 });
  const bystander = await connectSubscriber(t, url);
  bystander.send({ op: 'subscribe', ids: [productId] });
  await bystander.waitForStock(productId, 10);

  const bad = await connectSubscriber(t, url);
  const errorOf = async (frame: string | Buffer | object, binary = false) => {
    const next = bad.waitFor((f) => f.type === 'error');
    if (typeof frame === 'string' || Buffer.isBuffer(frame)) bad.sendRaw(frame, binary);
    else bad.send(frame);
    return (await next).error;
  };
  t.match(await errorOf('not json{'), { code: 'MALFORMED_FRAME', retryable: false });
  t.match(await errorOf({ op: 'subscribe', ids: 'x' }), { code: 'VALIDATION_FAILED', field: 'ids' });
  t.match(await errorOf({ op: 'subscribe', ids: [1, -2] }), { code: 'VALIDATION_FAILED', field: 'ids[1]' });
  t.match(await errorOf({ op: 'dance' }), { code: 'VALIDATION_FAILED', field: 'op' });
  t.match(await errorOf({ op: 'ping', extra: 1 }), { code: 'VALIDATION_FAILED', field: 'extra' });
  t.match(await errorOf([1, 2]), { code: 'VALIDATION_FAILED', field: 'op' });
  const unknown = bad.waitFor((f) => f.type === 'error');
  bad.send({ op: 'subscribe', ids: [productId, 999_999_999_999], ref: 'u' });
  t.match(await unknown, {
    error: { code: 'PRODUCT_NOT_FOUND', field: 'ids' },
    productIds: [999_999_999_999],
    ref: 'u',
  });
  t.same(await bad.waitFor((f) => f.type === 'subscribed', 10_000, true), {
    type: 'subscribed',
    ids: [productId],
    ref: 'u',
  });
  const others = await Promise.all([1, 2, 3].map(() => running.createProduct({ stock: 1 })));
  t.match(await errorOf({ op: 'subscribe', ids: others }), { code: 'TOO_MANY_SUBSCRIPTIONS', field: 'ids' });
  t.equal(running.app.subscriptions.stats().subscriptions, 2, 'the refused subscription changed nothing');

  // Frames over WS_MAX_FRAME_BYTES close the connection with 1009.
  const big = await connectSubscriber(t, url);
  big.sendRaw(JSON.stringify({ op: 'subscribe', ids: Array.from({ length: 200 }, (_, i) => i + 1) }));
  t.equal((await big.closed).code, 1009, 'oversized frame: 1009');

  // Ten bad frames in a row close with 4002.
  const noisy = await connectSubscriber(t, url);
  for (let i = 0; i < 10; i += 1) noisy.sendRaw('{');
  t.same(await noisy.closed, { code: 4002, reason: '10 bad frames in a row' });

  // Unsupported subprotocol: the upgrade is refused with a JSON error.
  const refused = new WebSocket(url, ['xml']);
  const status = await new Promise<number>((resolve) =>
    refused.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)),
  );
  t.equal(status, 400, 'unsupported subprotocol: 400');

  // The bystander still gets changes.
  t.equal((await running.purchase(productId, 3, uniq('u'), 'k')).status, 201);
  await bystander.waitForStock(productId, 7);
  await bad.waitForStock(productId, 7);
  t.pass('the other connections keep being served');
});
