// What keeps a test file running after its tests are done, and an end to it. tap's own timeout lists the live
// handles by type only (timers not at all), 600 s later. Two CI runs in a row saw
// test/faults/outbox-relay.test.ts pass its test and then run into that timeout; the second listed one handle,
// a socket with `connect` and `timeout` listeners (a KafkaJS broker socket not yet connected). The file never
// hung here in 17 runs, with and without CPU load. A cause found since (api-auth.test.ts, held the same way): a
// KafkaJS request begun before a disconnect opens a connection after it; `BrokerSockets` (src/storage/kafka.ts)
// now ends those when the client is closed. This stays as the net for anything else.
import { createHook } from 'node:async_hooks';
import t from 'tap';

/** The async resource types that hold the event loop open while referenced. */
const HOLDING = new Set(['TCPWRAP', 'TCPCONNECTWRAP', 'PIPEWRAP', 'Timeout', 'PROCESSWRAP', 'UDPWRAP']);
const STACK_FRAMES = 12;

interface Tracked {
  type: string;
  resource: { hasRef?: () => boolean };
  trace: { stack?: string };
}

let armed = false;

/**
 * From now on records where each socket, timer and child process of this file is created. When the file's
 * root test has ended (its last teardown) and the process is still alive `graceMs` later, comments every
 * referenced one with the stack that created it, then ends the process with the exit code tap set: the
 * file's results stand as they are and are not lost to tap's timeout. Once per process; a file that exits
 * on its own never prints anything.
 */
export function endWhenHeldOpen(graceMs = 15_000): void {
  if (armed) return;
  armed = true;
  const live = new Map<number, Tracked>();
  const hook = createHook({
    init(asyncId, type, _trigger, resource) {
      if (!HOLDING.has(type)) return;
      // The frames are captured now, formatted (source maps and all) only if `stack` is ever read.
      const trace: { stack?: string } = {};
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 25;
      Error.captureStackTrace(trace);
      Error.stackTraceLimit = limit;
      live.set(asyncId, { type, resource, trace });
    },
    destroy(asyncId) {
      live.delete(asyncId);
    },
  }).enable();
  t.teardown(() => {
    setTimeout(() => {
      hook.disable();
      const holding = [...live.values()].filter((h) => h.resource.hasRef?.() ?? true);
      const lines = [`still running ${graceMs} ms after the last teardown; held by:`];
      for (const h of holding) {
        lines.push(`  ${h.type}`);
        const frames = (h.trace.stack ?? '')
          .split('\n')
          .slice(1)
          .filter((frame) => !frame.includes('node:internal') && !frame.includes('open-handles.ts'));
        lines.push(...frames.slice(0, STACK_FRAMES).map((frame) => `    ${frame.trim()}`));
      }
      process.stdout.write(lines.map((l) => `# ${l}\n`).join(''), () => process.exit());
    }, graceMs).unref();
  });
}
