// Preloaded (`--import`) into the app nodes tests spawn: when the test process that started a node is
// gone (killed, crashed, a CI timeout), the node is reparented; it then shuts itself down instead of
// holding ports, leases and the outbox relay lock for whatever runs next on the machine. Plain JavaScript: the
// node runs from dist/ without tsx.
/* global process, setInterval -- a plain Node module, linted without type information */
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.kill(process.pid, 'SIGTERM');
}, 1_000).unref();
