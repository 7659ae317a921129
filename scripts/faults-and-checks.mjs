#!/usr/bin/env node
// The end of `npm test`: the fault tests (tap, one file at a time: each stops or kills servers of the stack),
// and beside them, one after another, the unit test files (`test/**/*.unit.test.ts`: no server of the stack)
// and the type check and lint. None needs a server, and the fault tests leave most of the machine idle while
// they wait for failovers and restarts (~0.6 of 2 cores). The unit tests go first, at the priority they had
// among the other tests (some time their own timers), during the first fault files, which assert alerts and
// invariants, not timings; the type check and lint then run at the lowest priority (nice 19), taking only
// what the fault tests leave. The fault tests' output streams; the others' is printed once all have ended,
// then one line with the three verdicts. Exit 1 when any failed.
/* global process, performance -- a plain Node script, linted without type information */
import { spawn } from 'node:child_process';

const FAULTS = "tap 'test/faults/*.test.ts'";
/** What runs beside them, in order: [what, command, nice]. */
const BESIDE = [
  ['unit tests', "tap 'test/**/*.unit.test.ts'", false],
  ['type check and lint', 'npm run --silent typecheck && npm run --silent lint', true],
];

/** Runs `command` in a shell (at nice 19 when `nice`); its output streams, or is kept when `keep`. */
function run(command, { keep, nice }) {
  const started = performance.now();
  return new Promise((resolve) => {
    const shell = ['sh', '-c', command];
    const [file, ...args] = nice ? ['nice', '-n', '19', ...shell] : shell;
    const child = spawn(file, args, { stdio: keep ? ['ignore', 'pipe', 'pipe'] : 'inherit' });
    let output = '';
    if (keep) for (const stream of [child.stdout, child.stderr]) stream.on('data', (d) => (output += d));
    const seconds = () => (performance.now() - started) / 1000;
    child.on('error', (err) => resolve({ code: 1, output: `${output}${err.message}\n`, seconds: seconds() }));
    child.on('close', (code) => resolve({ code: code ?? 1, output, seconds: seconds() }));
  });
}

/** The commands beside the fault tests, one after another (each runs whatever the one before gave). */
async function beside() {
  const results = [];
  for (const [what, command, nice] of BESIDE)
    results.push({ what, ...(await run(command, { keep: true, nice })) });
  return results;
}

const [faults, others] = await Promise.all([run(FAULTS, { keep: false, nice: false }), beside()]);
for (const { output } of others) process.stdout.write(output);
const said = ({ what, code, seconds }) =>
  `${what} ${code === 0 ? 'passed' : `FAILED (exit ${code})`} in ${Math.round(seconds)} s`;
process.stdout.write(
  `\nnpm test: ${said({ what: 'fault tests', ...faults })}; beside them ${others.map(said).join(', ')}\n`,
);
process.exit([faults, ...others].every((r) => r.code === 0) ? 0 : 1);
