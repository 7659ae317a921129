// Kafka 3.9 in KRaft mode from the Maven Central jars (docker/kafka/target/libs): three nodes, each a broker
// and a controller voter, so the cluster survives the loss of any one of them.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import {
  DOCKER_DIR,
  REPO_ROOT,
  STACK_DIR,
  STACK_HOST,
  STACK_KAFKA_BROKERS,
  STACK_KAFKA_NODES,
  relativeToRepo,
  serverPaths,
} from './layout.js';
import { StackError, portAnswers, waitUntil } from './process.js';
import { argumentsChanged, type ServerSpec } from './server.js';

const execFileAsync = promisify(execFile);
const KAFKA_DIR = path.join(DOCKER_DIR, 'kafka');
const LIBS_DIR = path.join(KAFKA_DIR, 'target', 'libs');
/** One cluster id for the three nodes' storage, written at the first format. */
const CLUSTER_ID_FILE = path.join(STACK_DIR, 'kafka-cluster.id');
// Three JVMs on a 2-core machine: small heaps, and C1 only (quicker starts, less JIT CPU; the load is light).
const JVM_OPTIONS = [
  '-Xmx384m',
  '-Xms128m',
  '-XX:+UseG1GC',
  '-XX:MaxGCPauseMillis=20',
  '-XX:TieredStopAtLevel=1',
  '-XX:+ExitOnOutOfMemoryError',
  '-Djava.awt.headless=true',
];
const PROBE_TOPIC = '__stack_probe';
const READY_TIMEOUT_MS = 90_000;
/**
 * Stopped together, the last node still running has no quorum: its controller can keep calling elections the
 * others no longer answer (its broker waiting on it) until the 45 s stop timeout. Killed after this long alone.
 */
const LAST_NODE_GRACE_MS = 8_000;
/** Longest one readiness round trip may take (its consumer waits up to 20 s for the message), ms. */
const READY_PROBE_TIMEOUT_MS = 30_000;
/** Longest wait for a probe client's disconnect: KafkaJS's can wait on a join that never ends. */
const PROBE_DISCONNECT_TIMEOUT_MS = 5_000;
/** Replicas of every topic, and how many must have a write before it is acknowledged (acks=all). */
export const STACK_KAFKA_REPLICATION = Object.freeze({ factor: 3, minInSync: 2 });

/** `controller.quorum.voters`: the three nodes' controller listeners. */
export const KAFKA_VOTERS = STACK_KAFKA_NODES.map(
  (node) => `${node.nodeId}@${STACK_HOST}:${node.controllerPort}`,
).join(',');

type KafkaNode = (typeof STACK_KAFKA_NODES)[number];

/**
 * The only keys of docker/kafka/server.properties the local stack changes: the node's id, addresses and
 * storage, and the topology (three voters, every topic on all three brokers, two in sync for a write).
 */
function localOverrides(node: KafkaNode, logDirs: string): Record<string, string> {
  const { factor, minInSync } = STACK_KAFKA_REPLICATION;
  return {
    'node.id': String(node.nodeId),
    'controller.quorum.voters': KAFKA_VOTERS,
    listeners: `PLAINTEXT://${STACK_HOST}:${node.port},CONTROLLER://${STACK_HOST}:${node.controllerPort}`,
    'advertised.listeners': `PLAINTEXT://${STACK_HOST}:${node.port}`,
    'log.dirs': logDirs,
    // Three loopback nodes on two cores: fewer request threads than a server's.
    'num.network.threads': '2',
    'num.io.threads': '2',
    'default.replication.factor': String(factor),
    'min.insync.replicas': String(minInSync),
    'offsets.topic.replication.factor': String(factor),
    'transaction.state.log.replication.factor': String(factor),
    'transaction.state.log.min.isr': String(minInSync),
    // Tests start many short-lived consumer groups; waiting 3 s for more members only slows them down.
    'group.initial.rebalance.delay.ms': '0',
  };
}

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

/** The cluster id all three nodes are formatted with (created by whichever node prepares first). */
function clusterId(): string {
  fs.mkdirSync(STACK_DIR, { recursive: true });
  try {
    fs.writeFileSync(CLUSTER_ID_FILE, `${newClusterId()}\n`, { flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  return fs.readFileSync(CLUSTER_ID_FILE, 'utf8').trim();
}

/** What a node's storage was formatted for: written beside it after a format, compared before each start. */
interface Formation {
  clusterId: string;
  voters: string;
}

function assertJars(): void {
  if (!fs.existsSync(LIBS_DIR) || !fs.readdirSync(LIBS_DIR).some((jar) => jar.startsWith('kafka_2.13-'))) {
    throw new StackError(
      `kafka: no broker jars in ${LIBS_DIR}; run \`node scripts/setup.mjs --no-stack\` to fetch them`,
    );
  }
}

/** A KafkaJS client of the stack's own (no retries to speak of, silent). */
async function stackKafka(brokers: readonly string[], clientId: string) {
  const { Kafka, logLevel } = (await import('kafkajs')).default;
  return new Kafka({
    clientId,
    brokers: [...brokers],
    logLevel: logLevel.NOTHING,
    retry: { retries: 2 },
  });
}

/** Node ids of the brokers the cluster lists (registered and not fenced), asked of `broker`. */
export async function registeredBrokers(broker: string): Promise<number[]> {
  const admin = (await stackKafka([broker], 'stack-status')).admin();
  try {
    await admin.connect();
    const { brokers } = await admin.describeCluster();
    return brokers.map((b) => b.nodeId).sort();
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

const PROBE_SCRIPT = path.join(REPO_ROOT, 'scripts', 'stack', 'kafka-probe.ts');
/** kafka-probe.ts's exit code when the message did not come back (yet); 0 when it did, others: it failed. */
export const PROBE_NOT_BACK = 75;

/**
 * `produceAndFetch` in a process of its own (scripts/stack/kafka-probe.ts), killed at the probe's bound. In the
 * caller's process a probe abandoned mid-way (a cluster restart that took 35 s: the first probe's consumer
 * joined while the coordinators were loading) left KafkaJS timers running that no disconnect ended, and kept a
 * test file running until tap's timeout.
 */
async function produceAndFetchApart(node: KafkaNode): Promise<boolean> {
  try {
    await execFileAsync(process.execPath, ['--import', 'tsx', PROBE_SCRIPT, node.name], {
      cwd: REPO_ROOT,
      timeout: READY_PROBE_TIMEOUT_MS,
      killSignal: 'SIGKILL',
    });
    return true;
  } catch (error) {
    const { code, killed, stderr } = error as { code?: number | string; killed?: boolean; stderr?: string };
    if (killed === true || code === PROBE_NOT_BACK) return false;
    const said = String(stderr ?? '')
      .trim()
      .slice(-2000);
    throw new Error(`the Kafka probe failed (exit ${code}): ${said}`, { cause: error });
  }
}

/** One real round trip: create the probe topic (on all three brokers), produce a message, consume it back. */
export async function produceAndFetch(node: KafkaNode): Promise<boolean> {
  const { Partitioners } = (await import('kafkajs')).default;
  const kafka = await stackKafka(STACK_KAFKA_BROKERS, `stack-probe-${node.name}`);
  const token = `probe-${process.pid}-${Date.now()}`;
  const admin = kafka.admin();
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, idempotent: true });
  // A new group per probe. Nodes starting together must not rebalance one another's probe, and a group used
  // before can hold a member that never left (a probe abandoned, a broker restarted under it): a join then
  // waits out that member's session, 30-60 s, which made restarts of the cluster take 70 s or time out.
  const groupId = `${PROBE_TOPIC}-${node.name}-${randomBytes(4).toString('hex')}`;
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 500 });
  try {
    await admin.connect();
    if (!(await admin.listTopics()).includes(PROBE_TOPIC)) {
      await admin
        .createTopics({
          topics: [
            {
              topic: PROBE_TOPIC,
              numPartitions: 1,
              replicationFactor: STACK_KAFKA_REPLICATION.factor,
            },
          ],
          waitForLeaders: true,
        })
        .catch((error: { type?: string }) => {
          if (error.type !== 'TOPIC_ALREADY_EXISTS') throw error;
        });
    }
    await producer.connect();
    await producer.send({ topic: PROBE_TOPIC, acks: -1, messages: [{ value: token }] });
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
  } catch {
    return false;
  } finally {
    const disconnects = Promise.allSettled([
      consumer.disconnect(),
      producer.disconnect(),
      admin.disconnect(),
    ]);
    await Promise.race([disconnects, sleep(PROBE_DISCONNECT_TIMEOUT_MS, undefined, { ref: false })]);
  }
}

/** One node of the cluster: a broker and a controller voter in one JVM. */
function kafkaNode(node: KafkaNode): ServerSpec {
  const paths = serverPaths(node.name);
  const propertiesFile = path.join(paths.dataDir, 'server.properties');
  const logDirs = path.join(paths.dataDir, 'data');
  const formationFile = path.join(paths.dataDir, 'formation.json');
  const address = `${STACK_HOST}:${node.port}`;

  const formation = (): Formation | undefined => {
    try {
      return JSON.parse(fs.readFileSync(formationFile, 'utf8')) as Formation;
    } catch {
      return undefined;
    }
  };
  /** Why the node's storage does not belong to the 3-voter cluster (undefined when it does, or is empty). */
  const formedElsewhere = (): string | undefined => {
    if (!fs.existsSync(path.join(logDirs, 'meta.properties'))) return undefined;
    const formed = formation();
    if (formed === undefined) return 'it was formatted by an older stack as a single-node cluster';
    if (formed.voters !== KAFKA_VOTERS) return `it was formatted for the voters ${formed.voters}`;
    if (fs.existsSync(CLUSTER_ID_FILE) && formed.clusterId !== clusterId())
      return `it was formatted for cluster ${formed.clusterId}`;
    return undefined;
  };

  const prepare = async (): Promise<void> => {
    assertJars();
    fs.mkdirSync(paths.dataDir, { recursive: true });
    const id = clusterId();
    writeOverriddenProperties(
      path.join(KAFKA_DIR, 'server.properties'),
      propertiesFile,
      localOverrides(node, logDirs),
    );
    const elsewhere = formedElsewhere();
    if (elsewhere !== undefined) {
      const message =
        `${node.name}: ${relativeToRepo(logDirs)} is not storage of the 3-node KRaft cluster (${elsewhere}); ` +
        'formatting it again: the events and consumer offsets it held locally are dropped';
      console.log(`stack: ${message}`);
      fs.appendFileSync(paths.logFile, `[stack] ${message}\n`);
      fs.rmSync(logDirs, { recursive: true, force: true });
      fs.rmSync(formationFile, { force: true });
      // The single-node stack kept its cluster id here; the cluster's is CLUSTER_ID_FILE.
      fs.rmSync(path.join(paths.dataDir, 'cluster.id'), { force: true });
    }
    if (fs.existsSync(path.join(logDirs, 'meta.properties'))) return;
    const format = java('kafka.tools.StorageTool', [
      'format',
      '--cluster-id',
      id,
      '--config',
      propertiesFile,
    ]);
    try {
      const { stdout } = await execFileAsync(format.file, format.args, { timeout: 60_000 });
      fs.appendFileSync(paths.logFile, stdout);
    } catch (error) {
      const output = `${(error as { stdout?: string }).stdout ?? ''}${(error as { stderr?: string }).stderr ?? ''}`;
      throw new StackError(
        `${node.name}: storage format failed: ${(error as Error).message}\n${output.trim()}`,
      );
    }
    const formed: Formation = { clusterId: id, voters: KAFKA_VOTERS };
    fs.writeFileSync(formationFile, `${JSON.stringify(formed)}\n`);
  };

  const spec: ServerSpec = {
    name: node.name,
    ...paths,
    port: node.port,
    ports: [node.port, node.controllerPort],
    dependsOn: [],
    // The three start together: a controller quorum needs two of them.
    startTimeoutMs: 90_000,
    stopTimeoutMs: 45_000,
    lastAloneGraceMs: LAST_NODE_GRACE_MS,
    executable: 'java',
    // By its properties file, not by a path containing the data folder: `.stack/kafka` is a prefix of `.stack/kafka-2`.
    owns: (argv) => argv[0]?.split('/').pop() === 'java' && argv[argv.length - 1] === propertiesFile,
    // A node running from storage of another layout (the single-node stack) is stopped and re-formed.
    stale: (_pid, argv) => Promise.resolve(argumentsChanged(spec, argv) ?? formedElsewhere()),
    prepare,
    command: () => java('kafka.Kafka', [propertiesFile]),
    probe: () => portAnswers(node.port),
    ready: (pid) =>
      waitUntil(
        async () =>
          (await registeredBrokers(address).catch((): number[] => [])).includes(node.nodeId) &&
          (await produceAndFetchApart(node)),
        {
          what: `${node.name} registered, produce+fetch`,
          timeoutMs: READY_TIMEOUT_MS,
          pid,
          logFile: paths.logFile,
          intervalMs: 1000,
          probeTimeoutMs: READY_PROBE_TIMEOUT_MS,
        },
      ),
    details: async () => ({
      nodeId: node.nodeId,
      roles: 'broker,controller',
      controllerPort: node.controllerPort,
      voters: KAFKA_VOTERS,
      // The brokers this node knows as registered and unfenced: all three while the cluster is whole.
      brokers: await registeredBrokers(address),
    }),
  };
  return spec;
}

/** The three nodes; `kafka` (node 1) keeps the single-node stack's name, port and data folder. */
export const kafkaNodes: readonly ServerSpec[] = STACK_KAFKA_NODES.map(kafkaNode);
export const [kafka] = kafkaNodes as readonly [ServerSpec, ...ServerSpec[]];
