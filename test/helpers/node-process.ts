import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Test } from 'tap';
import { startNode as launch } from '../../scripts/cluster.js';
import { freePort } from '../../scripts/node-launcher.js';
import { REPO_ROOT } from '../../scripts/stack/layout.js';
import { buildServiceOnce } from './build.js';

export { freePort };

/**
 * A node's SIGTERM waits for its sales projection's fetch in flight, up to PROJECTION_FETCH_WAIT_MS (3 s by
 * default: an idle node's CPU). The tests stop nodes often and measure no idle CPU: 0.5 s, and events are
 * projected within it.
 */
export const QUICK_STOP_ENV = { PROJECTION_FETCH_WAIT_MS: '500' } as const;

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
 * Runs the service as a real child process (`node dist/src/main.js`, built from the sources first unless it
 * was: build.ts; the launcher the bench's nodes use too: scripts/cluster.ts) with `env` on a free port, and
 * waits until /ready answers 200. It is killed when the test ends if still running, and stops itself if the
 * test process dies first (test/helpers/orphan-guard.mjs). While it runs, the stack's Prometheus scrapes it
 * (a file_sd target file, removed when it exits).
 */
export async function startNode(
  t: Test,
  env: Record<string, string>,
  readyTimeoutMs = 60_000,
): Promise<AppNode> {
  const port = env['PORT'] === undefined ? await freePort() : Number(env['PORT']);
  await buildServiceOnce();
  const guard = pathToFileURL(join(REPO_ROOT, 'test/helpers/orphan-guard.mjs')).href;
  const node = await launch(
    { onCleanup: (fn) => t.teardown(fn), progress: (line) => t.comment(line) },
    {
      args: ['--import', guard, join('dist', 'src', 'main.js')],
      cwd: REPO_ROOT,
      env: { ...process.env, LOG_LEVEL: 'warn', ...QUICK_STOP_ENV, ...env, PORT: String(port) },
      port,
      nodeId: env['NODE_ID'] ?? `test-${port}`,
      atCleanup: 'kill',
    },
  );
  const { child } = node;
  const exitCode = node.exited.then(() => child.exitCode);
  await node.ready(readyTimeoutMs).catch((err: unknown) => {
    throw new Error(`app node not ready: ${(err as Error).message}`);
  });
  return {
    port,
    base: node.url,
    child,
    output: node.output,
    async kill9() {
      child.kill('SIGKILL');
      await node.exited;
    },
    async stop() {
      child.kill('SIGTERM');
      return exitCode;
    },
  };
}
