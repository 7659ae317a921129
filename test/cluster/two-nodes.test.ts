// Two (or three) app nodes as real processes sharing the stack, each cluster under a key prefix of its
// own. They stop none of the stack's servers (only their own processes), so they run beside other files.
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { desiredOwner, shardOf } from '../../src/cluster/shards.js';
import { uniq } from '../helpers/isolation.js';
import { totals } from '../helpers/database.js';
import { cluster, SHARDS } from '../helpers/cluster.js';
import { asUser } from '../helpers/tokens.js';

t.test(
  '4,000 concurrent purchases over both nodes: exactly the stock is sold, every success is in MySQL',
  async (t) => {
    const { nodes, call, balanced, mysql } = await cluster(t, ['node-a', 'node-b']);
    const held = await balanced(['node-a', 'node-b']);
    t.comment(`shards held: ${held.join(' / ')}`);
    const [a, b] = [nodes.get('node-a')!, nodes.get('node-b')!];
    const hot = (await call(a, 'POST', '/products', { name: 'hot', priceCents: 100, stock: 500 })).body
      .id as number;
    const others: number[] = [];
    for (let i = 0; i < 20; i += 1)
      others.push(
        (await call(b, 'POST', '/products', { name: `p${i}`, priceCents: 100, stock: 50 })).body.id,
      );
    const owners = new Set(
      [hot, ...others].map((p) => desiredOwner(shardOf(p, SHARDS), ['node-a', 'node-b'])),
    );
    t.same([...owners].sort(), ['node-a', 'node-b'], 'the products are owned by both nodes');

    const user = uniq('u');
    // Each client does what the API asks of one: an answer that is not final (202 still running, 503 or
    // 504 retryable) is asked again with the same Idempotency-Key until it is. On a box this loaded, some
    // first answers are not final (a forwarded purchase's owner answering after its deadline); the final
    // ones must account for every unit MySQL sold, exactly once.
    const notFinal = new Set([202, 503, 504]);
    const firstAnswers: Record<number, number> = {};
    const answers = await Promise.all(
      Array.from({ length: 4_000 }, async (_, i) => {
        const productId = i % 2 === 0 ? hot : others[i % 20]!;
        const headers = { ...(await asUser(`${user}-${i % 500}`)), 'idempotency-key': `k${i}` };
        const ask = () =>
          call(i % 4 < 2 ? a : b, 'POST', '/purchases', { productId, quantity: 1 + (i % 2) }, headers);
        let x = await ask();
        firstAnswers[x.status] = (firstAnswers[x.status] ?? 0) + 1;
        for (let again = 0; notFinal.has(x.status) && again < 60; again += 1) {
          await sleep(500);
          x = await ask();
        }
        return { ...x, productId, quantity: 1 + (i % 2) };
      }),
    );
    t.comment(`first answers ${JSON.stringify(firstAnswers)}`);
    const statuses: Record<number, number> = {};
    for (const x of answers) statuses[x.status] = (statuses[x.status] ?? 0) + 1;
    const odd = answers.filter((x) => x.status !== 201 && x.status !== 409);
    t.same(
      Object.keys(statuses).filter((s) => s !== '201' && s !== '409'),
      [],
      `final answers ${JSON.stringify(statuses)}${odd.length ? `, e.g. ${JSON.stringify(odd[0]!.body)}` : ''}`,
    );
    for (const [productId, initial] of [[hot, 500], ...others.map((p) => [p, 50])] as [number, number][]) {
      const sold = answers
        .filter((x) => x.productId === productId && x.status === 201)
        .reduce((s, x) => s + x.quantity, 0);
      const db = await totals(mysql.primary, productId);
      if (sold > initial || db.stock + db.sold !== initial || db.sold !== sold || db.pending !== 0) {
        t.fail(
          `product ${productId}: sold ${sold} of ${initial}; MySQL stock ${db.stock}, sold ${db.sold}, pending ${db.pending}`,
        );
      }
    }
    // Each node served its own products' purchases and forwarded the rest to their owner.
    const routed = { local: 0, forwarded: 0 };
    for (const node of [a, b]) {
      const text = await (await fetch(`${node.base}/metrics`)).text();
      for (const m of text.matchAll(
        /^cluster_routed_total\{op="purchase",where="(local|forwarded)"\} (\d+)/gm,
      ))
        routed[m[1] as 'local' | 'forwarded'] += Number(m[2]);
    }
    t.ok(
      routed.local > 0 && routed.forwarded > 0,
      `purchases served where they landed: ${routed.local}, forwarded to the owner: ${routed.forwarded}`,
    );
    const hotDb = await totals(mysql.primary, hot);
    t.ok(hotDb.stock <= 1, `the hot product sold out (${hotDb.stock} left)`);
    t.pass('every product: sold ≤ stock, MySQL stock + sold = initial, every 201 is a confirmed order');
  },
);

t.test('kill -9 the owner of a hot product under load: the survivor takes over within 5 s', async (t) => {
  const { nodes, call, balanced, mysql } = await cluster(t, ['node-a', 'node-b']);
  await balanced(['node-a', 'node-b']);
  const survivorName = 'node-a';
  // A product whose shard node-b owns.
  let hot = 0;
  for (;;) {
    const id = (
      await call(nodes.get(survivorName)!, 'POST', '/products', {
        name: 'hot',
        priceCents: 100,
        stock: 100_000,
      })
    ).body.id as number;
    if (desiredOwner(shardOf(id, SHARDS), ['node-a', 'node-b']) === 'node-b') {
      hot = id;
      break;
    }
  }
  const survivor = nodes.get(survivorName)!;
  const user = uniq('u');
  let seq = 0;
  const acknowledged: { status: number; orderId?: string; sentAt: number; at: number }[] = [];
  let killedAt = 0;
  let stop = false;
  const worker = async () => {
    while (!stop) {
      const key = `k${(seq += 1)}`;
      const sentAt = Date.now();
      const x = await call(
        survivor,
        'POST',
        '/purchases',
        { productId: hot, quantity: 1 },
        { ...(await asUser(user)), 'idempotency-key': key },
      ).catch(() => undefined);
      if (x) acknowledged.push({ status: x.status, orderId: x.body?.orderId, sentAt, at: Date.now() });
    }
  };
  const workers = Array.from({ length: 50 }, () => worker());
  await new Promise((r) => setTimeout(r, 1_500));
  killedAt = Date.now();
  await nodes.get('node-b')!.kill9();
  // Purchases resume when a purchase sent after the kill succeeds; the takeover time is when it answered.
  const until = killedAt + 15_000;
  let resumedAt = 0;
  while (Date.now() < until && resumedAt === 0) {
    resumedAt = acknowledged.find((x) => x.sentAt > killedAt && x.status === 201)?.at ?? 0;
    await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 1_000));
  stop = true;
  await Promise.all(workers);
  const takeoverMs = resumedAt - killedAt;
  t.comment(`takeover: purchases succeed again ${takeoverMs} ms after the kill`);
  t.ok(resumedAt > 0 && takeoverMs < 5_000, `purchases resumed within 5 s (${takeoverMs} ms)`);

  // Every acknowledged order exists; stock is consistent once the survivor finished the dead node's sagas.
  const waitUntil = Date.now() + 30_000;
  let db = await totals(mysql.primary, hot);
  while (db.pending > 0 && Date.now() < waitUntil) {
    await new Promise((r) => setTimeout(r, 200));
    db = await totals(mysql.primary, hot);
  }
  t.equal(db.pending, 0, 'no order left pending');
  t.equal(db.stock + db.sold, 100_000, 'stock + sold = initial');
  const confirmed = acknowledged.filter((x) => x.status === 201);
  t.ok(
    db.confirmed >= confirmed.length,
    `every acknowledged success is confirmed in MySQL (${confirmed.length} ≤ ${db.confirmed})`,
  );
  for (const x of confirmed) {
    const [[row]] = (await mysql.primary.query('SELECT status FROM orders WHERE id = ?', [x.orderId])) as any;
    if (row?.status !== 'CONFIRMED') t.fail(`acknowledged order ${x.orderId} is ${row?.status}`);
  }
});
