/**
 * Where CPU time goes during a phase: the whole machine (/proc/stat), chosen processes (/proc/<pid>/stat),
 * and the load generator itself (process.cpuUsage). Linux only; elsewhere the /proc figures are absent.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { ServerName } from '../scripts/stack/layout.js';
import { serverPid } from '../scripts/stack/stack.js';

/** `fn()`, or undefined when it throws (no /proc or getconf, a process gone meanwhile, not ours to read). */
function attempt<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

// 100: Linux's usual USER_HZ.
const CLOCK_TICKS = Number(attempt(() => execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }))) || 100;

type CpuSnapshot = ReturnType<typeof cpuSnapshot>;
/** Over a phase: the load generator's cores, the share of all cores busy (0..1), the cores in interrupts
 * (charged to no process) and the cores the host took from this guest (steal; all three undefined without
 * /proc), and each named process's cores. */
export type CpuShares = ReturnType<typeof cpuShares>;

/** The local stack's servers (scripts/stack/layout.ts) and the names the bench's CPU figures give them. */
const STACK_SERVERS =
  'primary replica redis redis-2 sentinel-1 sentinel-2 sentinel-3 kafka kafka-2 kafka-3 payment';
const OWN_NAMES: Readonly<Record<string, string>> = {
  primary: 'mariadb_primary',
  replica: 'mariadb_replica',
  payment: 'payment_provider',
};

/** Pids of the local stack's live servers, as the stack itself finds them (a restarted server: a new pid). */
export function stackPids(): Record<string, number> {
  const pids: Record<string, number> = {};
  for (const name of STACK_SERVERS.split(' ') as ServerName[]) {
    const pid = serverPid(name);
    if (pid !== undefined) pids[OWN_NAMES[name] ?? name.replace('-', '_')] = pid;
  }
  return pids;
}

/** The fields of /proc/<pid>/stat after the parenthesised command name (state first); undefined if gone. */
const statFields = (pid: number | string) => {
  const stat = attempt(() => readFileSync(`/proc/${pid}/stat`, 'utf8'));
  return stat?.slice(stat.lastIndexOf(')') + 2).split(' ');
};

/** Pids of the live processes whose parent is `parent` (nginx's workers), from /proc, lowest first. */
export const childPids = (parent: number): number[] =>
  (attempt(() => readdirSync('/proc')) ?? [])
    .filter((d) => /^\d+$/.test(d) && Number(statFields(d)?.[1]) === parent)
    .map(Number)
    .sort((a, b) => a - b);

/** Nanoseconds the threads of `pid` (`self`: this process) have spent runnable but waiting for a CPU (field 2
 * of each /proc/<pid>/task/<tid>/schedstat); undefined if gone. */
function runQueueNs(pid: number | 'self'): number | undefined {
  const tasks = attempt(() => readdirSync(`/proc/${pid}/task`));
  const waits = tasks?.map((tid) =>
    attempt(() => readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8')),
  );
  return waits?.reduce((sum, line) => sum + Number(line?.split(' ')[1] ?? 0), 0);
}

/** The generator's, the machine's (busy, irq, steal and total jiffies) and each named process's CPU so far: utime +
 * stime (fields 14 and 15 of /proc/<pid>/stat), jiffies; and their time waiting for a CPU (`runQueueNs`). */
export function cpuSnapshot(pids: Readonly<Record<string, number | undefined>>) {
  const jiffies = (f: string[] | undefined) => f && Number(f[11]) + Number(f[12]);
  const processes: Record<string, number | undefined> = {};
  const waits: Record<string, number | undefined> = { bench: runQueueNs('self') };
  for (const [name, pid] of Object.entries(pids)) {
    processes[name] = pid === undefined ? undefined : jiffies(statFields(pid));
    waits[name] = pid === undefined ? undefined : runQueueNs(pid);
  }
  return { atMs: performance.now(), self: process.cpuUsage(), machine: machineJiffies(), processes, waits };
}

export function cpuShares(from: CpuSnapshot, to: CpuSnapshot) {
  const wallS = (to.atMs - from.atMs) / 1000;
  const selfUs = to.self.user - from.self.user + (to.self.system - from.self.system);
  const per = (a: Record<string, number | undefined>, b: Record<string, number | undefined>, unit: number) =>
    Object.fromEntries(
      Object.entries(b).map(([name, after]) => {
        const before = a[name];
        return [
          name,
          after === undefined || before === undefined ? undefined : (after - before) / unit / wallS,
        ];
      }),
    );
  const processCores = per(from.processes, to.processes, CLOCK_TICKS);
  /** Per process (and `bench`), seconds its threads waited for a CPU per second: the box's queue. */
  const runQueue = per(from.waits, to.waits, 1e9);
  const [a, b] = [from.machine, to.machine];
  const span = a && b ? b.total - a.total : 0;
  const [machineBusy, irqCores, stealCores] =
    a && b && span > 0
      ? [(b.busy - a.busy) / span, ((b.irq - a.irq) / span) * cores(), ((b.steal - a.steal) / span) * cores()]
      : [undefined, undefined, undefined];
  return {
    wallS,
    benchCores: selfUs / 1e6 / wallS,
    machineBusy,
    irqCores,
    stealCores,
    processCores,
    runQueue,
  };
}

export const cores = availableParallelism;

/** Over `ms` while the bench sends nothing: the share of all cores busy outside `pids` and the bench (other
 * users of the machine; `otherCores`), and the cores the host took (steal). */
export async function background(
  ms: number,
  pids: Readonly<Record<string, number | undefined>> = {},
): Promise<{ busy?: number; stealCores?: number }> {
  const before = cpuSnapshot(pids);
  await sleep(ms);
  const shares = cpuShares(before, cpuSnapshot(pids));
  const others = otherCores(shares, Object.values(shares.processCores));
  return { busy: others === undefined ? undefined : others / cores(), stealCores: shares.stealCores };
}

/** Cores busy outside the given processes and the bench, interrupts left out; undefined without /proc. */
export function otherCores(shares: CpuShares, known: readonly (number | undefined)[]): number | undefined {
  if (shares.machineBusy === undefined) return undefined;
  const knownCores = known.reduce<number>((sum, n) => sum + (n ?? 0), 0) + shares.benchCores;
  return Math.max(0, shares.machineBusy * cores() - (shares.irqCores ?? 0) - knownCores);
}

const machineJiffies = () => {
  const line = attempt(() => readFileSync('/proc/stat', 'utf8'))?.split('\n')[0];
  return line === undefined ? undefined : procStatJiffies(line);
};

/** The `cpu` line of /proc/stat as busy (this guest's own work), irq, steal and total jiffies. */
export function procStatJiffies(line: string): { busy: number; irq: number; steal: number; total: number } {
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already inside user). Steal: time the
  // host ran something else while this guest's vCPU wanted to run; busy is this guest's own work only.
  const total = values.slice(0, 8).reduce((a, b) => a + b, 0);
  const [idle, steal] = [(values[3] ?? 0) + (values[4] ?? 0), values[7] ?? 0];
  return { busy: total - idle - steal, irq: (values[5] ?? 0) + (values[6] ?? 0), steal, total };
}
