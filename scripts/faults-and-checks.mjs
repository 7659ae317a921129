#!/usr/bin/env node
// The end of `npm test`: the fault tests (tap, one file at a time: each stops or kills servers of the stack),
// and beside them the type check and the lint. Those need no server, and the fault tests leave most of the
// machine idle while they wait for failovers and restarts (~0.6 of 2 cores): ~60 s of the suite's wall time
// go there instead of before the tests. The checks run at the lowest CPU priority (nice 19): they take what
// the fault tests leave, and a fault test that times a recovery is not slowed by them. The fault tests' output
// streams; the checks' is printed once both have ended. Exit 1 when either failed.
/* global process, performance -- a plain Node script, linted without type information */
import { spawn } from 'node:child_process';

const FAULTS = "tap 'test/faults/*.test.ts'";
const CHECKS = "nice -n 19 sh -c 'npm run --silent typecheck && npm run --silent lint'";

/** Runs `command` in a shell; its output streams, or is kept when `keep`. */
function run(command, keep) {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(command, { shell: true, stdio: keep ? ['ignore', 'pipe', 'pipe'] : 'inherit' });
    let output = '';
    if (keep) for (const stream of [child.stdout, child.stderr]) stream.on('data', (d) => (output += d));
    const seconds = () => (performance.now() - started) / 1000;
    child.on('error', (err) => resolve({ code: 1, output: `${output}${err.message}\n`, seconds: seconds() }));
    child.on('close', (code) => resolve({ code: code ?? 1, output, seconds: seconds() }));
  });
}

const [faults, checks] = await Promise.all([run(FAULTS, false), run(CHECKS, true)]);
process.stdout.write(checks.output);
const said = (r) => (r.code === 0 ? 'passed' : `FAILED (exit ${r.code})`);
process.stdout.write(
  `\nnpm test: type check and lint ${said(checks)} in ${Math.round(checks.seconds)} s, ` +
    `beside the fault tests, ${said(faults)} in ${Math.round(faults.seconds)} s\n`,
);
process.exit(faults.code === 0 && checks.code === 0 ? 0 : 1);
