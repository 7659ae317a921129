import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import type { Test } from 'tap';
import { request } from 'undici';
import { REPO_ROOT } from '../../scripts/stack/layout.js';
import { registerNodeTarget } from '../../scripts/stack/scrape-targets.mjs';

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface AppNode {
  port: number;
  base: string;
  child: ChildProcess;
  /** stdout + stderr so far (JSON log lines). */
  output(): string;
  /** SIGKILL: the process dies at once, mid-work. */
  kill9(): Promise<void>;
  /** SIGTERM, then waits for the exit; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Runs the service as a real child process (`node --import tsx src/main.ts`) with `env` on a free port,
 * and waits until /ready answers 200. It is killed when the test ends if still running, and stops itself
 * if the test process dies first (test/helpers/orphan-guard.ts). While it runs, the stack's Prometheus
 * scrapes it (a file_sd target file, removed when it exits).
 */
export async function startNode(
  t: Test,
  env: Record<string, string>,
  readyTimeoutMs = 60_000,
): Promise<AppNode> {
  const port = env['PORT'] === undefined ? await freePort() : Number(env['PORT']);
  const guard = pathToFileURL(join(REPO_ROOT, 'test/helpers/orphan-guard.ts')).href;
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', guard, 'src/main.ts'], {
    cwd: REPO_ROOT,
    env: { ...process.env, LOG_LEVEL: 'warn', ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // Scraped by the stack's Prometheus while it runs (scripts/stack/scrape-targets.mjs).
  const unregister = registerNodeTarget({
    port,
    node: env['NODE_ID'] ?? `test-${port}`,
    pid: child.pid ?? 0,
  });
  void exited.then(unregister);
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const base = `http://127.0.0.1:${port}`;
  const until = Date.now() + readyTimeoutMs;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`app node exited with ${child.exitCode} before it was ready:\n${output}`);
    const status = await request(`${base}/ready`)
      .then(async (res) => {
        await res.body.dump();
        return res.statusCode;
      })
      .catch(() => 0);
    if (status === 200) break;
    if (Date.now() > until) throw new Error(`app node not ready within ${readyTimeoutMs} ms:\n${output}`);
    await sleep(100);
  }
  return {
    port,
    base,
    child,
    output: () => output,
    async kill9() {
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
  };
}
