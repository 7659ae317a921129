/**
 * Where CPU time goes during a phase: the whole machine (/proc/stat), chosen processes (/proc/<pid>/stat),
 * and the load generator itself (process.cpuUsage). Linux only; elsewhere the /proc figures are absent.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100; // Linux's usual USER_HZ
  }
})();

export interface CpuSnapshot {
  readonly atMs: number;
  readonly self: NodeJS.CpuUsage;
  /** Busy and total jiffies of all cores; undefined without /proc. */
  readonly machine: { busy: number; total: number } | undefined;
  /** utime + stime jiffies per named process (undefined when it cannot be read). */
  readonly processes: Readonly<Record<string, number | undefined>>;
}

export interface CpuShares {
  readonly wallS: number;
  /** The load generator's CPU in cores (1 = one core fully busy). */
  readonly benchCores: number;
  /** Share of all cores busy, 0..1. */
  readonly machineBusy: number | undefined;
  /** CPU per named process, cores. */
  readonly processCores: Readonly<Record<string, number | undefined>>;
}

/** Pids of the local stack's servers, read from `.stack/run/*.pid` when they exist. */
export function stackPids(): Record<string, number> {
  const files = {
    mariadb_primary: 'primary.mariadbd.pid',
    mariadb_replica: 'replica.mariadbd.pid',
    redis: 'redis.server.pid',
    kafka: 'kafka.pid',
  };
  const pids: Record<string, number> = {};
  for (const [name, file] of Object.entries(files)) {
    try {
      const pid = Number(readFileSync(path.join(ROOT, '.stack', 'run', file), 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && processJiffies(pid) !== undefined) pids[name] = pid;
    } catch {
      // not started by the local stack script, or not on this machine
    }
  }
  return pids;
}

export function cpuSnapshot(pids: Readonly<Record<string, number | undefined>>): CpuSnapshot {
  const processes: Record<string, number | undefined> = {};
  for (const [name, pid] of Object.entries(pids))
    processes[name] = pid === undefined ? undefined : processJiffies(pid);
  return { atMs: performance.now(), self: process.cpuUsage(), machine: machineJiffies(), processes };
}

export function cpuShares(from: CpuSnapshot, to: CpuSnapshot): CpuShares {
  const wallS = (to.atMs - from.atMs) / 1000;
  const selfUs = to.self.user - from.self.user + (to.self.system - from.self.system);
  const processCores: Record<string, number | undefined> = {};
  for (const [name, after] of Object.entries(to.processes)) {
    const before = from.processes[name];
    processCores[name] =
      after === undefined || before === undefined ? undefined : (after - before) / CLOCK_TICKS / wallS;
  }
  const machineBusy =
    from.machine && to.machine && to.machine.total > from.machine.total
      ? (to.machine.busy - from.machine.busy) / (to.machine.total - from.machine.total)
      : undefined;
  return { wallS, benchCores: selfUs / 1e6 / wallS, machineBusy, processCores };
}

export const cores = availableParallelism;

/** Busy share of all cores over `ms` while the bench sends nothing: load from outside the benchmark. */
export async function backgroundBusy(ms: number): Promise<number | undefined> {
  const before = cpuSnapshot({});
  await new Promise((resolve) => setTimeout(resolve, ms));
  return cpuShares(before, cpuSnapshot({})).machineBusy;
}

/** Cores busy with processes outside the given ones (other users of the machine), when /proc is readable. */
export function otherCores(shares: CpuShares, known: readonly (number | undefined)[]): number | undefined {
  if (shares.machineBusy === undefined) return undefined;
  return Math.max(
    0,
    shares.machineBusy * cores() - known.reduce<number>((sum, n) => sum + (n ?? 0), 0) - shares.benchCores,
  );
}

function processJiffies(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

function machineJiffies(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const values = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already inside user)
    const total = values.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (values[3] ?? 0) + (values[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}
