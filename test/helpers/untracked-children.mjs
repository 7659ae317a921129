// Loaded into every test process by tap (package.json, tap.node-arg), after tap's own imports.
// tap's @tapjs/processinfo hooks every process a test file starts: it puts its loader in the child's
// NODE_OPTIONS (through the `process-on-spawn` hook and the inherited environment), and the loader copies the
// source of every module the child loads to its main thread to record it for coverage and `tap --changed`
// (neither used here: coverage is off). The service nodes, bench runs and scripts the tests start do not need
// that record, and it cost each of them ~0.6 s of CPU while loading, on a suite that fills both cores: they
// start as they would outside the tests. The test process itself keeps tap's tracking.
/* global process -- a plain module, linted without type information */
const spawnHooks = globalThis[Symbol.for('process-on-spawn@*:singletonId')];
if (spawnHooks !== undefined) spawnHooks.listeners = [];
// Only tap's entry goes (quoted or not); the other options stay as they were written.
const options = (process.env.NODE_OPTIONS ?? '')
  .replace(/"?--(?:import|loader)=[^"\s]*@tapjs[\\/]processinfo[^"\s]*"?/g, '')
  .trim();
if (options === '') delete process.env.NODE_OPTIONS;
else process.env.NODE_OPTIONS = options;
