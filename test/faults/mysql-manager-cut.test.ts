// The failover manager alone loses the MariaDB primary, while the replica still receives from it. The manager
// must not promote: the primary is alive, and a second writable server it could not fence would take the
// app's writes beside it. It promotes only a replica that has lost the primary too (a kill:
// mysql-failover.test.ts). The manager's checks are made to fail by taking its monitoring privileges on the
// primary (SUPER, SLAVE MONITOR) and cutting its sessions: its new logins get in but cannot read the
// replication status, as happened in CI to logins made while `rejoin` was setting up a rebuilt server's
// accounts (global privileges are read at login). Given back, the manager must see the primary again: a
// connection that failed a check is not reused. Runs serially with the other fault tests; the stack's own
// manager is the subject.
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { dbFailoverStatus } from '../../scripts/stack/db-failover.js';
import { STACK_HOST, STACK_MYSQL, serverPaths } from '../../scripts/stack/layout.js';
import { isWritable, replicationStatus, rootQuery } from '../../scripts/stack/mariadb.js';
import { logTail } from '../../scripts/stack/process.js';
import { restoreMariadbLayout } from '../../scripts/stack/stack.js';

/** The stack manager's failover delay (scripts/stack/db-failover.ts) and a margin for its checks. */
const WAIT_PAST_FAILOVER_DELAY_MS = 5_000 + 3_000;
const ADMIN = `'${STACK_MYSQL.adminUser}'@'${STACK_HOST}'`;

/**
 * On the primary only (not binlogged: the replica keeps them), take or give back the manager's monitoring
 * privileges; taking them also cuts its sessions, so that its next logins have what the account has now.
 */
async function setManagerMonitoring(allowed: boolean): Promise<void> {
  const change = allowed
    ? `GRANT SUPER, SLAVE MONITOR ON *.* TO ${ADMIN}`
    : `REVOKE SUPER, SLAVE MONITOR ON *.* FROM ${ADMIN}`;
  await rootQuery('primary', `SET SESSION sql_log_bin = 0; ${change}`);
  if (allowed) return;
  const sessions = await rootQuery(
    'primary',
    `SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = '${STACK_MYSQL.adminUser}'`,
  );
  for (const { id } of sessions)
    await rootQuery('primary', `KILL CONNECTION ${Number(id)}`).catch(() => undefined);
}

t.test(
  'the manager loses the primary, its replica does not: no promotion; it sees the primary again after',
  async (t) => {
    const before = await dbFailoverStatus();
    t.equal(before.primary, 'primary', 'the stack starts with its first server as the primary');
    t.teardown(async () => {
      await setManagerMonitoring(true);
      await restoreMariadbLayout((line) => t.comment(line));
    });

    await setManagerMonitoring(false);
    const cutAt = Date.now();
    let sawItDown = false;
    while (Date.now() - cutAt < WAIT_PAST_FAILOVER_DELAY_MS) {
      const status = await dbFailoverStatus();
      sawItDown ||= status.servers.some((s) => s.name === 'primary' && !s.up);
      await sleep(250);
    }
    const logs = { 'db-failover': logTail(serverPaths('db-failover').logFile, 8) };
    t.ok(sawItDown, "the manager's checks of the primary failed", logs);
    t.match(
      await replicationStatus('replica'),
      { ioThread: 'Yes', sqlThread: 'Yes' },
      'the replica kept receiving from the primary throughout',
    );
    const after = await dbFailoverStatus();
    t.equal(after.primary, 'primary', 'no promotion: the primary is still the elected one', logs);
    t.equal(after.failovers.length, before.failovers.length, 'no failover recorded', logs);
    t.ok(await isWritable('primary'), 'the primary still takes writes');
    t.notOk(await isWritable('replica'), 'and the replica is still read-only');
    t.match(logs['db-failover'], /its replica still receives from it: not promoting/, 'the manager says why');

    // The privileges back: the manager's next check logs in afresh and sees the primary again.
    await setManagerMonitoring(true);
    const back = Date.now();
    let seen = false;
    while (!seen && Date.now() - back < 10_000) {
      seen = (await dbFailoverStatus()).servers.find((s) => s.name === 'primary')?.up === true;
      if (!seen) await sleep(100);
    }
    t.ok(seen, 'the manager sees the primary again', {
      'db-failover': logTail(serverPaths('db-failover').logFile, 8),
    });
  },
);
