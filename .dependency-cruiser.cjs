// The layers of the service, checked by `npm run lint` (dependency-cruiser, over src/ and actors/):
//   src/domain   orders, outcomes, stages, ports: imports nothing outside itself
//   actors/      the product actors and the sagas: see the rest only through src/domain and a few shared
//                helpers (logger, timeouts, ids); never storage, HTTP, cluster or config
//   src/storage  the only importers of the storage drivers (src/db-failover administers the servers
//                themselves); the rest may name a driver's types
// and no import cycle anywhere, type-only imports included. test/lint/layers.test.ts breaks each rule in
// a fixture to show the check fails.
/* global module */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'An import cycle: move the shared part into src/domain (types, ports) or the lower module.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'domain-is-pure',
      comment: 'src/domain is imported by every layer and imports nothing outside itself.',
      severity: 'error',
      from: { path: '^src/domain/' },
      to: { pathNot: '^src/domain/' },
    },
    {
      name: 'actors-see-only-the-domain',
      comment:
        'actors/ sees storage, HTTP and the cluster through src/domain ports; only shared helpers besides.',
      severity: 'error',
      from: { path: '^actors/' },
      to: {
        path: '^src/',
        pathNot: ['^src/domain/', '^src/(logger|timeouts|ids)\\.ts$'],
      },
    },
    {
      name: 'drivers-only-in-storage',
      comment:
        'Import mysql2, ioredis and kafkajs only in src/storage/ (type-only imports of their types are fine).',
      severity: 'error',
      from: { path: '^(src|actors)/', pathNot: '^src/(storage|db-failover)/' },
      to: { path: 'node_modules/(mysql2|ioredis|kafkajs)/', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'no-test-or-bench-code-in-the-service',
      severity: 'error',
      from: { path: '^(src|actors)/' },
      to: { path: '^(test|bench|scripts)/' },
    },
  ],
  options: {
    tsPreCompilationDeps: true,
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
