/**
 * One app node as a child process, shared by the bench (scripts/cluster.ts: `node dist/src/main.js`) and the
 * tests (test/helpers/node-process.ts: the same with an orphan guard): spawned on a port of the caller's,
 * listed for the stack's Prometheus while it runs (scripts/stack/scrape-targets.mjs), ready once `/ready`
 * answers 200, stopped with SIGTERM (then SIGKILL after the drain grace) or killed at once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { SERVICE_NODE_FLAGS } from './service-flags.mjs';
import { registerNodeTarget } from './stack/scrape-targets.mjs';

/** A port nobody listens on now (the OS's choice, released at once). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface LaunchSettings {
  /** Node's arguments (flags, then the entry file), after the service's own flags (SERVICE_NODE_FLAGS). */
  readonly args: readonly string[];
  readonly cwd: string;
  /** The child's whole environment (PORT and NODE_ID included). */
  readonly env: NodeJS.ProcessEnv;
  readonly port: number;
  /** Its `node` label for Prometheus. */
  readonly nodeId: string;
  /** Where stdout and stderr go, as they come. */
  readonly onOutput: (chunk: Buffer) => void;
  /** A process group of its own (Ctrl-C of the launcher's terminal does not reach it). */
  readonly detached?: boolean;
  /** How often the stack's Prometheus scrapes it (a Prometheus duration); default the local stack's 2 s. */
  readonly scrapeInterval?: string;
}

export interface LaunchedNode {
  readonly port: number;
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly child: ChildProcess;
  /** Resolves with the exit code, or the signal that ended it. */
  readonly exited: Promise<number | string>;
  /** Resolves when /ready answers 200; rejects if the process exits first or after `timeoutMs`. */
  ready(timeoutMs: number): Promise<void>;
  /** SIGTERM, then SIGKILL if still running after `graceMs`; resolves at the exit. */
  stop(graceMs?: number): Promise<void>;
  /** Sends a signal now (SIGKILL: dies mid-work; SIGSTOP/SIGCONT). */
  readonly kill: (signal: NodeJS.Signals) => void;
}

export function launchNode(settings: LaunchSettings): LaunchedNode {
  const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, ...settings.args], {
    cwd: settings.cwd,
    env: settings.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: settings.detached ?? false,
  });
  child.stdout?.on('data', settings.onOutput);
  child.stderr?.on('data', settings.onOutput);
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')),
  );
  const unregister = registerNodeTarget({
    port: settings.port,
    node: settings.nodeId,
    pid: child.pid ?? 0,
    scrapeInterval: settings.scrapeInterval,
  });
  void exited.then(unregister);
  const url = `http://127.0.0.1:${settings.port}`;
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    port: settings.port,
    url,
    child,
    exited,
    ready: (timeoutMs) => waitReady(url, timeoutMs, exited),
    async stop(graceMs = 20_000) {
      if (!running()) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
    kill: (signal) => void child.kill(signal),
  };
}

/** Polls `<url>/ready` until it answers 200; rejects if `exited` resolves first or after `timeoutMs`. */
export async function waitReady(
  url: string,
  timeoutMs: number,
  exited?: Promise<number | string>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exit: number | string | undefined;
  void exited?.then((code) => (exit = code));
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (exit !== undefined) throw new Error(`the service exited (${exit}) before it was ready`);
    try {
      const res = await request(`${url}/ready`, { headersTimeout: 2_000, bodyTimeout: 2_000 });
      const body = await res.body.text();
      if (res.statusCode === 200) return;
      last = `${res.statusCode} ${body.slice(0, 300)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`${url}/ready did not answer 200 within ${timeoutMs} ms (last: ${last})`);
}
