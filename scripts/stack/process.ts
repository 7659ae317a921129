// Process plumbing for the stack: pid files, detached spawns, graceful stops, waits, port owners.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { STACK_HOST } from './layout.js';
import { AppError } from '../../src/errors.js';
import { withTimeout } from '../../src/timeouts.js';

const execFileAsync = promisify(execFile);

/** A failure of the stack the user can act on; the message says what and where. */
export class StackError extends Error {
  override readonly name = 'StackError';
}

export function readPid(pidFile: string): number | undefined {
  try {
    const pid = Number.parseInt(fs.readFileSync(pidFile, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export function writePid(pidFile: string, pid: number): void {
  fs.mkdirSync(path.dirname(pidFile), { recursive: true });
  fs.writeFileSync(pidFile, `${pid}\n`);
}

/** Alive and not a zombie waiting to be reaped. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** The argv of a live process, or undefined when it is gone. */
export function commandLine(pid: number): string[] | undefined {
  try {
    return fs
      .readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split('\0')
      .filter((arg) => arg !== '');
  } catch {
    return undefined;
  }
}

/** When a live process started (ms since the epoch), from /proc: boot time plus its start in clock ticks. */
export function processStartedAt(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): state is field 3, starttime field 22.
    const startTicks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    const bootTime = Number(/^btime (\d+)$/m.exec(fs.readFileSync('/proc/stat', 'utf8'))?.[1]);
    // USER_HZ is 100 on every Linux build that matters here (getconf CLK_TCK).
    return Number.isFinite(startTicks) && Number.isFinite(bootTime)
      ? bootTime * 1000 + startTicks * 10
      : undefined;
  } catch {
    return undefined;
  }
}

/** /proc gives start times to the second: a file must be this much newer than a process to count as newer. */
const START_TIME_SLACK_MS = 2_000;

/** The first of `files` changed after process `pid` started (it runs with an older copy), or undefined. */
export function startedBeforeChangeOf(pid: number, files: readonly string[]): string | undefined {
  const startedAt = processStartedAt(pid);
  if (startedAt === undefined) return undefined;
  return files.find((file) => fs.statSync(file).mtimeMs > startedAt + START_TIME_SLACK_MS);
}

/** Live pids whose argv satisfies `matches` (used to find stack processes whose pid file was lost). */
export function findProcesses(matches: (argv: string[]) => boolean): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    const argv = commandLine(pid);
    if (argv !== undefined && argv.length > 0 && matches(argv) && isAlive(pid)) pids.push(pid);
  }
  return pids;
}

export interface DetachedCommand {
  readonly file: string;
  readonly args: readonly string[];
  readonly cwd?: string;
  /** Variables set for the process on top of this one's environment. */
  readonly env?: Readonly<Record<string, string>>;
}

/** Starts a process in its own session (it outlives this one), stdout and stderr appended to `logFile`. */
export async function spawnDetached(command: DetachedCommand, logFile: string): Promise<number> {
  fs.mkdirSync(path.dirname(logFile), { recursive: true });
  const log = fs.openSync(logFile, 'a');
  try {
    const child = spawn(command.file, command.args, {
      cwd: command.cwd,
      env: command.env === undefined ? undefined : { ...process.env, ...command.env },
      detached: true,
      stdio: ['ignore', log, log],
    });
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('spawn', () => resolve(child.pid ?? 0));
      child.once('error', reject);
    });
    child.unref();
    return pid;
  } catch (error) {
    throw new StackError(`cannot start ${command.file}: ${(error as Error).message}`);
  } finally {
    fs.closeSync(log);
  }
}

/** SIGTERM, then SIGKILL if the process is still there after `timeoutMs`. */
export async function stopProcess(pid: number, timeoutMs: number): Promise<'stopped' | 'killed'> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return 'stopped';
  }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return 'stopped';
    await sleep(100);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return 'stopped';
  }
  for (let i = 0; i < 50 && isAlive(pid); i += 1) await sleep(100);
  return 'killed';
}

/** The last `lines` lines of a log file, for error messages. */
export function logTail(logFile: string, lines = 25): string {
  try {
    const text = fs.readFileSync(logFile, 'utf8');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log written)';
  }
}

export interface WaitOptions {
  readonly what: string;
  readonly timeoutMs: number;
  /** The process being waited on: its exit ends the wait early with the tail of `logFile`. */
  readonly pid?: number;
  readonly logFile?: string;
  readonly intervalMs?: number;
  /**
   * Longest one probe may take before it counts as a failed attempt and the next one starts, ms (default: the
   * time left until `timeoutMs`). A probe that never settles (a client stuck in a handshake) cannot hold the wait.
   */
  readonly probeTimeoutMs?: number;
}

/** Polls `probe` until it returns true; fails on timeout (with the probe's last error) or when the process exits. */
export async function waitUntil(probe: () => Promise<boolean>, options: WaitOptions): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  const tail = (): string =>
    options.logFile === undefined ? '' : `\n--- tail of ${options.logFile} ---\n${logTail(options.logFile)}`;
  let lastError = '';
  for (;;) {
    if (options.pid !== undefined && !isAlive(options.pid)) {
      throw new StackError(`${options.what}: the process (pid ${options.pid}) exited${tail()}`);
    }
    const boundMs = Math.max(1_000, Math.min(options.probeTimeoutMs ?? Infinity, deadline - Date.now()));
    const answered = await withTimeout(Promise.resolve().then(probe), boundMs, 'a probe').catch(
      (error: Error) => {
        const late = error instanceof AppError && error.code === 'DEADLINE_EXCEEDED';
        lastError = late ? `a probe did not answer within ${Math.round(boundMs / 1000)} s` : error.message;
        return false;
      },
    );
    if (answered) return;
    if (Date.now() > deadline) {
      const why = lastError === '' ? '' : ` (last probe error: ${lastError})`;
      throw new StackError(`${options.what}: not ready after ${options.timeoutMs / 1000} s${why}${tail()}`);
    }
    await sleep(options.intervalMs ?? 250);
  }
}

/** True when something accepts TCP connections on the loopback port. */
export function portAnswers(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: STACK_HOST, port });
    const done = (answered: boolean): void => {
      socket.destroy();
      resolve(answered);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Who listens on a TCP port, e.g. `pid 3767 (/usr/sbin/mariadbd)`, as far as `ss` can tell. */
export async function describePortOwner(port: number): Promise<string> {
  try {
    const { stdout } = await execFileAsync('ss', ['-ltnpH', `sport = :${port}`]);
    const match = /pid=(\d+)/.exec(stdout);
    if (match?.[1] !== undefined) {
      const pid = Number(match[1]);
      return `pid ${pid} (${(commandLine(pid) ?? ['?']).join(' ').replace(/\s+/g, ' ').slice(0, 160)})`;
    }
  } catch {
    // ss missing or not permitted: fall through to the generic answer.
  }
  return 'a process this user cannot identify';
}

/** Fails with the port and its owner when any of `ports` is already taken. */
export async function assertPortsFree(server: string, ports: readonly number[]): Promise<void> {
  for (const port of ports) {
    if (await portAnswers(port, 500)) {
      throw new StackError(
        `${server}: port ${port} is already taken by ${await describePortOwner(port)}; stop it or free the port`,
      );
    }
  }
}
