// The local stack as a whole: which servers it runs, in what order, and the API tests and the CLI use.
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ensureSigningKey } from './auth-key.js';
import { dbFailover, dbFailoverRequest, dbFailoverStatus } from './db-failover.js';
import { kafkaNodes } from './kafka.js';
import {
  RUN_DIR,
  STACK_DIR,
  STACK_KAFKA_NODES,
  STACK_REDIS_NODES,
  serverPaths,
  type ServerName,
} from './layout.js';
import { electedPrimary, primary, replica, replicationStatus, waitMariadbInSync } from './mariadb.js';
import {
  alertmanager,
  blackbox,
  mysqldExporterPrimary,
  mysqldExporterReplica,
  prometheus,
  redisExporter,
} from './monitoring.js';
import { nginx } from './nginx.js';
import { payment } from './payment.js';
import { StackError, isAlive, readPid } from './process.js';
import { redis, redis2, sentinels } from './redis.js';
import {
  describeServer,
  ensureRunning,
  ensureStopped,
  ensureStoppedTogether,
  runningPid,
  type ServerSpec,
  type ServerStatus,
  type StartResult,
} from './server.js';

export {
  APP_NODES,
  STACK_HOST,
  STACK_KAFKA_BROKERS,
  STACK_KAFKA_NODES,
  STACK_MYSQL,
  STACK_PORTS,
  type ServerName,
} from './layout.js';
export type { ServerStatus, StartResult } from './server.js';

/** Every server of the stack. Adding one = one module exporting a ServerSpec, listed here. */
export const SERVERS: readonly ServerSpec[] = [
  primary,
  replica,
  dbFailover,
  redis,
  redis2,
  ...sentinels,
  ...kafkaNodes,
  payment,
  nginx,
  redisExporter,
  mysqldExporterPrimary,
  mysqldExporterReplica,
  blackbox,
  alertmanager,
  prometheus,
];

export type StackStatus = Record<ServerName, ServerStatus>;
export type StackStartResults = Record<ServerName, StartResult>;

const LOCK_FILE = path.join(RUN_DIR, 'up.lock');
const LOCK_WAIT_MS = 5 * 60_000;

export function serverSpec(name: ServerName): ServerSpec {
  const spec = SERVERS.find((server) => server.name === name);
  if (spec === undefined)
    throw new StackError(`unknown server '${name}'; the stack runs ${SERVERS.map((s) => s.name).join(', ')}`);
  return spec;
}

/** Serializes `up` across processes (two `npm test` at once): the second waits for the first. */
async function withUpLock<T>(work: () => Promise<T>): Promise<T> {
  fs.mkdirSync(RUN_DIR, { recursive: true });
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      fs.writeFileSync(LOCK_FILE, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = readPid(LOCK_FILE);
      if (holder === undefined || !isAlive(holder)) fs.rmSync(LOCK_FILE, { force: true });
      else if (Date.now() > deadline)
        throw new StackError(`another \`stack up\` (pid ${holder}) holds ${LOCK_FILE}`);
      else await sleep(250);
    }
  }
  try {
    return await work();
  } finally {
    fs.rmSync(LOCK_FILE, { force: true });
  }
}

/** Starts `names` (and what they depend on) concurrently, each after its dependencies; all errors are reported. */
async function startAll(names: readonly ServerName[]): Promise<Partial<StackStartResults>> {
  const starts = new Map<ServerName, Promise<StartResult>>();
  const start = (name: ServerName): Promise<StartResult> => {
    let started = starts.get(name);
    if (started === undefined) {
      const spec = serverSpec(name);
      started = Promise.all(spec.dependsOn.map(start)).then(
        () => ensureRunning(spec),
        () =>
          Promise.reject(new StackError(`${name}: not started because ${spec.dependsOn.join(', ')} failed`)),
      );
      starts.set(name, started);
    }
    return started;
  };
  names.forEach((name) => void start(name).catch(() => undefined));
  const settled = await Promise.allSettled(
    [...starts.entries()].map(async ([name, started]) => [name, await started] as const),
  );
  const failures = settled.flatMap((result) =>
    result.status === 'rejected' ? [(result.reason as Error).message] : [],
  );
  if (failures.length > 0) throw new StackError(`stack up failed:\n${failures.join('\n\n')}`);
  return Object.fromEntries(
    settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : [])),
  );
}

/** Starts every server that is not running; ones already running from this stack are left alone. */
export async function stackUp(): Promise<StackStartResults> {
  return (await withUpLock(async () => {
    await ensureSigningKey();
    return startAll(SERVERS.map((server) => server.name));
  })) as StackStartResults;
}

/** Stops every server this stack started (by pid: SIGTERM, then SIGKILL after its timeout). */
export async function stackDown(): Promise<Record<ServerName, number | undefined>> {
  const pids = await ensureStoppedTogether(SERVERS);
  return Object.fromEntries(SERVERS.map((server, i) => [server.name, pids[i]])) as Record<
    ServerName,
    number | undefined
  >;
}

/** Stops the stack, then deletes `.stack/` (all data, logs and pid files). */
export async function stackReset(): Promise<void> {
  await stackDown();
  fs.rmSync(STACK_DIR, { recursive: true, force: true });
}

export async function stackStatus(): Promise<StackStatus> {
  const statuses = await Promise.all(
    SERVERS.map(async (server) => [server.name, await describeServer(server)] as const),
  );
  return Object.fromEntries(statuses) as StackStatus;
}

/** Starts one server (and any server it depends on that is down). */
export async function startServer(name: ServerName): Promise<StartResult> {
  const results = await withUpLock(() => startAll([name]));
  return results[name] as StartResult;
}

/** Stops one server; returns the pid it stopped, or undefined when it was not running. */
export async function stopServer(name: ServerName): Promise<number | undefined> {
  const [pid] = await stopServers([name]);
  return pid;
}

/** The pid of a server this stack runs, or undefined when it is down. */
export function serverPid(name: ServerName): number | undefined {
  return runningPid(serverSpec(name));
}

/**
 * Sends `signal` to a running server (fault injection: SIGKILL, SIGSTOP, SIGCONT); its pid, or undefined
 * when it was not running. Unlike stopServer, it does not wait or clean up: the server dies as in a crash.
 */
export function signalServer(name: ServerName, signal: NodeJS.Signals): number | undefined {
  const pid = serverPid(name);
  if (pid !== undefined) process.kill(pid, signal);
  return pid;
}

/** The Redis data nodes: stopping both is "Redis is down" (one alone is a failover). */
export const REDIS_DATA_NODES: readonly ServerName[] = STACK_REDIS_NODES.map((node) => node.name);

/** The Kafka nodes (broker + controller each): stopping all of them is "Kafka is down" (one alone, a failover). */
export const KAFKA_NODES: readonly ServerName[] = STACK_KAFKA_NODES.map((node) => node.name);

/**
 * Stops several servers at once (e.g. REDIS_DATA_NODES); the pids stopped. KAFKA_NODES stopped together take
 * at most ~8 s past the first exits (the last node, without a quorum, is killed), not the 45 s stop timeout.
 */
export async function stopServers(names: readonly ServerName[]): Promise<(number | undefined)[]> {
  return ensureStoppedTogether(names.map(serverSpec), SERVERS);
}

/** Starts several servers (and what they depend on). */
export async function startServers(names: readonly ServerName[]): Promise<void> {
  await withUpLock(() => startAll(names));
}

/**
 * Rebuilds a MariaDB server that is not the primary (an old primary, fenced since a failover, or a replica
 * that broke) as a replica of the primary: stopped, its data wiped, started empty, seeded from a dump of the
 * primary and replicating from it (scripts/stack/mariadb.ts). Whatever it held that the primary does not
 * (a transaction no replica acknowledged, so no client was told it committed) is discarded.
 */
export async function rejoinMariadb(name: 'primary' | 'replica'): Promise<void> {
  const elected = electedPrimary();
  if (name === elected)
    throw new StackError(`${name} is the primary; rejoin the other server, or switch over first`);
  await ensureStopped(serverSpec(name));
  fs.rmSync(serverPaths(name).dataDir, { recursive: true, force: true });
  await startServer(name);
}

/**
 * Puts MariaDB back as a new stack has it: both servers and the failover manager up, `primary` the elected,
 * writable primary and `replica` in sync with it. After a failover, the old primary is rebuilt as a replica
 * (unless it already follows) and a switchover makes it the primary again. Idempotent; says what it did.
 */
export async function restoreMariadbLayout(progress: (line: string) => void = () => {}): Promise<string[]> {
  const done: string[] = [];
  await startServers(['primary', 'replica', 'db-failover']);
  if ((await dbFailoverStatus()).primary !== 'primary') {
    const following = await replicationStatus('primary').catch(() => null);
    if (following?.ioThread !== 'Yes') {
      progress('stack: rejoining the MariaDB server primary as a replica before the switch back');
      await rejoinMariadb('primary');
      done.push('rejoined primary');
    }
    await waitMariadbInSync('replica', 'primary', { idle: true });
    progress('stack: MariaDB switchover back to primary');
    // Refused while a check of the manager's sees `primary` down (a login made during the rejoin's account
    // set-up, dropped once it fails): asked again a moment later.
    let switched = await dbFailoverRequest('POST', '/switchover?to=primary', 60_000);
    for (let retry = 0; switched.status === 409 && retry < 3; retry += 1) {
      await sleep(1_000);
      switched = await dbFailoverRequest('POST', '/switchover?to=primary', 60_000);
    }
    if (switched.status !== 200)
      throw new StackError(
        `switchover to primary answered ${switched.status}: ${JSON.stringify(switched.body)}`,
      );
    done.push('switched MariaDB back to primary');
  }
  if ((await dbFailoverStatus()).primary !== 'primary')
    throw new StackError('MariaDB: the elected primary is not `primary` after the restore');
  await waitMariadbInSync('primary', 'replica', { idle: true });
  return done;
}
