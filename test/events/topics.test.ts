// ensureTopics against the stack's three brokers: creates the three topics with the configured partitions,
// on all three brokers with two in sync for a write, then finds them there; two nodes racing both succeed.
import t from 'tap';
import kafkajs from 'kafkajs';
import { ensureTopics } from '../../src/events/topics.js';
import { eventsStack, knownToEveryBroker } from '../helpers/events.js';

void t.test('creates missing topics once; a second call and a concurrent call are harmless', async (t) => {
  const stack = await eventsStack(t);
  const admins = [stack.kafka.admin(), stack.kafka.admin()];
  t.teardown(() => Promise.all(admins.map((admin) => admin.disconnect())));
  await Promise.all(admins.map((admin) => admin.connect()));
  const [first, second] = admins as [(typeof admins)[0], (typeof admins)[0]];

  const raced = await Promise.all([
    ensureTopics(first, stack.config.kafka),
    ensureTopics(second, stack.config.kafka),
  ]);
  const wanted = Object.values(stack.topics).sort();
  // A racing node sees them missing (and loses the creation race quietly) or already there.
  t.same(raced[0].sort(), wanted, 'the first node saw all three missing');
  t.ok([0, 3].includes(raced[1].length), `the racing node did not fail (saw ${raced[1].length} missing)`);

  // KRaft spreads new topics' metadata to the brokers asynchronously: a broker that has not heard of them
  // yet answers UNKNOWN_TOPIC_OR_PARTITION for a moment (failed a clean-clone CI run once).
  await knownToEveryBroker(wanted);
  const metadata = await first.fetchTopicMetadata({ topics: wanted });
  t.equal(stack.config.kafka.replicationFactor, 3, 'the default replication factor: the three brokers');
  for (const topic of metadata.topics) {
    t.equal(topic.partitions.length, 3, `${topic.name} has KAFKA_TOPIC_PARTITIONS partitions`);
    t.ok(
      topic.partitions.every((p) => new Set(p.replicas).size === 3),
      `${topic.name}: every partition has a replica on each of the 3 brokers`,
    );
  }
  // Every broker knows the topics by now (knownToEveryBroker above), so any may answer.
  const configs = await first.describeConfigs({
    includeSynonyms: false,
    resources: wanted.map((name) => ({ type: kafkajs.ConfigResourceTypes.TOPIC, name })),
  });
  for (const resource of configs.resources) {
    const minIsr = resource.configEntries.find((e) => e.configName === 'min.insync.replicas');
    t.equal(minIsr?.configValue, '2', `${resource.resourceName}: min.insync.replicas=2`);
  }
  t.same(await ensureTopics(first, stack.config.kafka), [], 'nothing is missing the second time');
});
