// The layer check of `npm run lint` (.dependency-cruiser.cjs) fails on each kind of violation: a small tree
// is written to a temporary folder with one violation per rule, and dependency-cruiser, run there with the
// project's config, must name every one of them; the same tree without the violations passes. The real
// tree is checked by `npm run lint` itself.
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '../..');
const cruiser = join(root, 'node_modules/.bin/depcruise');

const CLEAN: Record<string, string> = {
  'src/domain/orders.ts': 'export interface Order { id: string }\n',
  'src/logger.ts': 'export const log = (line: string): void => console.log(line);\n',
  'src/storage/store.ts':
    "import { Redis } from 'ioredis';\nimport type { Order } from '../domain/orders.js';\n" +
    'export const open = (): Redis => new Redis();\nexport type Stored = Order;\n',
  'src/purchase/purchases.ts':
    "import type { Redis } from 'ioredis';\nimport type { Order } from '../domain/orders.js';\n" +
    "import { open } from '../storage/store.js';\nexport const buy = (o: Order): Redis => (o.id ? open() : open());\n",
  'actors/product.ts':
    "import type { Order } from '../src/domain/orders.js';\nimport { log } from '../src/logger.js';\n" +
    'export const handle = (o: Order): void => log(o.id);\n',
};

/** One violation per rule of the config, each added to the clean tree. */
const VIOLATIONS: Record<string, Record<string, string>> = {
  'no-circular': {
    'src/purchase/router.ts':
      "import type { Quote } from './quotes.js';\nexport interface Route { quote: Quote }\n",
    'src/purchase/quotes.ts':
      "import type { Route } from './router.js';\nexport interface Quote { route?: Route }\n",
  },
  'domain-is-pure': {
    'src/domain/views.ts':
      "import { log } from '../logger.js';\nexport const show = (s: string): void => log(s);\n",
  },
  'actors-see-only-the-domain': {
    'actors/saga.ts': "import { open } from '../src/storage/store.js';\nexport const saga = open;\n",
  },
  'drivers-only-in-storage': {
    'src/catalog/reads.ts': "import { Redis } from 'ioredis';\nexport const cache = new Redis();\n",
  },
  'no-test-or-bench-code-in-the-service': {
    'test/helpers/fake.ts': 'export const fake = 1;\n',
    'src/catalog/fake-use.ts': "import { fake } from '../../test/helpers/fake.js';\nexport const n = fake;\n",
  },
};

async function tree(t: Test, files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'layers-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await symlink(join(root, 'node_modules'), join(dir, 'node_modules'));
  await writeFile(
    join(dir, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', strict: true } }),
  );
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  return dir;
}

/** Runs the project's layer check in `dir` as `npm run lint` does: its exit code and its violations. */
async function check(dir: string): Promise<{ code: number; violations: string[]; output: string }> {
  const args = ['src', 'actors', '--config', join(root, '.dependency-cruiser.cjs'), '--output-type', 'err'];
  const { code, stdout } = await run(cruiser, args, { cwd: dir }).then(
    (r) => ({ code: 0, stdout: r.stdout }),
    (err: { code: number; stdout: string }) => ({ code: err.code, stdout: err.stdout }),
  );
  // One line per violation: `  error <rule>: <from> → <to>`.
  const violations = [...stdout.matchAll(/^\s*error (\S+): (\S+)/gm)].map((m) => `${m[1]!} ${m[2]!}`);
  return { code, violations, output: stdout };
}

t.test('the clean tree passes the layer check', async (t) => {
  const result = await check(await tree(t, CLEAN));
  t.equal(result.code, 0, 'exit 0');
  t.same(result.violations, [], 'no violation');
});

// One tree with every violation (one dependency-cruiser run, ~2 s of CPU each): each rule must be named for
// the file that breaks it, and nothing else.
t.test('a tree breaking each rule once fails the layer check, naming each rule and its file', async (t) => {
  const broken = Object.assign({ ...CLEAN }, ...Object.values(VIOLATIONS)) as Record<string, string>;
  const result = await check(await tree(t, broken));
  t.not(result.code, 0, 'non-zero exit');
  const rules = new Set(result.violations.map((v) => v.split(' ')[0]));
  t.same([...rules].sort(), Object.keys(VIOLATIONS).sort(), 'every rule reported, no other', {
    output: result.output,
  });
  for (const [rule, files] of Object.entries(VIOLATIONS)) {
    const named = result.violations.filter((v) => v.startsWith(`${rule} `)).map((v) => v.split(' ')[1]);
    t.ok(
      named.length > 0 && named.every((from) => from !== undefined && from in files),
      `${rule}: reported for its own file(s) only (${named.join(', ')})`,
    );
  }
});
