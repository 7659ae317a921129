// The bench's usage errors: found before anything starts (no node, no product), exit 2, the message names
// the option. A `--param` key the scenario does not have is refused, not silently ignored.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function bench(...args: string[]) {
  const argv = ['--import', 'tsx/esm', 'bench/cli.ts', ...args, '--no-build'];
  const run = spawnSync(process.execPath, argv, {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** Nothing of a run happened: no node started, no product made. */
const nothingStarted = (t: Test, output: string) =>
  t.notMatch(output, /starting bench-|connections open|tokens/, 'nothing started');

t.test('a --param key the scenario does not have: exit 2, the key and the ones it has', async (t) => {
  const typo = bench('hot-sku', '--param', 'max-step=1');
  t.equal(typo.code, 2);
  t.match(
    typo.stderr,
    '--param max-step: hot-sku has no such parameter (it has: step, max-steps, pause, down-steps, warm-up)',
  );
  nothingStarted(t, typo.stderr);
  const none = bench('saga', '--param', 'pause=0');
  t.equal(none.code, 2);
  t.match(none.stderr, '--param pause: saga has no such parameter (it takes none)');
});

t.test('a bad value of a --param read late in the run is refused before the set-up', async (t) => {
  for (const [scenario, param, message] of [
    ['cost', 'idle=0', '--param idle=0: expected a number from 1 to 3600'],
    ['hot-sku', 'pause=-1', '--param pause=-1: expected a number from 0 to 60'],
    ['scale', 'warm-up=x', '--param warm-up=x: expected a number from 0 to 60'],
    ['reads', 'products=0', '--param products=0: expected a number from 1 to 100'],
    ['auth', 'first=maybe', '--param first=maybe: expected on or off'],
  ] as const) {
    const run = bench(scenario, '--param', param, '--out', t.testdir());
    t.equal(run.code, 2, `${scenario} ${param}: exit 2`);
    t.match(run.stderr, message, `${scenario}: the message names the value`);
    nothingStarted(t, run.stderr);
    const last = JSON.parse(run.stdout.trimEnd().split('\n').pop() ?? '{}') as Record<string, unknown>;
    t.match(
      last,
      { scenario, ok: false, usage: true },
      `${scenario}: the last line says it was a usage error`,
    );
  }
});

t.test('--help lists each scenario with its --param keys', async (t) => {
  const help = bench('--help');
  t.equal(help.code, 0);
  t.match(help.stdout, /\n {2}cost {9}.*\n {15}--param saturation, warm-up, settle, idle\n/);
  t.match(help.stdout, /\n {2}hot-sku {6}.*\n {15}--param step, max-steps, pause, down-steps, warm-up\n/);
});
