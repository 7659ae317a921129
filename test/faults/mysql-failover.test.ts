// MariaDB failover with real app processes: two nodes serve purchases while the primary is killed (kill -9);
// the failover manager (src/db-failover/, a stack server) promotes the replica within the specification's
// 30 s, the nodes' pools follow it, purchases succeed again, and no acknowledged purchase is lost (semi-sync:
// the promoted replica had every acknowledged commit). The old primary comes back fenced (read-only, the
// app's writes refused), is rebuilt as a replica (`npm run stack -- rejoin primary`), and a switchover
// makes it the primary again, so the stack ends as it began. Runs serially with the other fault tests.
import mysql from 'mysql2/promise';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { dbFailoverRequest, dbFailoverStatus } from '../../scripts/stack/db-failover.js';
import { STACK_HOST, STACK_MYSQL, STACK_PORTS } from '../../scripts/stack/layout.js';
import { replicationStatus, rootQuery } from '../../scripts/stack/mariadb.js';
import {
  rejoinMariadb,
  restoreMariadbLayout,
  serverSpec,
  signalServer,
  startServer,
} from '../../scripts/stack/stack.js';
import { loadConfig } from '../../src/config.js';
import { mysqlSsl } from '../../src/storage/mysql.js';
import { totals } from '../helpers/database.js';
import { cluster, purchaseLoad, settled } from '../helpers/cluster.js';

/** The specification's MySQL auto-promotion target. */
const PROMOTION_TARGET_MS = 30_000;
const STOCK = 100_000;

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(100);
  }
}

t.test(
  'kill -9 of the MariaDB primary during purchases: promotion within 30 s, nothing lost, the old primary fenced',
  async (t) => {
    t.equal(
      (await dbFailoverStatus()).primary,
      'primary',
      'the stack starts with its first server as the primary',
    );
    const c = await cluster(t, ['node-a', 'node-b']);
    await c.balanced(['node-a', 'node-b']);
    const a = c.nodes.get('node-a')!;
    const b = c.nodes.get('node-b')!;
    const products: number[] = [];
    for (let i = 0; i < 4; i++)
      products.push(
        (await c.call(a, 'POST', '/products', { name: `p${i}`, priceCents: 100, stock: STOCK })).body
          .id as number,
      );
    const traffic = purchaseLoad(c, () => [a, b], products, 20);
    await sleep(1_500);
    t.ok(
      traffic.answers.some((x) => x.status === 201),
      'purchases succeed before the fault',
    );

    // Whatever happens below, the stack ends with its first server as the primary and the second its replica.
    t.teardown(() => restoreMariadbLayout((line) => t.comment(line)));
    const killedAt = Date.now();
    t.type(signalServer('primary', 'SIGKILL'), 'number', 'the MariaDB primary was running and is killed');

    const promoted = await until(
      'promotion',
      async () => ((await dbFailoverStatus()).primary === 'replica' ? Date.now() : undefined),
      PROMOTION_TARGET_MS + 10_000,
    );
    const promotedMs = promoted - killedAt;
    t.comment(`the failover manager promoted the replica ${promotedMs} ms after the kill`);
    t.ok(promotedMs < PROMOTION_TARGET_MS, `promoted within ${PROMOTION_TARGET_MS / 1000} s`);

    const ok = (status: number) => status === 201 || status === 202;
    const backAt = await until(
      'a purchase succeeds after the promotion',
      async () => traffic.answers.find((x) => ok(x.status) && x.sentAt > killedAt && x.at > promoted)?.at,
      PROMOTION_TARGET_MS,
    );
    t.comment(`purchases succeed again ${backAt - killedAt} ms after the kill`);
    t.ok(backAt - killedAt < PROMOTION_TARGET_MS, 'purchases again within 30 s of the kill');
    await sleep(3_000);
    await traffic.stop();
    const late = traffic.answers.filter((x) => x.sentAt > backAt + 1_000);
    t.ok(late.length > 0, 'purchases were sent after the recovery');
    t.same(
      late.filter((x) => !ok(x.status)).map((x) => ({ status: x.status, code: x.code })),
      [],
      'every purchase sent a second after the recovery succeeded',
    );
    const failed = traffic.answers.filter((x) => !ok(x.status));
    // A 500 is logged by its node as 'request failed' with the error behind it: shown when this fails.
    const internal = [a, b].flatMap((n) =>
      n
        .output()
        .split('\n')
        .filter((line) => line.includes('"msg":"request failed"'))
        .slice(0, 3),
    );
    t.ok(
      failed.every((x) => x.status === 503 || x.status === 504 || x.status === 0),
      `failures during the failover are retryable (503/504) or timeouts, never a 500: ${JSON.stringify([...new Set(failed.map((x) => `${x.status} ${x.code ?? ''}`))])}`,
      { internal },
    );

    // Nothing acknowledged is lost: every 201/202 is an order on the promoted server; totals exact.
    const acknowledged = traffic.answers.filter((x) => ok(x.status)).length;
    let sold = 0;
    for (const productId of products) {
      const { db, exact } = await settled(c, productId, STOCK);
      t.ok(exact, `product ${productId}: stock + sold = initial (${db.stock} + ${db.sold}), nothing pending`);
      sold += (await totals(c.mysql.primary, productId)).sold;
    }
    const unanswered = traffic.answers.filter((x) => x.status === 0 || x.status >= 500).length;
    t.ok(
      sold >= acknowledged,
      `every acknowledged purchase is an order (${sold} sold, ${acknowledged} acknowledged)`,
    );
    t.ok(sold <= acknowledged + unanswered, 'no order without a request behind it');

    // The old primary comes back fenced: read-only, replicating from nobody; the app's user cannot write.
    await startServer('primary');
    const [fenced] = await rootQuery('primary', 'SELECT @@global.read_only AS ro');
    t.equal(fenced?.ro, '1', 'the old primary restarted read-only');
    t.equal(await replicationStatus('primary'), null, 'and follows nobody until rejoined');
    const config = loadConfig({ LOG_LEVEL: 'silent' });
    const appOnOld = await mysql.createConnection({
      host: STACK_HOST,
      port: STACK_PORTS.primary,
      user: STACK_MYSQL.user,
      password: STACK_MYSQL.password,
      database: STACK_MYSQL.database,
      ssl: mysqlSsl(config.mysql.primary),
    });
    t.teardown(() => appOnOld.end());
    await t.rejects(
      appOnOld.query('UPDATE products SET stock = stock WHERE id = 0'),
      { code: 'ER_OPTION_PREVENTS_STATEMENT' },
      "the app's writes to the old primary are refused",
    );
    await sleep(1_000); // the manager's checks see it up and read-only, and leave it so
    t.equal((await dbFailoverStatus()).primary, 'replica', 'the promoted server stays the primary');
    // This process loaded the stack's specs before the failover: a start of both servers (a restore) must
    // now start the promoted one first, as the old primary is seeded from it.
    t.same(serverSpec('replica').dependsOn, [], 'the stack starts the promoted server first');
    t.same(serverSpec('primary').dependsOn, ['replica'], 'and the old primary after it');

    // Rejoined as a replica of the new primary, then switched back.
    await rejoinMariadb('primary');
    const following = await replicationStatus('primary');
    t.match(
      following,
      { ioThread: 'Yes', sqlThread: 'Yes', masterPort: STACK_PORTS.replica },
      'rejoined: the old primary replicates from the promoted one',
    );
    const switched = await dbFailoverRequest('POST', '/switchover?to=primary');
    t.equal(switched.status, 200, `switchover back: ${JSON.stringify(switched.body)}`);
    t.match(
      await replicationStatus('replica'),
      { ioThread: 'Yes', sqlThread: 'Yes', masterPort: STACK_PORTS.primary },
      'after the switchover the second server replicates from the first again',
    );
    const [open] = await rootQuery('primary', 'SELECT @@global.read_only AS ro');
    t.equal(open?.ro, '0', 'and the first server takes writes');
    t.same(serverSpec('replica').dependsOn, ['primary'], 'the stack starts the first server first again');
  },
);
