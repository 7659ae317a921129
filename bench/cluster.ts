/**
 * What a scenario runs against: the cluster of scripts/cluster.ts (nodes, nginx, payment provider) started
 * from the service the bench builds, with the bench's env (bench/README.md); with --url that service instead.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as launcher from '../scripts/cluster.js';
import { productionScrapeInterval } from '../scripts/stack/monitoring.js';
import { childPids } from './cpu.js';
import type { BenchIO, BenchOptions } from './scenario.js';

export { deleteRedisKeys, startProcess } from '../scripts/cluster.js';
export type { Cluster, ClusterSettings } from '../scripts/cluster.js';

/** The checkout whose service the bench builds and runs: this one, or BENCH_SERVICE_ROOT (a worktree of a commit). */
const SERVICE_ROOT = path.resolve(
  process.env['BENCH_SERVICE_ROOT'] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'),
);

/** Rate limits of the bench's nodes: on, but at the service's maximum, far above any load offered. */
export const BENCH_RATE_LIMITS = {
  RATE_LIMIT_IP_PER_S: '100000000',
  RATE_LIMIT_USER_PURCHASES_PER_S: '1000000',
} as const;

let built = false;

/** Starts what the settings ask for (the service built once per bench process); stopped by the run's cleanup. */
export async function startCluster(
  options: BenchOptions,
  io: BenchIO,
  settings: launcher.ClusterSettings = {},
) {
  if (options.url !== undefined) return launcher.runningService(options.url);
  if (!built && options.build) {
    io.progress(`bench: building the service (tsc -p ${path.join(SERVICE_ROOT, 'tsconfig.build.json')})`);
    await launcher.buildService(SERVICE_ROOT);
    built = true;
  }
  const bench = {
    LOG_LEVEL: 'warn',
    PURCHASE_DEADLINE_MS: '10000',
    PURCHASE_TIMEOUT_MS: '15000',
    MAILBOX_LIMIT: String(Math.max(5_000, options.connections * 4)),
    PURCHASE_WAIT_BUDGET_MS: '10000',
    ...BENCH_RATE_LIMITS,
  };
  const cluster = await launcher.startCluster(
    {
      ...io,
      root: SERVICE_ROOT,
      outDir: options.outDir,
      owner: 'bench',
      tag: options.runTag,
      env: bench,
      overrides: options.serviceEnv,
      cpuProfileDir: options.cpuProf ? path.join(options.outDir, 'profiles') : undefined,
      // Scraped and probed as in production, not at the local stack's 2 s (there for the alert tests): a
      // scrape and a /ready cost a node ~1-4 ms of CPU each, which the idle and per-purchase figures would
      // count (an idle node: 0.35-1.2 points of a core more at 2 s; bench/RESULTS.md, 6 December).
      scrapeInterval: productionScrapeInterval(),
    },
    settings,
  );
  // With nginx's workers: what the bench's CPU accounting reads.
  const pids = () => {
    const all = cluster.pids();
    const nginx = all['bench-nginx'];
    for (const worker of nginx === undefined ? [] : childPids(nginx)) all[`bench-nginx-${worker}`] = worker;
    return all;
  };
  return { ...cluster, pids };
}
