// Slow subscribers on one in-process app against the real stack. A client that stops reading fills the
// loopback's socket buffers first (about 4 MB here) before uWS holds anything back, so the clients below
// stop reading and ask for snapshots of 50 products again and again (about 5 MB) to get there quickly;
// the purchases made meanwhile are then skipped for them by uWS, exactly as under a burst of changes.
import t, { type Test } from 'tap';
import { startApp, type RunningApp } from '../helpers/app.js';
import { uniq } from '../helpers/isolation.js';
import { totals } from '../helpers/database.js';
import { connectSubscriber, wsUrl, type Subscriber } from '../helpers/ws-client.js';

async function until(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Stops reading and asks for snapshots of `ids` until the server holds the connection back. */
async function fallBehind(running: RunningApp, client: Subscriber, ids: number[]): Promise<void> {
  client.ws.pause();
  for (let i = 0; i < 3_000; i += 1) {
    client.send({ op: 'subscribe', ids });
    if (i % 50 === 49) {
      await new Promise((r) => setTimeout(r, 5));
      const stats = running.app.subscriptions.stats();
      if (stats.lagging > 0 || stats.slowConsumersDropped > 0) return;
    }
  }
  await until('the server to hold the client back', () => {
    const stats = running.app.subscriptions.stats();
    return stats.lagging > 0 || stats.slowConsumersDropped > 0;
  });
}

/** 100 purchases of one unit from 10 loops; returns the product's stock in MySQL afterwards. */
async function buy(running: RunningApp, productId: number): Promise<number> {
  const user = uniq('u');
  let seq = 0;
  await Promise.all(
    Array.from({ length: 10 }, async () => {
      while (seq < 100) {
        const key = `k${(seq += 1)}`;
        // The outcome does not matter here: subscribers must end on whatever MySQL holds.
        await running.purchase(productId, 1, user, key);
      }
    }),
  );
  return (await totals(running.infra.mysql.primary, productId)).stock;
}

async function setUp(t: Test, env: Record<string, string>) {
  const running = await startApp(t, {
    WS_MAX_BACKPRESSURE_BYTES: '16384',
    // The snapshot flood below loads the process: purchases get time instead of answering 504.
    PURCHASE_DEADLINE_MS: '10000',
    PURCHASE_TIMEOUT_MS: '15000',
    ...env,
  });
  const url = wsUrl(running.base);
  const hot = await running.createProduct({ stock: 1_000 });
  const others = await Promise.all(Array.from({ length: 49 }, () => running.createProduct({ stock: 5 })));
  const fast = await Promise.all([
    connectSubscriber(t, url),
    connectSubscriber(t, url, { protocol: 'msgpack' }),
  ]);
  for (const f of fast) {
    f.send({ op: 'subscribe', ids: [hot] });
    await f.waitForStock(hot, 1_000);
  }
  const slow = await connectSubscriber(t, url);
  slow.send({ op: 'subscribe', ids: [hot, ...others] });
  await slow.waitForStock(hot, 1_000);
  return { running, hot, ids: [hot, ...others], fast, slow };
}

t.test('a subscriber that cannot keep up is closed with 4001; fast ones get every change', async (t) => {
  const { running, hot, ids, fast, slow } = await setUp(t, { WS_SLOW_CONSUMER_MS: '300' });
  await fallBehind(running, slow, ids);
  const buying = buy(running, hot);
  // It keeps asking while it does not read: otherwise the loopback's buffers (which grow with load) may
  // take in everything uWS held back, and a client with nothing held back is not behind.
  await until('the slow subscriber to be dropped', () => {
    const dropped = running.app.subscriptions.stats().slowConsumersDropped > 0;
    if (!dropped) slow.send({ op: 'subscribe', ids });
    return dropped;
  });
  slow.ws.resume(); // it reads what was buffered, then the close frame
  t.equal((await slow.closed).code, 4001, 'closed with 4001 (slow consumer)');
  const final = await buying;
  for (const f of fast) {
    const seen = await f.waitForStock(hot, final);
    // A newer version may repeat a stock (a resync read a settlement's version): compare the changes.
    const stocks = f.applied
      .get(hot)!
      .map((x) => x.stock)
      .filter((s, i, all) => i === 0 || s !== all[i - 1]);
    t.ok(
      stocks.every((s, i) => i === 0 || s < stocks[i - 1]!),
      'the stock only goes down, in order',
    );
    t.equal(seen.stock, final, `fast subscriber ends on the final stock ${final}`);
    t.ok(stocks.length > 1, `it saw the changes (${stocks.length - 1} of them)`);
    t.equal(f.ws.readyState, f.ws.OPEN, 'fast subscriber still connected');
  }
  const stats = running.app.subscriptions.stats();
  t.equal(stats.connections, 2, 'only the fast subscribers remain');
});

t.test('a subscriber that falls behind skips values but ends on the latest', async (t) => {
  const { running, hot, ids, fast, slow } = await setUp(t, { WS_SLOW_CONSUMER_MS: '120000' });
  await fallBehind(running, slow, ids);
  const final = await buy(running, hot);
  await fast[0].waitForStock(hot, final);
  slow.ws.resume();
  const seen = await slow.waitForStock(hot, final);
  t.equal(seen.stock, final, `the lagging subscriber ends on the final stock ${final}`);
  const skipped = fast[0].applied.get(hot)!.length - slow.applied.get(hot)!.length;
  t.comment(`the lagging subscriber skipped ${skipped} intermediate values`);
  t.ok(skipped > 0, 'intermediate values were skipped, not buffered');
  t.equal(running.app.subscriptions.stats().slowConsumersDropped, 0, 'nobody was dropped');
  t.equal(slow.ws.readyState, slow.ws.OPEN);
});
