// The Kafka readiness round trip (produceAndFetch, scripts/stack/kafka.ts) for one node, in a process of its
// own: exit 0 when the message came back. `process.exit` ends whatever KafkaJS still has running.
//   node --import tsx scripts/stack/kafka-probe.ts <kafka|kafka-2|kafka-3>
import { STACK_KAFKA_NODES } from './layout.js';
import { READY_PROBE_TIMEOUT_MS, produceAndFetch } from './kafka.js';

const node = STACK_KAFKA_NODES.find((n) => n.name === process.argv[2]);
if (node === undefined) {
  console.error(`kafka-probe: unknown node ${JSON.stringify(process.argv[2])}`);
  process.exit(2);
}
// The clients' sockets are unref'd: this timer keeps the process alive meanwhile, and bounds it as the caller does.
setTimeout(() => process.exit(1), READY_PROBE_TIMEOUT_MS);
process.exit((await produceAndFetch(node)) ? 0 : 1);
