import { createRequire } from 'node:module';
import net from 'node:net';
import kafkajs, {
  type Admin,
  type ISocketFactory,
  type Kafka,
  type logCreator,
  type SASLOptions,
} from 'kafkajs';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import { patchKafkaJsFetchFailover } from './kafkajs-failover-fix.js';
import { patchKafkaJsIdleLoop } from './kafkajs-idle-fix.js';
import { readCaFile } from './tls.js';
import { AppError } from '../errors.js';

const { Kafka: KafkaClient, logLevel: KafkaLogLevel, Partitioners } = kafkajs;

/** Every KafkaJS client of the process: no 1 ms timer loop per idle broker connection (see the patch). */
export const kafkaJsIdleLoopPatched = patchKafkaJsIdleLoop();
/** Every KafkaJS consumer of the process: a fetch from a dead leader refreshes the metadata (see the patch). */
export const kafkaJsFetchFailoverPatched = patchKafkaJsFetchFailover();

/**
 * Options every consumer group member of the service takes. `retry`: retries of the fetch loop before
 * KafkaJS crashes the consumer (its default: 5, ~3 s with createKafka's backoff); 10 (~13 s) outlast a
 * broker's death (fenced and its partitions led elsewhere within ~5 s, docker/kafka/server.properties),
 * while a crash restarts the consumer as a new member. The group then waits for the old member's session
 * to end before it assigns partitions again: 10 s instead of KafkaJS's 30 s. KafkaJS heartbeats between
 * fetches only, so a consumer's heartbeat interval and fetch wait stay under a third of it.
 */
export const consumerDefaults = Object.freeze({
  retry: Object.freeze({ retries: 10 }),
  sessionTimeout: 10_000, // 10 s
  heartbeatInterval: 1_000, // 1 s
});
export type { Admin, Kafka };

/**
 * KafkaJS 2's default (Java-compatible murmur2) partitioner, named explicitly: producers that leave it
 * implicit log a warning at every start. Same key, same partition as the Java client.
 */
export const keyPartitioner = Partitioners.DefaultPartitioner;

/**
 * Group-coordination errors KafkaJS logs at ERROR although it retries them itself and they are expected
 * whenever a node joins or leaves the consumer group (or the broker starts): logged at info.
 */
const ROUTINE_GROUP_ERRORS =
  /^(The group is rebalancing|The coordinator is loading|The coordinator is not available)/;

/**
 * Error answers KafkaJS logs at ERROR for every request (`Response Metadata(...)`) although it refreshes its
 * metadata and retries them itself: a topic or leader not known yet on a broker (just created, or moved by a
 * broker's failover) and the request that hit a former leader or controller. `Topic creation errors` is the
 * losing side of two nodes creating the same topics at once; `ensureTopics` (src/events/topics.ts) fails the
 * start with the real cause when it was anything else. Logged at info: still seen, not an alarm.
 */
const ROUTINE_RESPONSE_ERRORS = new RegExp(
  '^(This server does not host this topic-partition|There is no leader for this topic-partition' +
    '|This server is not the leader for that topic-partition|This is not the correct controller' +
    '|Topic creation errors)',
);

/**
 * KafkaJS warns at every start of an idempotent producer with bounded retries. The outbox relay bounds them on
 * purpose (src/events/outbox-producer.ts: its next round sends again, and consumers drop redeliveries by event
 * id: at-least-once, no exactly-once claimed), so the line says nothing to an operator: logged at debug.
 */
const EXPECTED_WARNINGS = /^Limiting retries for the idempotent producer/;

/** KafkaJS log lines go through pino, tagged `component: kafkajs`. */
export function pinoLogCreator(logger: Logger): logCreator {
  const child = logger.child({ component: 'kafkajs' });
  return () =>
    ({ level, log }) => {
      const { message, ...extra } = log;
      const error = (extra as { error?: unknown }).error;
      const routine =
        typeof error === 'string' &&
        (ROUTINE_GROUP_ERRORS.test(error) ||
          (message.startsWith('Response ') && ROUTINE_RESPONSE_ERRORS.test(error)));
      if (level === KafkaLogLevel.ERROR && routine) child.info(extra, message);
      else if (level === KafkaLogLevel.ERROR) child.error(extra, message);
      else if (level === KafkaLogLevel.WARN && EXPECTED_WARNINGS.test(message)) child.debug(extra, message);
      else if (level === KafkaLogLevel.WARN) child.warn(extra, message);
      else if (level === KafkaLogLevel.INFO) child.debug(extra, message);
      else child.trace(extra, message);
    };
}

/** KafkaJS's default socket factory (not exported by its index): TLS when `ssl` is set, keep-alive. */
const defaultSocketFactory = (
  createRequire(import.meta.url)('kafkajs/src/network/socketFactory.js') as () => ISocketFactory
)();

/**
 * The broker sockets of one Kafka client object, so that they end with it. KafkaJS goes on with a request
 * begun before a `disconnect()` (a readiness ping, a metadata refresh, a producer's retry) and can open a
 * broker connection after it, or keep one of a broker object it dropped; nothing of KafkaJS closes such a
 * socket, and it keeps the process running (a test process at its end: 6 of 20 readiness probes closed
 * in the middle of a ping did). `close()` destroys every socket still open, and each one KafkaJS opens
 * after it fails at once (a connection error, which ends its retries).
 */
export class BrokerSockets {
  private readonly live = new Set<net.Socket>();
  private closed = false;

  /** KafkaJS's default factory, its sockets tracked. */
  readonly factory: ISocketFactory = (args) => {
    if (this.closed) {
      const refused = new net.Socket();
      process.nextTick(() =>
        refused.destroy(new AppError('DEPENDENCY_UNAVAILABLE', 'the Kafka client was closed')),
      );
      return refused;
    }
    const socket = defaultSocketFactory(args);
    this.live.add(socket);
    socket.once('close', () => this.live.delete(socket));
    return socket;
  };

  /** Sockets open now. */
  get open(): number {
    return this.live.size;
  }

  /** After the clients' `disconnect()`s: ends what they left open, and refuses any new connection. */
  close(): void {
    this.closed = true;
    for (const socket of this.live) socket.destroy();
  }
}

/** A KafkaJS client whose broker sockets are tracked (`sockets`); `sockets.close()` after its clients'. */
export type ServiceKafka = Kafka & { readonly sockets: BrokerSockets };

export function createKafka(
  config: Pick<Config, 'kafka'>,
  logger: Logger,
  retry: { retries: number } = { retries: 3 },
): ServiceKafka {
  const sockets = new BrokerSockets();
  const kafka = new KafkaClient({
    clientId: config.kafka.clientId,
    brokers: [...config.kafka.brokers],
    ...(config.kafka.tls === null
      ? {}
      : {
          ssl: {
            ca: [readCaFile('KAFKA_TLS_CA_FILE', config.kafka.tls.caFile, 'Kafka', 'set KAFKA_TLS=off')],
            rejectUnauthorized: true,
          },
        }),
    ...(config.kafka.sasl === null ? {} : { sasl: { ...config.kafka.sasl } as SASLOptions }),
    connectionTimeout: 2_000, // 2 s
    requestTimeout: 5_000, // 5 s
    retry: { retries: retry.retries, initialRetryTime: 100, maxRetryTime: 2_000 },
    logLevel: KafkaLogLevel.INFO,
    logCreator: pinoLogCreator(logger),
    socketFactory: sockets.factory,
  });
  return Object.assign(kafka, { sockets });
}

/**
 * Health probe through a long-lived admin client: describeCluster answers only when a broker does.
 * The admin reconnects on the next call after a broker comes back.
 */
export class KafkaProbe {
  private readonly admin: Admin;
  private readonly sockets: BrokerSockets;
  private connected = false;

  /** `config` builds a client of the probe's own that never retries, so a dead broker fails fast and says why. */
  constructor(config: Pick<Config, 'kafka'>, logger: Logger) {
    const kafka = createKafka(config, logger, { retries: 0 });
    this.sockets = kafka.sockets;
    this.admin = kafka.admin({ retry: { retries: 0 } });
    this.admin.on(this.admin.events.DISCONNECT, () => {
      this.connected = false;
    });
  }

  async ping(): Promise<void> {
    if (!this.connected) {
      await this.admin.connect();
      this.connected = true;
    }
    const cluster = await this.admin.describeCluster();
    if (cluster.brokers.length === 0)
      throw new AppError('DEPENDENCY_UNAVAILABLE', 'no Kafka broker in the cluster metadata');
  }

  /** A ping in flight fails: it opens no connection after this. */
  async close(): Promise<void> {
    this.connected = false;
    await this.admin.disconnect();
    this.sockets.close();
  }
}
