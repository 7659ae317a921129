// The service built into dist/ for the tests that run it as a child process: app nodes (node-process.ts) and
// the bench (bench-run.ts). A node started from dist/ costs ~1.6 s of CPU against ~3.3 s through tsx.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildService } from '../../scripts/cluster.js';
import { REPO_ROOT } from '../../scripts/stack/layout.js';

/** What the build reads (tsconfig.build.json includes src and actors); a change to any of them rebuilds. */
const INPUTS = [
  'src',
  'actors',
  'tsconfig.json',
  'tsconfig.build.json',
  'node_modules/typescript/package.json',
];
/** dist/'s record of the inputs it was built from. */
const STAMP = path.join(REPO_ROOT, 'dist', '.built-from');
const LOCK = path.join(REPO_ROOT, 'dist.build-lock');
/** A build lock older than this was left by a killed run. */
const STALE_LOCK_MS = 120_000;

function files(entry: string): string[] {
  const full = path.join(REPO_ROOT, entry);
  if (!statSync(full).isDirectory()) return [entry];
  return readdirSync(full)
    .sort()
    .flatMap((name) => files(path.join(entry, name)));
}

/** A hash of every input's path and content. */
function inputsHash(): string {
  const hash = createHash('sha256');
  for (const file of INPUTS.flatMap(files))
    hash.update(`${file}\0`).update(readFileSync(path.join(REPO_ROOT, file)));
  return hash.digest('hex');
}

/** A build's output: every build rewrites it (`npm run build`, the bench's, a hand-run tsc), from any source. */
const MAIN = path.join(REPO_ROOT, 'dist', 'src', 'main.js');

/** The inputs' hash with the time of the build that wrote dist/ (undefined: no build yet). */
function built(inputs: string): string | undefined {
  const main = statSync(MAIN, { throwIfNoEntry: false });
  return main === undefined ? undefined : `${inputs} ${main.mtimeMs}`;
}

/** Whether dist/ is this code's build: the stamp names these inputs and the build that wrote it (another
 * build since, from whatever sources, changed main.js's time). */
const upToDate = (inputs: string): boolean =>
  existsSync(STAMP) && readFileSync(STAMP, 'utf8') === built(inputs);

let building: Promise<void> | undefined;

/**
 * Builds the service into dist/ unless this helper built it from these very sources (a hash of them and the
 * build's time, in dist/.built-from): once per change, whichever test file gets here first, under a lock; the
 * others wait and reuse the build. A second build while another file's nodes start from dist/ could hand one
 * of them a half-written module.
 */
export function buildServiceOnce(): Promise<void> {
  building ??= (async () => {
    const inputs = inputsHash();
    for (const deadline = Date.now() + 180_000; ;) {
      if (upToDate(inputs)) return;
      try {
        mkdirSync(LOCK);
        break;
      } catch {
        // Left by a run killed while it built (a build takes ~15 s): taken over.
        const held = statSync(LOCK, { throwIfNoEntry: false });
        if (held !== undefined && Date.now() - held.mtimeMs > STALE_LOCK_MS) {
          rmSync(LOCK, { recursive: true, force: true });
          continue;
        }
        if (Date.now() > deadline)
          throw new Error(`the service build did not finish (${LOCK} held for 3 min)`);
        await sleep(250);
      }
    }
    try {
      if (upToDate(inputs)) return;
      rmSync(STAMP, { force: true });
      await buildService(REPO_ROOT);
      writeFileSync(STAMP, built(inputs)!);
    } finally {
      rmSync(LOCK, { recursive: true, force: true });
    }
  })();
  return building;
}
