// Node's flags of every app node this project starts (scripts/start.mjs, scripts/node-launcher.ts for the bench
// and the tests); docker/Dockerfile's CMD repeats them (test/compose.test.ts checks it does). Plain JavaScript,
// so that scripts/start.mjs can run it without tsx.
//
// --max-semi-space-size=64 (MiB; Node 20's default is 16): a purchase allocates a few KB of short-lived objects,
// and at saturation a young generation four times larger halved the garbage collector's share of the node's
// busy time (11.3-12.4% to 6.4-6.9%, `cost --cpu-prof`, side by side) for ~36 MiB more RSS at its peak
// (bench/RESULTS.md). Memory is given back when the load goes: V8 shrinks the young generation again.
export const SERVICE_NODE_FLAGS = Object.freeze(['--max-semi-space-size=64']);
