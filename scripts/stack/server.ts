// One server of the stack: what each module describes, and the start/stop/status every server shares.
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { STACK_DIR, STACK_HOST, type ServerName, type ServerPaths } from './layout.js';
import {
  assertPortsFree,
  commandLine,
  findProcesses,
  isAlive,
  readPid,
  spawnDetached,
  stopProcess,
  waitUntil,
  writePid,
  type DetachedCommand,
} from './process.js';

/** What a server module provides; `ensureRunning` and friends do the rest. */
export interface ServerSpec extends ServerPaths {
  readonly name: ServerName;
  /** The port clients use. */
  readonly port: number;
  /** Every port the process binds, checked for foreign owners before a start. */
  readonly ports: readonly number[];
  /** Servers that must be up before this one is configured. */
  readonly dependsOn: readonly ServerName[];
  /** Milliseconds from spawn until `probe` answers; the stop timeout before SIGKILL. */
  readonly startTimeoutMs: number;
  readonly stopTimeoutMs: number;
  /**
   * For members of a quorum (the Kafka nodes): stopped together with the others, the last one still running
   * this long after the rest exited is killed, ms: without a quorum its clean shutdown can only time out.
   */
  readonly lastAloneGraceMs?: number;
  /** Basename of the executable, used with `dataDir` to recognise our process. */
  readonly executable: string;
  /**
   * Recognises this server's process by its argv, for servers that rewrite their process title (nginx);
   * default: argv[0] is `executable` and an argument contains `dataDir`.
   */
  owns?(argv: readonly string[]): boolean;
  /**
   * Why the running process (adopted, not started by this `up`) must be restarted, e.g. it was started by
   * an older stack with other arguments, or before its certificate was reissued; undefined to keep it.
   */
  stale?(pid: number, argv: readonly string[]): Promise<string | undefined>;
  /** First-run work before a spawn (init a datadir, write configs); must be idempotent. */
  prepare(): Promise<void>;
  command(): DetachedCommand;
  /** Cheap liveness check: the server answers on its port. */
  probe(): Promise<boolean>;
  /** After a fresh start only: deeper readiness (e.g. a real produce and fetch) of process `pid`. */
  ready?(pid: number): Promise<void>;
  /** After every start or adoption: idempotent setup (users, replication); dependencies are up. */
  configure?(): Promise<void>;
  /** Extra fields for `status` while the server is up. */
  details?(): Promise<Record<string, unknown>>;
}

export interface ServerStatus {
  readonly state: 'up' | 'down';
  readonly pid: number | null;
  readonly address: string;
  readonly port: number;
  readonly dataDir: string;
  readonly logFile: string;
  readonly [detail: string]: unknown;
}

export interface StartResult {
  readonly pid: number;
  /** False when the server was already running and was left alone. */
  readonly started: boolean;
  /** Set when a running server was stale and restarted: why. */
  readonly restarted?: string;
}

function isOurs(spec: ServerSpec, argv: readonly string[]): boolean {
  if (spec.owns !== undefined) return spec.owns(argv);
  const executable = argv[0]?.split('/').pop() ?? '';
  return executable === spec.executable && argv.some((arg) => arg.includes(spec.dataDir));
}

/** Why a running process's arguments are not the ones `spec.command()` gives now, or undefined when they are. */
export function argumentsChanged(spec: ServerSpec, argv: readonly string[]): string | undefined {
  const wanted = spec.command().args;
  const actual = argv.slice(1);
  if (wanted.length === actual.length && wanted.every((arg, i) => arg === actual[i])) return undefined;
  const added = wanted.filter((arg) => !actual.includes(arg));
  const removed = actual.filter((arg) => !wanted.includes(arg));
  const show = (args: string[]) => args.map((arg) => arg.replace(/^>.*/, '>***')).join(' ');
  return `started with other arguments (now also: ${show(added) || '-'}; no longer: ${show(removed) || '-'})`;
}

/** The pid of this server if it runs from this stack: by pid file, else by a scan of /proc (pid file lost). */
export function runningPid(spec: ServerSpec): number | undefined {
  const pid = readPid(spec.pidFile);
  if (pid !== undefined && isAlive(pid) && isOurs(spec, commandLine(pid) ?? [])) return pid;
  const [found] = findProcesses((argv) => isOurs(spec, argv));
  if (found !== undefined) {
    writePid(spec.pidFile, found);
    return found;
  }
  fs.rmSync(spec.pidFile, { force: true });
  return undefined;
}

export async function ensureRunning(spec: ServerSpec): Promise<StartResult> {
  let running = runningPid(spec);
  let restarted: string | undefined;
  if (running !== undefined && spec.stale !== undefined) {
    restarted = await spec.stale(running, commandLine(running) ?? []);
    if (restarted !== undefined) {
      await stopProcess(running, spec.stopTimeoutMs);
      fs.rmSync(spec.pidFile, { force: true });
      running = undefined;
    }
  }
  if (running !== undefined) {
    // Left alone; a start still in progress elsewhere gets the usual time to answer.
    await waitUntil(() => spec.probe(), {
      what: spec.name,
      timeoutMs: spec.startTimeoutMs,
      pid: running,
      logFile: spec.logFile,
    });
    await spec.configure?.();
    return { pid: running, started: false };
  }
  await assertPortsFree(spec.name, spec.ports);
  fs.mkdirSync(STACK_DIR, { recursive: true });
  await spec.prepare();
  const pid = await spawnDetached(spec.command(), spec.logFile);
  writePid(spec.pidFile, pid);
  await waitUntil(() => spec.probe(), {
    what: `${spec.name} start`,
    timeoutMs: spec.startTimeoutMs,
    pid,
    logFile: spec.logFile,
  });
  await spec.ready?.(pid);
  await spec.configure?.();
  return restarted === undefined ? { pid, started: true } : { pid, started: true, restarted };
}

/** Stops the server if this stack runs it; returns the pid it stopped. */
export async function ensureStopped(spec: ServerSpec): Promise<number | undefined> {
  const pid = runningPid(spec);
  if (pid !== undefined) await stopProcess(pid, spec.stopTimeoutMs);
  fs.rmSync(spec.pidFile, { force: true });
  return pid;
}

/**
 * Stops `specs` at once (each as `ensureStopped` does). Of the quorum (the servers of `stack` with
 * `lastAloneGraceMs` running now), the last one still running, if it is one being stopped, is killed that long
 * after it was left alone instead of waiting out its stop timeout.
 */
export async function ensureStoppedTogether(
  specs: readonly ServerSpec[],
  stack: readonly ServerSpec[] = specs,
): Promise<(number | undefined)[]> {
  const quorum = stack.flatMap((spec) => {
    const pid = spec.lastAloneGraceMs === undefined ? undefined : runningPid(spec);
    return pid === undefined
      ? []
      : [{ pid, graceMs: spec.lastAloneGraceMs!, stopping: specs.includes(spec) }];
  });
  let stopped = false;
  const watch = async () => {
    let aloneSince: number | undefined;
    while (!stopped) {
      const alive = quorum.filter((member) => isAlive(member.pid));
      const last = alive.length === 1 ? alive[0] : undefined;
      if (last !== undefined) aloneSince ??= Date.now();
      if (last?.stopping === true && Date.now() - aloneSince! > last.graceMs) {
        try {
          process.kill(last.pid, 'SIGKILL');
        } catch {
          // It exited meanwhile.
        }
        return;
      }
      await sleep(100);
    }
  };
  const watching = quorum.some((member) => member.stopping) ? watch() : Promise.resolve();
  try {
    return await Promise.all(specs.map(ensureStopped));
  } finally {
    stopped = true;
    await watching;
  }
}

export async function describeServer(spec: ServerSpec): Promise<ServerStatus> {
  const pid = runningPid(spec) ?? null;
  const up = pid !== null && (await spec.probe().catch(() => false));
  const details =
    up && spec.details !== undefined
      ? await spec.details().catch((error: Error) => ({ error: error.message }))
      : {};
  return {
    state: up ? 'up' : 'down',
    pid,
    address: `${STACK_HOST}:${spec.port}`,
    port: spec.port,
    dataDir: spec.dataDir,
    logFile: spec.logFile,
    ...details,
  };
}
