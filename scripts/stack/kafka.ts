// Kafka 3.9 in KRaft mode from the Maven Central jars (docker/kafka/target/libs), one broker+controller.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { DOCKER_DIR, STACK_HOST, STACK_KAFKA_BROKERS, STACK_PORTS, serverPaths } from './layout.js';
import { StackError, portAnswers, waitUntil } from './process.js';
import type { ServerSpec } from './server.js';

const execFileAsync = promisify(execFile);
const paths = serverPaths('kafka');
const KAFKA_DIR = path.join(DOCKER_DIR, 'kafka');
const LIBS_DIR = path.join(KAFKA_DIR, 'target', 'libs');
const PROPERTIES_FILE = path.join(paths.dataDir, 'server.properties');
const LOG_DIRS = path.join(paths.dataDir, 'data');
const CLUSTER_ID_FILE = path.join(paths.dataDir, 'cluster.id');
const JVM_OPTIONS = [
  '-Xmx512m',
  '-Xms256m',
  '-XX:+UseG1GC',
  '-XX:MaxGCPauseMillis=20',
  '-XX:+ExitOnOutOfMemoryError',
  '-Djava.awt.headless=true',
];
const PROBE_TOPIC = '__stack_probe';
const READY_TIMEOUT_MS = 90_000;

/**
 * The only keys of docker/kafka/server.properties the local stack changes: this node's id, addresses and
 * storage, and the topology (one broker that is the only voter, so every replication factor is 1).
 */
const LOCAL_OVERRIDES: Readonly<Record<string, string>> = {
  'node.id': '1',
  'controller.quorum.voters': `1@${STACK_HOST}:${STACK_PORTS.kafkaController}`,
  listeners: `PLAINTEXT://${STACK_HOST}:${STACK_PORTS.kafka},CONTROLLER://${STACK_HOST}:${STACK_PORTS.kafkaController}`,
  'advertised.listeners': `PLAINTEXT://${STACK_HOST}:${STACK_PORTS.kafka}`,
  'log.dirs': LOG_DIRS,
  'default.replication.factor': '1',
  'offsets.topic.replication.factor': '1',
  'transaction.state.log.replication.factor': '1',
  // Tests start many short-lived consumer groups; waiting 3 s for more members only slows them down.
  'group.initial.rebalance.delay.ms': '0',
};

/** Writes the production properties with `overrides` applied; every overridden key must exist in the source. */
export function writeOverriddenProperties(
  source: string,
  target: string,
  overrides: Readonly<Record<string, string>>,
): void {
  const seen = new Set<string>();
  const lines = fs
    .readFileSync(source, 'utf8')
    .split('\n')
    .map((line) => {
      const key = /^\s*([^#=\s][^=]*?)\s*=/.exec(line)?.[1];
      if (key === undefined || !(key in overrides)) return line;
      seen.add(key);
      return `${key}=${overrides[key]}`;
    });
  const missing = Object.keys(overrides).filter((key) => !seen.has(key));
  if (missing.length > 0)
    throw new StackError(`kafka: ${source} lacks the keys the stack overrides: ${missing.join(', ')}`);
  fs.writeFileSync(
    target,
    [`# Generated from ${source} by scripts/stack/kafka.ts: do not edit.`, ...lines].join('\n'),
  );
}

function java(mainClass: string, args: readonly string[]): { file: string; args: string[] } {
  const log4j = `-Dlog4j.configuration=file:${path.join(KAFKA_DIR, 'log4j.properties')}`;
  return { file: 'java', args: [...JVM_OPTIONS, log4j, '-cp', path.join(LIBS_DIR, '*'), mainClass, ...args] };
}

/** Kafka's cluster id format: 16 random bytes, base64url without padding, never starting with '-'. */
function newClusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

async function prepare(): Promise<void> {
  if (!fs.existsSync(LIBS_DIR) || !fs.readdirSync(LIBS_DIR).some((jar) => jar.startsWith('kafka_2.13-'))) {
    throw new StackError(
      `kafka: no broker jars in ${LIBS_DIR}; run \`node scripts/setup.mjs --no-stack\` to fetch them`,
    );
  }
  fs.mkdirSync(paths.dataDir, { recursive: true });
  if (!fs.existsSync(CLUSTER_ID_FILE)) fs.writeFileSync(CLUSTER_ID_FILE, `${newClusterId()}\n`);
  writeOverriddenProperties(path.join(KAFKA_DIR, 'server.properties'), PROPERTIES_FILE, LOCAL_OVERRIDES);
  if (fs.existsSync(path.join(LOG_DIRS, 'meta.properties'))) return;
  const clusterId = fs.readFileSync(CLUSTER_ID_FILE, 'utf8').trim();
  const format = java('kafka.tools.StorageTool', [
    'format',
    '--cluster-id',
    clusterId,
    '--config',
    PROPERTIES_FILE,
  ]);
  try {
    const { stdout } = await execFileAsync(format.file, format.args, { timeout: 60_000 });
    fs.appendFileSync(paths.logFile, stdout);
  } catch (error) {
    const output = `${(error as { stdout?: string }).stdout ?? ''}${(error as { stderr?: string }).stderr ?? ''}`;
    throw new StackError(`kafka: storage format failed: ${(error as Error).message}\n${output.trim()}`);
  }
}

/** One real round trip: create the probe topic, produce a message, consume it back. */
async function produceAndFetch(): Promise<boolean> {
  const { Kafka, logLevel, Partitioners } = (await import('kafkajs')).default;
  const kafka = new Kafka({
    clientId: 'stack-probe',
    brokers: [...STACK_KAFKA_BROKERS],
    logLevel: logLevel.NOTHING,
    retry: { retries: 3 },
  });
  const token = `probe-${process.pid}-${Date.now()}`;
  const admin = kafka.admin();
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  const consumer = kafka.consumer({ groupId: PROBE_TOPIC });
  try {
    await admin.connect();
    if (!(await admin.listTopics()).includes(PROBE_TOPIC)) {
      await admin.createTopics({
        topics: [{ topic: PROBE_TOPIC, numPartitions: 1, replicationFactor: 1 }],
        waitForLeaders: true,
      });
    }
    await producer.connect();
    await producer.send({ topic: PROBE_TOPIC, messages: [{ value: token }] });
    await consumer.connect();
    await consumer.subscribe({ topics: [PROBE_TOPIC], fromBeginning: true });
    return await new Promise<boolean>((resolve, reject) => {
      const timer = setTimeout(() => resolve(false), 20_000);
      consumer
        .run({
          eachMessage: ({ message }) => {
            if (message.value?.toString() === token) {
              clearTimeout(timer);
              resolve(true);
            }
            return Promise.resolve();
          },
        })
        .catch(reject);
    });
  } finally {
    await Promise.allSettled([consumer.disconnect(), producer.disconnect(), admin.disconnect()]);
  }
}

export const kafka: ServerSpec = {
  name: 'kafka',
  ...paths,
  port: STACK_PORTS.kafka,
  ports: [STACK_PORTS.kafka, STACK_PORTS.kafkaController],
  dependsOn: [],
  startTimeoutMs: 60_000,
  stopTimeoutMs: 45_000,
  executable: 'java',
  prepare,
  command: () => java('kafka.Kafka', [PROPERTIES_FILE]),
  probe: () => portAnswers(STACK_PORTS.kafka),
  ready: (pid) =>
    waitUntil(produceAndFetch, {
      what: 'kafka produce+fetch',
      timeoutMs: READY_TIMEOUT_MS,
      pid,
      logFile: paths.logFile,
      intervalMs: 1000,
    }),
  details: () =>
    Promise.resolve({ brokers: STACK_KAFKA_BROKERS, controllerPort: STACK_PORTS.kafkaController }),
};
