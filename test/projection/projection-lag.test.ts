// The projection lag's arithmetic and how often the node's scrape figure of it asks Kafka, against a fake
// admin client (a pure unit test; test/metrics/alert-metrics.test.ts reads the figure from a real Kafka).
import t from 'tap';
import { createLogger } from '../../src/logger.js';
import { eventFigures } from '../../src/observability/event-figures.js';
import { ProjectionLag } from '../../src/projection/projection-lag.js';
import type { Kafka } from '../../src/storage/kafka.js';
import type { Pool } from '../../src/storage/mysql.js';

interface Calls {
  listTopics: number;
  fetchOffsets: number;
  fetchTopicOffsets: number;
}

/** A Kafka whose admin knows `topics()`, each with partitions 0 and 1 at low 10 / high 50, the group at 30 on 0. */
function fakeKafka(topics: () => string[]): { kafka: Kafka; calls: Calls } {
  const calls: Calls = { listTopics: 0, fetchOffsets: 0, fetchTopicOffsets: 0 };
  const admin = {
    connect: () => Promise.resolve(),
    disconnect: () => Promise.resolve(),
    listTopics: () => {
      calls.listTopics += 1;
      return Promise.resolve(topics());
    },
    fetchOffsets: ({ topics: asked }: { topics: string[] }) => {
      calls.fetchOffsets += 1;
      return Promise.resolve(asked.map((topic) => ({ topic, partitions: [{ partition: 0, offset: '30' }] })));
    },
    fetchTopicOffsets: () => {
      calls.fetchTopicOffsets += 1;
      return Promise.resolve([
        { partition: 0, low: '10', high: '50', offset: '50' },
        { partition: 1, low: '10', high: '50', offset: '50' },
      ]);
    },
  };
  return { kafka: { admin: () => admin } as unknown as Kafka, calls };
}

// Per topic: partition 0 committed at 30 (20 behind 50), partition 1 never committed (40 from its low 10).
const PER_TOPIC = 20 + 40;

/** The node's lag figure, as app.ts builds it (reused for PROJECTION_LAG_REUSE_MS), over `kafka`. */
function lagFigure(kafka: Kafka, topics: string[]) {
  const figures = eventFigures({
    primary: {} as Pool, // the outbox age is not read here
    kafka,
    topics: { orders: topics[0]!, payments: topics[1] ?? 'none', inventory: 'inventory' },
    projectionGroupId: 'group',
    logger: createLogger({ logLevel: 'silent', nodeId: 'test' }),
  });
  return { events: () => figures.sources.projectionLagEvents!(), close: () => figures.close() };
}

t.test('a read is answered again within the reuse window, without asking Kafka', async (t) => {
  const { kafka, calls } = fakeKafka(() => ['orders', 'payments']);
  const lag = lagFigure(kafka, ['orders', 'payments']);
  t.equal(await lag.events(), 2 * PER_TOPIC);
  t.equal(await lag.events(), 2 * PER_TOPIC);
  t.same(
    calls,
    { listTopics: 1, fetchOffsets: 1, fetchTopicOffsets: 2 },
    'one round of requests for two reads',
  );
  await lag.close();
});

t.test('each read asks Kafka again, but stops listing topics once all exist', async (t) => {
  const { kafka, calls } = fakeKafka(() => ['orders', 'payments']);
  const lag = new ProjectionLag(kafka, 'group', ['orders', 'payments']);
  await lag.events();
  await lag.events();
  await lag.events();
  t.same(calls, { listTopics: 1, fetchOffsets: 3, fetchTopicOffsets: 6 });
  await lag.close();
});

t.test('a topic not created yet counts nothing and is looked for again at the next read', async (t) => {
  let existing = ['orders'];
  const { kafka, calls } = fakeKafka(() => existing);
  const lag = new ProjectionLag(kafka, 'group', ['orders', 'payments']);
  t.equal(await lag.events(), PER_TOPIC, 'only the topic that exists');
  existing = ['orders', 'payments'];
  t.equal(await lag.events(), 2 * PER_TOPIC, 'the new topic is counted');
  await lag.events();
  t.equal(calls.listTopics, 2, 'listed until both existed, then no more');
  await lag.close();
});

t.test('a failed read is not reused: the next read asks Kafka again', async (t) => {
  const { kafka, calls } = fakeKafka(() => ['orders']);
  const admin = kafka.admin();
  const fetchOffsets = admin.fetchOffsets.bind(admin);
  let fail = true;
  admin.fetchOffsets = (...args: Parameters<typeof fetchOffsets>) =>
    fail ? Promise.reject(new Error('broker gone')) : fetchOffsets(...args);
  const lag = lagFigure(kafka, ['orders']);
  t.ok(Number.isNaN(await lag.events()), 'the failed read is NaN (unknown)');
  fail = false;
  t.equal(await lag.events(), PER_TOPIC);
  t.equal(calls.fetchTopicOffsets, 2, 'both reads went to Kafka');
  await lag.close();
});
