// Request ids join a purchase's log lines up (README "Logs"): two in-process app nodes in one cluster, a
// purchase sent to the node that does not own its product with X-Request-Id: abc-123. The answer echoes
// it; the forwarding node's lines, the owner's lines (the peer request, its saga, a failed payment step)
// and the saga row carry it; its events come back from Kafka with the header x-request-id. A bad id is
// replaced by a made one, never refused. Logs are read from the loggers' destination, not stdout.
import t, { type Test } from 'tap';
import { REQUEST_ID_HEADER } from '../../src/events/envelope.js';
import type { RowDataPacket } from '../../src/storage/mysql.js';
import { startApp, type RunningApp } from '../helpers/app.js';
import { ownEvents, uniq } from '../helpers/isolation.js';
import { collect, waitFor } from '../helpers/events.js';
import { asUser } from '../helpers/tokens.js';

const SHARDS = 256;

type Line = { msg: string; reqId?: unknown; node?: string; [field: string]: unknown };

interface Node {
  running: RunningApp;
  name: string;
  lines: Line[];
}

/** Two app nodes in one cluster (a key prefix, topics and relay lock shared), logging at debug level. */
async function twoNodes(t: Test): Promise<[Node, Node]> {
  const id = uniq('rid');
  const shared = {
    ...ownEvents(t, id),
    REDIS_KEY_PREFIX: `${id}:`,
    LOG_LEVEL: 'debug',
    // The owner's saga logs its first payment failure at once (no retries inside the payment client).
    PAYMENT_RETRIES: '0',
  };
  const start = async (label: string): Promise<Node> => {
    const name = `${id}-${label}`;
    const lines: Line[] = [];
    // The provider's first roll fails the first charge (503): the saga logs it, then pays on its retry.
    let rolls = 0;
    const running = await startApp(
      t,
      { ...shared, NODE_ID: name },
      {
        logs: { write: (line: string) => void lines.push(JSON.parse(line) as Line) },
        payment: { errorRate: 0.5, random: () => (rolls++ === 0 ? 0 : 0.99) },
      },
    );
    return { running, name, lines };
  };
  const a = await start('a');
  const b = await start('b');
  await waitFor(
    'both nodes to hold shards',
    () => {
      const held = [a, b].map((n) => n.running.app.cluster.ownership.stats().held);
      return held[0]! > 0 && held[1]! > 0 && held[0]! + held[1]! === SHARDS;
    },
    20_000,
  );
  return [a, b];
}

/** A product, with the node that owns it and one that does not. */
async function productOn(a: Node, b: Node): Promise<{ productId: number; owner: Node; other: Node }> {
  const productId = await a.running.createProduct({ stock: 100, priceCents: 250 });
  const owner = a.running.app.cluster.owns(productId) ? a : b;
  return { productId, owner, other: owner === a ? b : a };
}

const buy = async (node: Node, productId: number, requestId: string) =>
  node.running.post(
    '/purchases',
    { productId, quantity: 1 },
    { ...(await asUser(uniq('u'))), 'idempotency-key': uniq('k'), 'x-request-id': requestId },
  );

const messagesOf = (node: Node, reqId: string): string[] =>
  node.lines.filter((l) => l.reqId === reqId).map((l) => l.msg);

t.test(
  'a forwarded purchase: one request id from the answer to the owner, its saga and its events',
  async (t) => {
    const [a, b] = await twoNodes(t);
    const { productId, owner, other } = await productOn(a, b);
    const events = await collect(t, {
      config: a.running.config,
      topics: a.running.config.kafka.topics,
      kafka: a.running.infra.kafka,
      mysql: a.running.infra.mysql,
    });

    const answer = await buy(other, productId, 'abc-123');
    t.equal(answer.status, 201, JSON.stringify(answer.body));
    t.equal(answer.headers['x-request-id'], 'abc-123', 'the answer echoes the request id');
    const orderId = answer.body.orderId as string;

    // The saga's end is logged right after its answer went out: wait for that line, not for time.
    await waitFor(
      'the saga to log its end',
      () => messagesOf(owner, 'abc-123').includes('saga ended'),
      10_000,
    );
    t.same(
      messagesOf(other, 'abc-123'),
      ['forwarded to the owner', 'answered'],
      'the node it reached: forwarded, then answered',
    );
    const ownerLines = messagesOf(owner, 'abc-123');
    t.same(
      ownerLines,
      ['request from a peer', 'saga started', 'payment step failed', 'saga ended'],
      'the owner: the peer request, and every line of its saga (the failed payment step too)',
    );
    t.ok(
      owner.lines.filter((l) => l.reqId === 'abc-123').every((l) => l.node === owner.name),
      "the owner's lines name the owner node",
    );
    const failed = owner.lines.find((l) => l.msg === 'payment step failed');
    t.equal(failed?.reqId, 'abc-123', "the saga's warning carries it");
    t.equal(failed?.orderId, orderId);

    const [[saga]] = await a.running.infra.mysql.primary.query<RowDataPacket[]>(
      'SELECT request_id FROM sagas WHERE order_id = ?',
      [orderId],
    );
    t.equal(saga?.['request_id'], 'abc-123', 'the saga row keeps it (a resumed saga logs with it)');

    const ofOrder = () => events.received.filter((r) => r.event.orderId === orderId);
    await waitFor('the order’s four events on Kafka', () => ofOrder().length >= 4, 30_000);
    t.same(
      ofOrder()
        .map((r) => [r.event.type, r.requestId])
        .sort(),
      [
        ['inventory.reserved', 'abc-123'],
        ['order.created', 'abc-123'],
        ['order.confirmed', 'abc-123'],
        ['payment.succeeded', 'abc-123'],
      ].sort(),
      `every event of the order carries the ${REQUEST_ID_HEADER} header`,
    );
    await waitFor('the stock change on Kafka', () =>
      events.received.some((r) => r.event.type === 'stock.changed' && r.event.productId === productId),
    );
    t.notOk(
      events.received.find((r) => r.event.type === 'stock.changed' && r.event.productId === productId)
        ?.requestId,
      'a stock change (of a whole batch) has none',
    );
  },
);

t.test('a bad X-Request-Id is replaced by a made one, never refused', async (t) => {
  const [a, b] = await twoNodes(t);
  const { productId, owner, other } = await productOn(a, b);
  const made = /^[0-9a-z]+-[0-9a-z]+$/;
  for (const bad of ['x'.repeat(65), 'bad id!', 'a,b', '{"json":1}']) {
    const read = await other.running.get(`/products/${productId}`, { 'x-request-id': bad });
    t.equal(read.status, 200, `a read with ${JSON.stringify(bad)} is answered`);
    t.match(read.headers['x-request-id'], made, 'with a made id');
  }
  const answer = await buy(other, productId, 'y'.repeat(200));
  t.equal(answer.status, 201, 'a purchase with a too long id is answered');
  const id = answer.headers['x-request-id'] as string;
  t.match(id, made, 'with a made id');
  await waitFor('the saga to log its end', () => messagesOf(owner, id).includes('saga ended'), 10_000);
  t.ok(messagesOf(owner, id).includes('request from a peer'), 'the made id travelled to the owner');
  t.notOk(
    [...a.lines, ...b.lines].some((l) => typeof l.reqId === 'string' && l.reqId.startsWith('yyy')),
    'the bad id is on no line',
  );

  const good = await a.running.get(`/products/${productId}`, { 'x-request-id': 'read-1' });
  t.equal(good.headers['x-request-id'], 'read-1', 'a read echoes a sane id');
  const none = await a.running.get(`/products/${productId}`);
  t.match(none.headers['x-request-id'], made, 'a read without one gets a made one');
  t.not(none.headers['x-request-id'], id, 'made ids differ');
});
