// The app nodes Prometheus scrapes on this machine: one file_sd file per running node, in
// .stack/prometheus/targets/nodes/<port>-<pid>.json, written by whoever starts the node (`npm start`:
// scripts/start.mjs; tests: test/helpers/node-process.ts) and removed when it stops. The stack's Prometheus
// (scripts/stack/monitoring.ts) reads every file there (file_sd_configs, re-read on change), so nodes come
// and go without a reload. A file whose pid is no longer alive (a launcher killed with SIGKILL) is removed at
// the next registration and at `stack up`. Node builtins only: scripts/start.mjs runs it without tsx.
/* global process -- a plain Node module, linted without type information */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Where the node target files live (the stack's prometheus.yml points its app jobs here). */
export const NODE_TARGETS_DIR = path.join(ROOT, '.stack', 'prometheus', 'targets', 'nodes');

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

/** Removes the target files of nodes whose process is gone; returns the files removed. */
export function pruneNodeTargets() {
  let names;
  try {
    names = fs.readdirSync(NODE_TARGETS_DIR);
  } catch {
    return [];
  }
  const removed = [];
  for (const name of names) {
    const match = /^\d+-(\d+)\.json$/.exec(name);
    if (match === null || isAlive(Number(match[1]))) continue;
    fs.rmSync(path.join(NODE_TARGETS_DIR, name), { force: true });
    removed.push(name);
  }
  return removed;
}

/**
 * Lists a node for scraping: `{host, port, node, pid, scrapeInterval}` (node: its NODE_ID, the `node` label;
 * pid: the node's process, which must be alive for the file to stay; scrapeInterval: how often its `/metrics`
 * is scraped and its `/ready` probed, a Prometheus duration, default the local stack's). Written atomically
 * (temp file, rename). Returns a function that removes the file again.
 */
export function registerNodeTarget({ host = '127.0.0.1', port, node, pid, scrapeInterval }) {
  fs.mkdirSync(NODE_TARGETS_DIR, { recursive: true });
  pruneNodeTargets();
  const file = path.join(NODE_TARGETS_DIR, `${port}-${pid}.json`);
  const temporary = `${file}.${process.pid}.tmp`;
  // A target's __scrape_interval__ label overrides its job's interval (in every job that reads these files).
  const labels = scrapeInterval === undefined ? { node } : { node, __scrape_interval__: scrapeInterval };
  const content = [{ targets: [`${host}:${port}`], labels }];
  fs.writeFileSync(temporary, `${JSON.stringify(content, null, 2)}\n`);
  fs.renameSync(temporary, file);
  return () => fs.rmSync(file, { force: true });
}
