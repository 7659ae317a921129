// The Kafka readiness round trip (produceAndFetch, scripts/stack/kafka.ts) for one node, in a process of its
// own: exit 0 when the message came back, PROBE_NOT_BACK when not. `process.exit` ends whatever KafkaJS still has
// running; the stack kills it at the probe's bound.
//   node --import tsx scripts/stack/kafka-probe.ts <kafka|kafka-2|kafka-3>
import { STACK_KAFKA_NODES } from './layout.js';
import { PROBE_NOT_BACK, produceAndFetch } from './kafka.js';

const node = STACK_KAFKA_NODES.find((n) => n.name === process.argv[2]);
if (node === undefined) {
  console.error(`kafka-probe: unknown node ${JSON.stringify(process.argv[2])}`);
  process.exit(2);
}
process.exit((await produceAndFetch(node)) ? 0 : PROBE_NOT_BACK);
