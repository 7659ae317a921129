// The stack's process helpers on real child processes: a readiness probe that never settles cannot hold a
// wait, and a quorum stopped together does not wait out the stop timeout of its last member.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import type { ServerName } from '../scripts/stack/layout.js';
import { isAlive, waitUntil } from '../scripts/stack/process.js';
import { ensureStoppedTogether, type ServerSpec } from '../scripts/stack/server.js';

void t.test('waitUntil: a probe that never settles counts as a failed attempt', async (t) => {
  let calls = 0;
  const started = Date.now();
  await waitUntil(
    () => {
      calls += 1;
      return calls === 1 ? new Promise<boolean>(() => {}) : Promise.resolve(true);
    },
    { what: 'hung then ready', timeoutMs: 10_000, probeTimeoutMs: 1_000, intervalMs: 10 },
  );
  t.equal(calls, 2, 'the second attempt ran after the first overran its bound');
  t.ok(Date.now() - started < 5_000, 'and the wait did not take the whole timeout');

  await t.rejects(
    waitUntil(() => new Promise<boolean>(() => {}), {
      what: 'never ready',
      timeoutMs: 1_500,
      intervalMs: 10,
    }),
    {
      name: 'StackError',
      message:
        /never ready: not ready after 1\.5 s \(last probe error: a probe did not answer within \d+ s\)/,
    },
    'a wait whose probes all hang ends at its timeout, saying so',
  );
});

void t.test('ensureStoppedTogether: the last member of a quorum is killed after its grace', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stack-process-'));
  const children: ChildProcess[] = [];
  const ready: Promise<unknown>[] = [];
  t.teardown(() => {
    for (const child of children) child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  /** A process that exits on SIGTERM after `exitAfterMs`, or never (null: only SIGKILL ends it). */
  const server = (name: string, exitAfterMs: number | null, quorum: boolean): ServerSpec => {
    const marker = `stack-process-test-${name}-${process.pid}`;
    const onTerm =
      exitAfterMs === null ? '() => {}' : `() => setTimeout(() => process.exit(0), ${exitAfterMs})`;
    const child = spawn(
      process.execPath,
      ['-e', `process.on('SIGTERM', ${onTerm}); setInterval(() => {}, 1e3); console.log('ready')`, marker],
      {
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    );
    children.push(child);
    ready.push(new Promise((resolve) => child.stdout.once('data', resolve)));
    const pidFile = path.join(dir, `${name}.pid`);
    fs.writeFileSync(pidFile, `${child.pid}\n`);
    return {
      name: name as ServerName,
      dataDir: dir,
      logFile: path.join(dir, `${name}.log`),
      pidFile,
      port: 0,
      ports: [],
      dependsOn: [],
      startTimeoutMs: 1_000,
      stopTimeoutMs: 30_000,
      ...(quorum && { lastAloneGraceMs: 1_000 }),
      executable: 'node',
      owns: (argv) => argv.includes(marker),
      prepare: () => Promise.resolve(),
      command: () => ({ file: process.execPath, args: [] }),
      probe: () => Promise.resolve(true),
    };
  };
  const specs = [
    server('a', 100, true),
    server('b', 300, true),
    server('c', null, true),
    server('d', 200, false),
  ];
  const pids = children.map((child) => child.pid!);
  const exits = children.map(
    (child) =>
      new Promise<string>((resolve) =>
        child.once('exit', (code, signal) => resolve(signal ?? `exit ${code}`)),
      ),
  );
  await Promise.all(ready); // each has its SIGTERM handler

  const started = Date.now();
  const stopped = await ensureStoppedTogether(specs);
  const tookMs = Date.now() - started;
  t.same(stopped, pids, 'each stopped pid is reported');
  t.ok(
    pids.every((pid) => !isAlive(pid)),
    'all four are gone',
  );
  t.same(await Promise.all(exits), ['exit 0', 'exit 0', 'SIGKILL', 'exit 0'], 'only c was killed');
  t.ok(
    tookMs >= 1_000 && tookMs < 10_000,
    `c, alone and deaf to SIGTERM, was killed after ~1 s (${tookMs} ms), not 30 s`,
  );
  t.ok(
    specs.every((spec) => !fs.existsSync(spec.pidFile)),
    'their pid files are removed',
  );

  // Two of three stopped while the third runs on: they keep a quorum, nobody is killed, the third stays.
  const [x, y, z] = [server('x', 200, true), server('y', 1_500, true), server('z', null, true)];
  const [xExit, yExit] = children
    .slice(-3)
    .map(
      (child) =>
        new Promise<string>((resolve) =>
          child.once('exit', (code, signal) => resolve(signal ?? `exit ${code}`)),
        ),
    );
  await Promise.all(ready);
  await ensureStoppedTogether([x, y], [x, y, z]);
  t.same(
    [await xExit, await yExit],
    ['exit 0', 'exit 0'],
    'y, last of those stopped but not alone, was not killed',
  );
  t.ok(isAlive(children[children.length - 1]!.pid!), 'z, not stopped, runs on');
});
