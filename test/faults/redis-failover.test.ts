// Redis failover with real app processes: two nodes serve purchases while the Redis primary is killed
// (kill -9); the Sentinels promote the replica, the nodes follow it through the Sentinels, purchases
// succeed again within the specification's 5 s, and no acknowledged purchase is lost. Then the old
// primary comes back as a replica of the new one. Runs serially with the other fault tests.
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { STACK_REDIS_NODES } from '../../scripts/stack/layout.js';
import { redisPrimaryPort, redisRole, sentinelsNotReadyToPromote } from '../../scripts/stack/redis.js';
import { REDIS_DATA_NODES, signalServer, startServers } from '../../scripts/stack/stack.js';
import { until } from '../../scripts/until.js';
import { totals } from '../helpers/database.js';
import { cluster, purchaseLoad, settled } from '../helpers/cluster.js';
import { connectSubscriber, wsUrl } from '../helpers/ws-client.js';

/** The specification's Redis failover target. */
const FAILOVER_TARGET_MS = 5_000;
const STOCK = 100_000;

t.test(
  'kill -9 of the Redis primary during purchases: failover, purchases again within 5 s, nothing lost',
  async (t) => {
    const c = await cluster(t, ['node-a', 'node-b']);
    await c.balanced(['node-a', 'node-b']);
    const a = c.nodes.get('node-a')!;
    const b = c.nodes.get('node-b')!;
    const products: number[] = [];
    for (let i = 0; i < 6; i++)
      products.push(
        (await c.call(a, 'POST', '/products', { name: `p${i}`, priceCents: 100, stock: STOCK })).body
          .id as number,
      );
    // A stock subscriber on node-b: changes of node-a's products reach it through Redis pub/sub, whose
    // subscriber connection must follow the failover too.
    const subscriber = await connectSubscriber(t, wsUrl(b.base));
    subscriber.send({ op: 'subscribe', ids: products });
    for (const productId of products) await subscriber.waitForStock(productId, STOCK);
    const traffic = purchaseLoad(c, () => [a, b], products, 20);
    await sleep(1_500);
    t.ok(
      traffic.answers.some((x) => x.status === 201),
      'purchases succeed before the fault',
    );

    if (process.env['DUMP_NODE_LOGS'])
      t.teardown(async () => {
        const { writeFileSync } = await import('node:fs');
        writeFileSync('/tmp/node-a.log', a.output());
        writeFileSync('/tmp/node-b.log', b.output());
      });
    // The fault test before this one may have restarted Redis: the replica must be synced in every
    // Sentinel's view before the kill, or their first failover attempt may find no replica to promote
    // (the next one comes 10 s later).
    const { value: notReady, waitedMs } = await until(
      sentinelsNotReadyToPromote,
      (why) => why === undefined,
      30_000,
      200,
    );
    t.equal(notReady, undefined, 'every Sentinel sees a synced replica before the kill');
    t.comment(`the Sentinels saw a synced replica after ${waitedMs} ms`);
    const oldPort = await redisPrimaryPort();
    const old = STACK_REDIS_NODES.find((node) => node.port === oldPort)!;
    t.teardown(() => startServers(REDIS_DATA_NODES));
    const killedAt = Date.now();
    t.type(
      signalServer(old.name, 'SIGKILL'),
      'number',
      `the primary (${old.name}) was running and is killed`,
    );

    let newPort = oldPort;
    while (newPort === oldPort && Date.now() - killedAt < 30_000) {
      await sleep(50);
      newPort = await redisPrimaryPort();
    }
    const promotedMs = Date.now() - killedAt;
    t.not(newPort, oldPort, 'the Sentinels promoted the other node');
    t.comment(`Sentinel failover: new primary on ${newPort} ${promotedMs} ms after the kill`);

    // Purchases sent from 5 s after the kill on all succeed (give the load 3 s of that).
    await sleep(Math.max(0, killedAt + FAILOVER_TARGET_MS + 3_000 - Date.now()));
    await traffic.stop();
    const after = traffic.answers.filter((x) => x.sentAt >= killedAt);
    const ok = (status: number) => status === 201 || status === 202; // 202: accepted, payment still running
    const failed = after.filter((x) => !ok(x.status));
    const lastFailureMs = failed.length === 0 ? 0 : Math.max(...failed.map((x) => x.at - killedAt));
    const byStatus = Object.entries(
      failed.reduce<Record<string, number>>((acc, x) => {
        const key = `${x.status}${x.code === undefined ? '' : ` ${x.code}`}`;
        acc[key] = (acc[key] ?? 0) + 1;
        return acc;
      }, {}),
    );
    t.comment(
      `after the kill: ${after.length - failed.length} purchases succeeded, ${failed.length} failed ` +
        `(${byStatus.map(([k, n]) => `${k}: ${n}`).join(', ') || 'none'}); last failure ${lastFailureMs} ms after the kill`,
    );
    const late = after.filter((x) => x.sentAt - killedAt >= FAILOVER_TARGET_MS);
    t.ok(late.length > 0, 'purchases were sent after the failover window');
    t.same(
      late
        .filter((x) => x.status !== 201)
        .map((x) => ({ status: x.status, code: x.code, at: x.sentAt - killedAt })),
      [],
      `every purchase sent ${FAILOVER_TARGET_MS / 1000} s or more after the kill succeeded`,
    );
    t.ok(
      failed.every((x) => x.status === 503 || x.status === 0 || x.status === 429),
      'failures during the failover are retryable answers (503/429) or timeouts, never a 500',
    );

    // Nothing lost: every acknowledged purchase is an order, and stock + sold = initial.
    const acknowledged = traffic.answers.filter((x) => ok(x.status)).length;
    let sold = 0;
    for (const productId of products) {
      const { db, exact } = await settled(c, productId, STOCK);
      t.ok(exact, `product ${productId}: stock + sold = initial (${db.stock} + ${db.sold}), nothing pending`);
      sold += (await totals(c.mysql.primary, productId)).sold;
      const seen = await subscriber.waitForStock(productId, db.stock, 10_000).catch(() => undefined);
      t.ok(seen !== undefined, `the WebSocket subscriber ends on product ${productId}'s stock (${db.stock})`);
    }
    const unanswered = traffic.answers.filter((x) => x.status === 0 || x.status >= 500).length;
    t.ok(
      sold >= acknowledged,
      `every acknowledged purchase is an order (${sold} sold, ${acknowledged} acknowledged)`,
    );
    t.ok(sold <= acknowledged + unanswered, 'no order without a request behind it');

    // The old primary comes back as a replica of the new one.
    await startServers(REDIS_DATA_NODES);
    let role = '';
    for (const until = Date.now() + 15_000; role !== 'slave' && Date.now() < until; await sleep(100))
      role = await redisRole(old.port).catch(() => '');
    t.equal(role, 'slave', `the old primary (${old.name}) rejoined as a replica`);
    t.equal(await redisPrimaryPort(), newPort, 'and the promoted node stays the primary');
  },
);
