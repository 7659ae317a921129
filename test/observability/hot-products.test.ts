// The hottest-products ranking the dashboard reads (hot_product_*{rank}): sales rate from stock drops,
// decay, the owner filter, the bound on products tracked. In process, with a clock of the test's own.
import t from 'tap';
import { HotProducts } from '../../src/observability/hot-products.js';

function clock() {
  let now = 1_000_000;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

t.test('ranks by units sold, fastest first, with the committed stock', async (t) => {
  const time = clock();
  const hot = new HotProducts({ ranks: 2, halfLifeMs: 10_000, now: time.now });
  hot.committed(1, 100);
  hot.committed(2, 50);
  hot.committed(3, 10);
  for (let i = 1; i <= 20; i += 1) hot.committed(1, 100 - i); // 20 sold
  hot.committed(2, 45); // 5 sold
  hot.committed(3, 20); // a restock: nothing sold
  const top = hot.top();
  t.same(
    top.map((p) => [p.productId, p.stock]),
    [
      [1, 80],
      [2, 45],
    ],
  );
  // 21 units (the first change counts one) × ln2 / 10 s.
  t.ok(Math.abs(top[0]!.soldPerSecond - (21 * Math.LN2) / 10) < 1e-9, `${top[0]!.soldPerSecond}/s`);
});

t.test('a product that stops selling decays out; the owner filter hides products moved away', async (t) => {
  const time = clock();
  const hot = new HotProducts({ halfLifeMs: 1_000, now: time.now });
  hot.committed(1, 10);
  hot.committed(1, 0);
  hot.committed(2, 10);
  hot.committed(2, 9);
  t.same(
    hot.top((id) => id !== 1).map((p) => p.productId),
    [2],
  );
  time.advance(1_000);
  const [first] = hot.top();
  t.equal(first!.productId, 1, 'sold out, still ranked while its rate lasts');
  t.equal(first!.stock, 0);
  t.ok(Math.abs(first!.soldPerSecond - (11 / 2) * Math.LN2) < 1e-9, 'half the weight after one half-life');
  time.advance(20_000);
  t.same(hot.top(), [], 'forgotten once the rate is negligible');
  t.equal(hot.size, 0);
});

t.test('tracks at most maxTracked products, dropping the slowest', async (t) => {
  const time = clock();
  const hot = new HotProducts({ ranks: 3, maxTracked: 10, now: time.now });
  for (let id = 1; id <= 10; id += 1) hot.committed(id, 100);
  hot.committed(7, 90);
  hot.committed(11, 100);
  t.ok(hot.size <= 10, `${hot.size} tracked`);
  t.equal(hot.top()[0]!.productId, 7, 'the fast one survives the bound');
});
