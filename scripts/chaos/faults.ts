/**
 * The chaos run's faults: each injected into a node of the run's cluster or the stack's data tier, held,
 * healed, and waited for until the system is whole again (node ready, Redis synced, Kafka ISRs whole, MariaDB
 * in semi-sync); `injectFaults` runs a schedule of them.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { dbFailoverStatus } from '../stack/db-failover.js';
import { STACK_REDIS_NODES, type ServerName } from '../stack/layout.js';
import { waitMariadbInSync } from '../stack/mariadb.js';
import { logTail } from '../stack/process.js';
import { REDIS_ADMIN_AUTH, redisPrimaryPort, redisQuery } from '../stack/redis.js';
import {
  KAFKA_NODES,
  REDIS_DATA_NODES,
  rejoinMariadb,
  restoreMariadbLayout,
  serverSpec,
  signalServer,
  startServer,
  startServers,
  stopServer,
} from '../stack/stack.js';
import type { Admin } from '../../src/storage/kafka.js';
import type { Cluster, Lifecycle } from '../cluster.js';
import { waitFor } from '../until.js';
import { ownEvents } from './events.js';
import { RedisPath } from './redis-path.js';
import {
  faultSchedule,
  recoveryOf,
  type FaultKind,
  type PlannedFault,
  type PurchaseOutcome,
  type ScheduleSettings,
} from './schedule.js';

type MariadbServer = 'primary' | 'replica';

/** How long a heal may take before the run gives up on it (and fails), ms. */
const HEAL_TIMEOUT_MS = 90_000;

export interface FaultTargets {
  readonly cluster: Cluster;
  /** An admin client of the run's Kafka cluster, and the topics whose ISRs must be whole again. */
  readonly kafkaAdmin: Admin;
  readonly topics: readonly string[];
  /** Each app node's way to Redis, by the node's place in `cluster.nodes`. */
  readonly redisPaths: readonly RedisPath[];
  readonly progress: (line: string) => void;
}

export interface FaultOutcome {
  /** What was hit: a node id, a stack server name. */
  readonly target: string;
  /** What the heal saw (promotion time, restart time). */
  readonly detail: string;
}

/** The stack's servers of each subsystem a fault hits: their logs explain a heal or a restore that failed. */
const SUBSYSTEM_SERVERS: Readonly<Record<string, readonly ServerName[]>> = {
  mysql: ['primary', 'replica', 'db-failover'],
  redis: REDIS_DATA_NODES,
  kafka: KAFKA_NODES,
};

const subsystemOf = (kind: FaultKind): string => kind.split('-')[0]!;

/** The last lines of the logs of the servers of `subsystems`, for a failure's report. */
function serverLogTails(subsystems: Iterable<string>, lines = 8): string {
  return [...new Set(subsystems)]
    .flatMap((subsystem) => SUBSYSTEM_SERVERS[subsystem] ?? [])
    .map((name) => {
      const { logFile } = serverSpec(name);
      return `--- ${name}: the last lines of ${logFile} ---\n${logTail(logFile, lines)}`;
    })
    .join('\n');
}

/** Polls `probe` every 100 ms until it is true; throws naming `what` after the heal timeout. */
const until = (what: string, probe: () => Promise<boolean>) => waitFor(what, probe, HEAL_TIMEOUT_MS);

const otherServer = (name: MariadbServer): MariadbServer => (name === 'primary' ? 'replica' : 'primary');

/**
 * Both Redis nodes are up again: the one the Sentinels name is the primary, and the other replicates from it
 * and has finished its sync. Which node is the primary is the Sentinels' choice: a loaded machine can make
 * them fail over once more right after a promotion (a new primary slow to answer within down-after), and
 * then the restarted node is the primary. Returns the primary's port.
 */
async function waitRedisPairSynced(): Promise<number> {
  let primary = 0;
  await until('Redis: a primary and a synced replica', async () => {
    primary = await redisPrimaryPort();
    const other = STACK_REDIS_NODES.find((node) => node.port !== primary);
    if (other === undefined) return false;
    const info = await redisQuery(other.port, ['INFO', 'replication'], {
      auth: REDIS_ADMIN_AUTH,
      timeoutMs: 1_000,
    });
    const text = String(info);
    return (
      /^role:slave/m.test(text) &&
      new RegExp(`^master_port:${primary}$`, 'm').test(text) &&
      /^master_link_status:up/m.test(text) &&
      !/^master_sync_in_progress:1/m.test(text)
    );
  });
  return primary;
}

/** Every partition of `topics` (and the consumer offsets) has all three replicas in sync again. */
async function waitKafkaIsrWhole(admin: Admin, topics: readonly string[]): Promise<void> {
  await until('Kafka: every replica back in sync', async () => {
    const metadata = await admin.fetchTopicMetadata({ topics: [...topics, '__consumer_offsets'] });
    return metadata.topics.every((t) => t.partitions.every((p) => p.isr.length >= p.replicas.length));
  });
}

async function nodeReady(url: string): Promise<boolean> {
  const res = await request(`${url}/ready`, { headersTimeout: 1_000, bodyTimeout: 1_000 });
  await res.body.dump();
  return res.statusCode === 200;
}

/** Injects `fault` (`injected` when it strikes), holds, heals and waits for a whole system; rejects if a heal fails. */
export async function runFault(
  fault: PlannedFault,
  targets: FaultTargets,
  injected: () => void,
): Promise<FaultOutcome> {
  const { cluster, progress } = targets;
  switch (fault.kind) {
    case 'app-kill': {
      const victim = cluster.nodes[fault.target % cluster.nodes.length]!;
      victim.kill('SIGKILL');
      injected();
      await victim.exited;
      await sleep(fault.holdMs);
      const started = Date.now();
      const again = await cluster.restart(victim);
      return { target: again.id, detail: `restarted and ready in ${Date.now() - started} ms` };
    }
    case 'app-pause': {
      const victim = cluster.nodes[fault.target % cluster.nodes.length]!;
      victim.kill('SIGSTOP');
      injected();
      await sleep(fault.holdMs);
      victim.kill('SIGCONT');
      const resumed = Date.now();
      await until(`${victim.id} ready after SIGCONT`, () => nodeReady(victim.url));
      return {
        target: victim.id,
        detail: `paused ${fault.holdMs} ms; ready ${Date.now() - resumed} ms after SIGCONT`,
      };
    }
    case 'redis-primary-kill': {
      const port = await redisPrimaryPort();
      const old = STACK_REDIS_NODES.find((node) => node.port === port);
      if (old === undefined) throw new Error(`no stack Redis node on the primary's port ${port}`);
      if (signalServer(old.name, 'SIGKILL') === undefined) throw new Error(`${old.name} was not running`);
      injected();
      const killed = Date.now();
      await until('Sentinel failover', async () => (await redisPrimaryPort()) !== port);
      const promotedMs = Date.now() - killed;
      await sleep(fault.holdMs);
      await startServer(old.name);
      const primary = await waitRedisPairSynced();
      return {
        target: old.name,
        detail:
          `Sentinels promoted the replica in ${promotedMs} ms; restarted, synced` +
          (primary === port ? ' (the Sentinels failed over again: it is the primary)' : ''),
      };
    }
    case 'kafka-broker-kill': {
      const name = KAFKA_NODES[fault.target % KAFKA_NODES.length]!;
      if (signalServer(name, 'SIGKILL') === undefined) throw new Error(`${name} was not running`);
      injected();
      await sleep(fault.holdMs);
      const started = Date.now();
      await startServer(name);
      const restartedMs = Date.now() - started;
      await waitKafkaIsrWhole(targets.kafkaAdmin, targets.topics);
      return {
        target: name,
        detail: `down ${fault.holdMs} ms; restarted in ${restartedMs} ms, in every ISR ${Date.now() - started} ms after`,
      };
    }
    case 'mysql-primary-kill': {
      const old = (await dbFailoverStatus()).primary as MariadbServer;
      if (signalServer(old, 'SIGKILL') === undefined) throw new Error(`MariaDB ${old} was not running`);
      injected();
      const killed = Date.now();
      await until('MariaDB promotion', async () => (await dbFailoverStatus()).primary !== old);
      const promotedMs = Date.now() - killed;
      await sleep(fault.holdMs);
      progress(
        `chaos: MariaDB ${otherServer(old)} promoted in ${promotedMs} ms; rejoining ${old} as its replica`,
      );
      const started = Date.now();
      await rejoinMariadb(old);
      await waitMariadbInSync(otherServer(old), old);
      return {
        target: old,
        detail: `promoted ${otherServer(old)} in ${promotedMs} ms; ${old} rejoined and in sync in ${Date.now() - started} ms`,
      };
    }
    case 'app-redis-cut': {
      const i = fault.target % cluster.nodes.length;
      const victim = cluster.nodes[i]!;
      const path = targets.redisPaths[i];
      if (path === undefined) throw new Error(`no Redis path for node ${victim.id}`);
      path.cutOff();
      injected();
      await sleep(fault.holdMs);
      path.heal();
      const healed = Date.now();
      await until(`${victim.id} ready after its Redis cut`, () => nodeReady(victim.url));
      return {
        target: victim.id,
        detail: `cut off Redis ${fault.holdMs} ms; ready ${Date.now() - healed} ms after`,
      };
    }
    case 'mysql-replica-stop': {
      const primary = (await dbFailoverStatus()).primary as MariadbServer;
      const replica = otherServer(primary);
      await stopServer(replica);
      injected();
      await sleep(fault.holdMs);
      const started = Date.now();
      await startServer(replica);
      await waitMariadbInSync(primary, replica);
      return {
        target: replica,
        detail: `down ${fault.holdMs} ms; started and in sync in ${Date.now() - started} ms`,
      };
    }
  }
}

/** Puts the stack back as the run found it (servers up, nodes resumed, `primary` the MariaDB primary); idempotent. */
export async function restoreStack(
  cluster: Cluster,
  redisPaths: readonly RedisPath[],
  progress: (line: string) => void,
  touched: readonly FaultKind[],
): Promise<string[]> {
  const done: string[] = [];
  for (const node of cluster.nodes) node.kill('SIGCONT');
  for (const path of redisPaths) path.heal();
  try {
    // Only servers this run may have hit: another test may have stopped the others on purpose.
    if (touched.includes('redis-primary-kill')) await startServers(REDIS_DATA_NODES);
    if (touched.includes('kafka-broker-kill')) await startServers(KAFKA_NODES);
    if (!touched.includes('mysql-primary-kill') && !touched.includes('mysql-replica-stop')) return done;
    done.push(...(await restoreMariadbLayout(progress)));
    return done;
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${serverLogTails(touched.map(subsystemOf))}`, {
      cause: err,
    });
  }
}

/**
 * A fault run's own pieces beside its cluster (refused while `primary` is not the MariaDB primary: another
 * fault run going on): Kafka topics of its own (its events are exactly theirs), each
 * node's own way to Redis (so that one node alone can be cut off it), and the stack's restore.
 */
export async function faultRig(tag: string, nodes: number, kinds: readonly FaultKind[], life: Lifecycle) {
  const elected = (await dbFailoverStatus()).primary;
  if (elected !== 'primary' && kinds.some((k) => k.startsWith('mysql-')))
    throw new Error(`the MariaDB primary is ${elected}, not primary: another fault run is in progress?`);
  const events = await ownEvents(tag, life);
  const redisPaths = await RedisPath.forNodes(nodes, life);
  return {
    events,
    /** The cluster's settings: the run's topics, each node's Redis path, a payment provider of its own. */
    settings: { nodes, paymentLatencyMs: 5, env: events.env, nodeEnv: (i: number) => redisPaths[i]!.env() },
    /**
     * The faults' targets once the cluster runs, and the restore of the stack as the run found it (also at
     * cleanup, before the nodes stop: a paused node is resumed first).
     */
    on(cluster: Cluster) {
      let restored = false;
      const restore = async () => {
        if (!restored) await restoreStack(cluster, redisPaths, life.progress, kinds);
        restored = true;
      };
      life.onCleanup(restore);
      const { admin: kafkaAdmin, topics } = events;
      const targets: FaultTargets = { cluster, kafkaAdmin, topics, redisPaths, progress: life.progress };
      return { targets, restore };
    },
  };
}

/** One injected fault: when it struck (ms since the load started), its target, how long its heal took. */
export interface FaultRecord {
  readonly kind: FaultKind;
  target: string;
  atMs: number;
  healS: number | null;
  detail: string;
  error?: string;
}

export interface FaultRun extends ScheduleSettings {
  readonly targets: FaultTargets;
  /** ms since the load started. */
  readonly elapsed: () => number;
  /** The run's length: no fault starts whose gap would end past it; `long` holds the load to it (ms). */
  readonly durationMs: number;
  /** Each fault healed before the next one (else only before the next one of its subsystem). */
  readonly serial: boolean;
  readonly signal: AbortSignal;
  /** The purchases' answers so far (a progress line on the recovery after each fault's gap). */
  readonly outcomes: readonly PurchaseOutcome[];
}

/**
 * After 5 s of load, injects the seed's faults one after another, each `gapMs` after the last. A fault waits
 * for the heal of the previous one of its subsystem (app nodes, Redis, Kafka, MariaDB), so none makes
 * another's recovery impossible; faults of different subsystems overlap. Stops at the first heal that fails;
 * resolves once every heal is done (`long`: and the duration is over).
 */
export async function injectFaults(run: FaultRun) {
  const { elapsed, targets } = run;
  const faults: FaultRecord[] = [];
  let healFailure: string | undefined;
  const healing = new Map<string, Promise<void>>();
  await sleep(5_000); // load before the first fault
  for (const planned of faultSchedule(run)) {
    const subsystem = subsystemOf(planned.kind);
    await healing.get(subsystem);
    if (run.signal.aborted || healFailure !== undefined || elapsed() + planned.gapMs > run.durationMs) break;
    const record: FaultRecord = { kind: planned.kind, target: '', atMs: elapsed(), healS: null, detail: '' };
    faults.push(record);
    targets.progress(`chaos: ${(elapsed() / 1000).toFixed(1)} s: injecting ${planned.kind}`);
    let struck!: () => void;
    const injected = new Promise<void>((resolve) => (struck = resolve));
    const healed = runFault(planned, targets, () => {
      record.atMs = elapsed();
      struck();
    }).then(
      (outcome) => {
        Object.assign(record, outcome);
        record.healS = Math.round((elapsed() - record.atMs) / 100) / 10;
        targets.progress(
          `chaos: ${planned.kind} on ${outcome.target} healed after ${record.healS} s (${outcome.detail})`,
        );
      },
      (err: unknown) => {
        record.error = (err as Error).message;
        healFailure = `${planned.kind}: ${record.error}`;
        targets.progress(`chaos: ${planned.kind} did not heal: ${record.error}; no more faults`);
        const logs = serverLogTails([subsystem]);
        if (logs !== '') targets.progress(logs);
      },
    );
    healing.set(subsystem, healed);
    await Promise.race([injected, healed]);
    if (run.serial) await healed;
    await sleep(Math.max(0, record.atMs + planned.gapMs - elapsed()));
    const { failed, recoveryS } = recoveryOf({ atMs: record.atMs, untilMs: Infinity }, run.outcomes);
    targets.progress(
      `chaos: ${planned.kind}: ${failed} purchases failed so far; recovery ${recoveryS ?? 'not yet'} s`,
    );
  }
  await Promise.all(healing.values());
  if (run.profile === 'long') await sleep(Math.max(0, run.durationMs - elapsed()));
  return { faults, healFailure };
}
