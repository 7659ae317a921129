// The MySQL replica stopped under a running node: reads fall back to the primary (the node's topology
// discovery, src/storage/mysql.ts), nothing fails, and they go back to the replica once it follows the
// primary again. Stops the stack's replica for a few seconds: serial, with the other fault tests.
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { dbFailoverStatus } from '../../scripts/stack/db-failover.js';
import { serverPaths } from '../../scripts/stack/layout.js';
import { isWritable, replicationStatus } from '../../scripts/stack/mariadb.js';
import { logTail } from '../../scripts/stack/process.js';
import { restoreMariadbLayout, serverPid, startServer, stopServer } from '../../scripts/stack/stack.js';
import { startApp } from '../helpers/app.js';
import { uniq } from '../helpers/isolation.js';

async function until(
  what: string,
  done: () => boolean | Promise<boolean>,
  timeoutMs = 15_000,
): Promise<number> {
  const started = Date.now();
  while (!(await done())) {
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(100);
  }
  return Date.now() - started;
}

t.test('reads fall back to the primary while the replica is down, and back again', async (t) => {
  const running = await startApp(t);
  const productId = await running.createProduct({ stock: 10 });
  const stats = () => running.adminGet(`/stats/products/${productId}`); // read from the replica pool
  await until('discovery', () => running.infra.mysql.roles.reads === 'replica');
  t.equal((await stats()).status, 200, 'stats read from the replica');

  // Whatever happens, the next test finds MariaDB as the stack starts it (a failover here would fail them all).
  t.teardown(() => restoreMariadbLayout((line) => t.comment(line)));
  const primaryPid = serverPid('primary');
  await stopServer('replica');
  const fellBackMs = await until('reads on the primary', () => running.infra.mysql.roles.reads === 'primary');
  t.comment(`reads moved to the primary ${fellBackMs} ms after the replica stopped`);
  t.same(running.infra.mysql.roles, { writes: 'primary', reads: 'primary' }, 'writes stay, reads follow');
  t.equal((await stats()).status, 200, 'a replica read is answered by the primary while the replica is down');
  // A key of this run's own: orders (and their keys) stay in the stack's database between runs.
  const bought = await running.purchase(productId, 1, 'replica-down-user', uniq('replica-down-'));
  t.equal(bought.status, 201, 'purchases go on (semi-sync falls back to asynchronous)');

  await startServer('replica');
  t.match(
    await replicationStatus('replica'),
    { ioThread: 'Yes', sqlThread: 'Yes' },
    'the replica follows again',
  );
  const backMs = await until('reads on the replica', () => running.infra.mysql.roles.reads === 'replica');
  t.comment(`reads back on the replica ${backMs} ms after it was started again`);
  t.equal((await stats()).status, 200, 'stats read from the replica again');

  // The primary was never touched: the same process, still the elected and writable one. A crash of it, or a
  // promotion of its replica by the manager, would show here with the logs behind it.
  const logs = {
    primary: logTail(serverPaths('primary').logFile, 15),
    'db-failover': logTail(serverPaths('db-failover').logFile, 10),
  };
  t.equal(serverPid('primary'), primaryPid, 'the MariaDB primary kept running throughout', logs);
  t.equal(
    (await dbFailoverStatus()).primary,
    'primary',
    'no failover: primary is still the elected one',
    logs,
  );
  t.ok(await isWritable('primary'), 'and it still takes writes', logs);
});
