// The Kafka adapter against the stack's broker: a produce/consume round trip on a topic of its own,
// the readiness probe against the live broker and against a port nothing listens on, and the broker
// sockets that end with their client (BrokerSockets).
import { readFileSync } from 'node:fs';
import net, { createServer } from 'node:net';
import tls from 'node:tls';
import { decode, encode } from '@msgpack/msgpack';
import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { ensureTls } from '../../scripts/stack/tls.js';
import { STACK_KAFKA_BROKERS } from '../../scripts/stack/layout.js';
import { BrokerSockets, createKafka, KafkaProbe, pinoLogCreator } from '../../src/storage/kafka.js';
import { capturingLogger, knownToEveryBroker } from '../helpers/events.js';
import { silentLogger } from '../helpers/isolation.js';
import { uniq } from '../helpers/isolation.js';

const CONSUME_TIMEOUT_MS = 30_000;
const FAIL_FAST_MS = 3_000;

/** A loopback port that was free a moment ago: bound on 0, then released. */
async function unusedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

void t.test('a keyed msgpack message produced to a new topic is consumed back', async (t) => {
  const kafka = createKafka(loadConfig({ KAFKA_CLIENT_ID: uniq('test-kafka-') }), silentLogger);
  const topic = uniq('test-kafka-topic-');
  const groupId = uniq('test-kafka-group-');

  const admin = kafka.admin();
  const producer = kafka.producer();
  const consumer = kafka.consumer({ groupId });
  // Cleanup if the test fails midway, in order: clients leave before their topic and group are deleted.
  t.teardown(async () => {
    await Promise.allSettled([consumer.disconnect(), producer.disconnect()]);
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.disconnect();
  });
  await admin.connect();
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions: 1, replicationFactor: 3 }],
    waitForLeaders: false,
  });
  t.equal(created, true, 'the topic is new');
  // KafkaJS's own waitForLeaders fails on a broker that has not heard of the topic yet (src/events/topics.ts),
  // and the producer and the consumer below may ask any of the three.
  await knownToEveryBroker([topic]);
  const [metadata] = (await admin.fetchTopicMetadata({ topics: [topic] })).topics;
  t.equal(metadata?.partitions.length, 1, 'one partition');
  t.equal(metadata?.partitions[0]?.replicas.length, 3, 'on the three brokers');

  const key = uniq('product-');
  const value = {
    type: 'PurchaseConfirmed',
    productId: 7,
    quantity: 2,
    at: '2024-01-01T00:00:00.000Z',
    note: 'ü',
  };
  await producer.connect();
  const [sent] = await producer.send({
    topic,
    acks: -1,
    messages: [{ key, value: Buffer.from(encode(value)) }],
  });
  t.equal(sent?.errorCode, 0, 'the broker acknowledged the message');

  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const received = new Promise<{ key: string | undefined; value: unknown; partition: number }>(
    (resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no message on ${topic} within ${CONSUME_TIMEOUT_MS} ms`)),
        CONSUME_TIMEOUT_MS,
      );
      consumer
        .run({
          eachMessage: ({ message, partition }) => {
            clearTimeout(timer);
            resolve({
              key: message.key?.toString(),
              value: message.value === null ? null : decode(message.value),
              partition,
            });
            return Promise.resolve();
          },
        })
        .catch(reject);
    },
  );
  const message = await received;
  t.equal(message.key, key, 'key equal');
  t.same(message.value, value, 'msgpack value decoded back equal');
  t.equal(message.partition, 0);

  await Promise.all([consumer.disconnect(), producer.disconnect()]);
  await admin.deleteTopics({ topics: [topic] });
  // Each broker learns of the deletion a moment after the controller: ask until the one answering has.
  let listed = true;
  for (let tries = 0; listed && tries < 50; tries++) {
    listed = (await admin.listTopics()).includes(topic);
    if (listed) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  t.notOk(listed, 'the topic is deleted');
});

void t.test('KafkaProbe answers against the live broker', async (t) => {
  const probe = new KafkaProbe(loadConfig({}), silentLogger);
  t.teardown(() => probe.close());
  await t.resolves(probe.ping(), 'first ping connects and describes the cluster');
  await t.resolves(probe.ping(), 'second ping reuses the connection');
});

void t.test('KafkaProbe rejects quickly when no broker listens', async (t) => {
  const port = await unusedPort();
  const probe = new KafkaProbe(loadConfig({ KAFKA_BROKERS: `127.0.0.1:${port}` }), silentLogger);
  t.teardown(() => probe.close().catch(() => undefined));
  const started = performance.now();
  await t.rejects(probe.ping(), `ping rejects for 127.0.0.1:${port}`);
  const pingMs = Math.round(performance.now() - started);
  t.ok(pingMs < FAIL_FAST_MS, `rejected in ${pingMs} ms`);
});

/** Sockets of this process to one of the stack's brokers that are not closed. */
function brokerSocketsOpen(): number {
  const ports = new Set(STACK_KAFKA_BROKERS.map((b) => Number(b.split(':').pop())));
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  return handles.filter((h) => h instanceof net.Socket && !h.destroyed && ports.has(h.remotePort ?? 0))
    .length;
}

/** Lets sockets destroyed or ended a moment ago emit their close. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 200));

void t.test('a probe closed in the middle of a ping leaves no broker socket open', async (t) => {
  // KafkaJS went on with the ping's requests after the disconnect and opened a connection no one closed
  // (6 of 20 such closes, before BrokerSockets): a test process then never ended.
  await settle();
  const before = brokerSocketsOpen();
  for (let i = 0; i < 20; i++) {
    const probe = new KafkaProbe(loadConfig({}), silentLogger);
    if (i % 2 === 1) await probe.ping(); // connected already, or connecting during the close
    const pinging = probe.ping().then(
      () => 'answered',
      () => 'failed',
    );
    if (i % 4 >= 2) await new Promise((resolve) => setTimeout(resolve, 3));
    await probe.close();
    await pinging;
    await settle();
    // At most as many as before: a socket the test before this one ended may still be closing then.
    const open = brokerSocketsOpen();
    t.ok(open <= before, `close ${i}: no broker socket left open (${open}, ${before} before the closes)`);
  }
});

void t.test('BrokerSockets: close ends what a client left open and refuses new connections', async (t) => {
  const kafka = createKafka(loadConfig({ KAFKA_CLIENT_ID: uniq('test-kafka-') }), silentLogger, {
    retries: 0,
  });
  const admin = kafka.admin({ retry: { retries: 0 } });
  t.teardown(() => admin.disconnect());
  await admin.connect();
  await admin.describeCluster();
  t.ok(kafka.sockets.open >= 1, `the admin holds ${kafka.sockets.open} socket(s)`);
  kafka.sockets.close(); // no disconnect: as a client that raced its own
  await settle();
  t.equal(kafka.sockets.open, 0, 'every socket ended');
  const late = kafka.admin({ retry: { retries: 0 } });
  await t.rejects(late.connect(), /the Kafka client was closed/, 'a connection after the close fails');
  t.equal(kafka.sockets.open, 0, 'and leaves nothing open');
});

void t.test(
  'BrokerSockets over TLS: the options reach tls.connect, a name is verified as the server name',
  async (t) => {
    const files = await ensureTls();
    const server = tls.createServer({ cert: readFileSync(files.cert), key: readFileSync(files.key) }, (s) =>
      s.end(),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.teardown(() => new Promise((resolve) => server.close(resolve)));
    const { port } = server.address() as net.AddressInfo;
    const sockets = new BrokerSockets();
    const ca = [readFileSync(files.ca)];
    for (const host of ['localhost', '127.0.0.1']) {
      const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = sockets.factory({
          host,
          port,
          ssl: { ca, rejectUnauthorized: true },
          onConnect: () => resolve(s as tls.TLSSocket),
        });
        s.once('error', reject);
      });
      t.equal(socket.authorized, true, `${host}: the certificate verified against the CA`);
      t.equal(socket.servername, host === 'localhost' ? 'localhost' : false, `${host}: server name`);
      socket.destroy();
    }
    const foreign = sockets.factory({
      host: 'localhost',
      port,
      ssl: { rejectUnauthorized: true },
      onConnect: () => undefined,
    });
    await t.rejects(
      new Promise((_, reject) => foreign.once('error', reject)),
      /self[- ]signed|unable to (get|verify)/,
      'without the CA: refused',
    );
    sockets.close();
  },
);

void t.test('KafkaJS log levels: the bounded-retries warning of the relay’s producer is debug', (t) => {
  const { logger, lines } = capturingLogger('debug');
  const log = pinoLogCreator(logger)(4);
  const warn = (message: string) => ({
    namespace: 'Producer',
    level: 2,
    label: 'WARN',
    log: { timestamp: 'now', logger: 'kafkajs', message },
  });
  log(warn('Limiting retries for the idempotent producer may invalidate EoS guarantees'));
  log(warn('The group is rebalancing, re-joining'));
  t.same(
    lines.map((l) => [l['level'], l['msg']]),
    [
      [20, 'Limiting retries for the idempotent producer may invalidate EoS guarantees'],
      [40, 'The group is rebalancing, re-joining'],
    ],
  );
  t.end();
});

void t.test(
  'KafkaJS log levels: routine rebalances and retried answers are info, other errors stay errors',
  (t) => {
    const { logger, lines } = capturingLogger();
    const log = pinoLogCreator(logger)(4);
    const entry = (level: number, error: string, message = 'Error') => ({
      namespace: 'Runner',
      level,
      label: 'ERROR',
      log: { timestamp: 'now', logger: 'kafkajs', message, error },
    });
    const metadata = 'Response Metadata(key: 3, version: 6)';
    log(entry(1, 'The group is rebalancing, so a rejoin is needed'));
    log(entry(1, "The coordinator is loading and hence can't process requests for this group"));
    log(entry(1, 'Connection error: connect ECONNREFUSED 127.0.0.1:19092'));
    log(entry(2, 'The group is rebalancing, so a rejoin is needed'));
    // What a node logs at its first start (two nodes creating the topics) and while a broker fails over.
    log(entry(1, 'Topic creation errors', 'Response CreateTopics(key: 19, version: 3)'));
    log(entry(1, 'This server does not host this topic-partition', metadata));
    log(
      entry(
        1,
        'This server is not the leader for that topic-partition',
        'Response Produce(key: 0, version: 7)',
      ),
    );
    // The same texts outside an answer, and an answer's other errors, stay errors.
    log(entry(1, 'This server does not host this topic-partition'));
    log(entry(1, 'The requested fetch size is invalid', 'Response Fetch(key: 1, version: 11)'));
    t.same(
      lines.map((l) => [l['level'], l['error']]),
      [
        [30, 'The group is rebalancing, so a rejoin is needed'],
        [30, "The coordinator is loading and hence can't process requests for this group"],
        [50, 'Connection error: connect ECONNREFUSED 127.0.0.1:19092'],
        [40, 'The group is rebalancing, so a rejoin is needed'],
        [30, 'Topic creation errors'],
        [30, 'This server does not host this topic-partition'],
        [30, 'This server is not the leader for that topic-partition'],
        [50, 'This server does not host this topic-partition'],
        [50, 'The requested fetch size is invalid'],
      ],
    );
    t.end();
  },
);
