// `npm run chaos` with the short profile (each fault once, seed 9, a fault every ~5 s): kills and pauses
// bench app nodes, cuts one off Redis, kills the stack's Redis primary, a Kafka broker and the MariaDB
// primary, stops the replica, and leaves the stack as it found it. About 55-75 s; runs serially with the
// other fault tests.
// Seed 9 draws the MariaDB primary kill first: its heal (promotion, then the old primary rebuilt and in
// sync, ~20 s) overlaps the faults of the other subsystems instead of ending the run after all of them
// (seed 1 drew it last: ~15 s longer, the same faults).
import t from 'tap';
import { FAULT_KINDS } from '../../scripts/chaos/schedule.js';
import { dbFailoverStatus } from '../../scripts/stack/db-failover.js';
import { benchRunner } from '../helpers/bench-run.js';
import { buildServiceOnce } from '../helpers/build.js';

const SEED = 9;

const bench = benchRunner(t);
t.before(buildServiceOnce);

t.test(
  'chaos, short profile: one fault of each kind, every invariant holds, the stack ends as it began',
  async (t) => {
    const run = await bench([
      'chaos',
      '--param',
      'profile=short',
      '--seed',
      String(SEED),
      '--param',
      'interval=5',
      '--duration',
      '240',
    ]);
    const { code, summary, stdout, output } = run;
    t.comment(stdout.split('\n').slice(-40).join('\n'));
    t.equal(code, 0, 'chaos exits 0', { output: output.slice(-16_000) });
    t.equal(summary['ok'], true, 'every invariant held');
    t.equal(summary['seed'], SEED);
    const faults = summary['faults'] as { kind: string; recovery_s: number | null }[] | undefined;
    t.equal(faults?.length, FAULT_KINDS.length, `one fault of each of the ${FAULT_KINDS.length} kinds`);
    for (const key of [
      'lost_acknowledged',
      'oversold',
      'undersold',
      'sagas_open',
      'replica_mismatch',
      'cache_mismatch',
      'kafka_mismatch',
      'projection_mismatch',
      'ws_stale',
    ])
      t.equal(summary[key], 0, key);
    // Every error a client saw through nginx was an API answer: a JSON body with a code (bench/api.ts
    // errorCode reads `?` from anything else, such as an HTML error page of nginx's own).
    const errors = Object.keys((summary['errors_by_status'] as Record<string, number> | undefined) ?? {});
    t.same(
      errors.filter((label) => / \?$/.test(label)),
      [],
      `every error answer carried an API error code: ${errors.join(', ')}`,
    );
    t.equal((await dbFailoverStatus()).primary, 'primary', 'MariaDB: primary is the primary again');
  },
);
