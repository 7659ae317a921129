// The consistency monitor's rules, in process: what is lag, what is inconsistent, how a cache is healed;
// and a round that cannot read a store fails alone, logged, and the next round tries again.
import t from 'tap';
import { ConsistencyMonitor } from '../../src/observability/consistency-monitor.js';
import {
  cacheRepair,
  compareStores,
  type ProductSnapshot,
} from '../../src/observability/consistency-rules.js';
import type { Pool } from '../../src/storage/mysql.js';
import { silentLogger } from '../helpers/isolation.js';

const primary = {
  stock: 8,
  version: 5,
  received: 10,
  confirmedOrders: 1,
  confirmedQuantity: 2,
  cancelledOrders: 0,
  pendingQuantity: 0,
};
const agreeing: ProductSnapshot = {
  primary,
  actor: { stock: 8, version: 5 },
  replica: { stock: 8, version: 5 },
  cache: { stock: 8, version: 5 },
  projection: { confirmedOrders: 1, cancelledOrders: 0 },
};
const stores = (s: ProductSnapshot) => compareStores(s).problems.map((p) => p.store);

t.test('stores that agree, or only lag, are consistent', async (t) => {
  t.same(compareStores(agreeing), { problems: [], cacheDrift: false, projectionBehind: false });
  const lagging = {
    ...agreeing,
    actor: { stock: 9, version: 4 }, // before an ownership move: another node committed since
    replica: { stock: 10, version: 3 },
    cache: undefined, // expired
    projection: { confirmedOrders: 0, cancelledOrders: 0 },
  };
  t.same(stores(lagging), []);
  t.equal(compareStores(lagging).projectionBehind, true, 'a projection behind is only suspected');
  t.equal(compareStores({ ...agreeing, replica: undefined, projection: undefined }).problems.length, 0);
});

t.test('the same version with another stock, or a version the primary lacks, is inconsistent', async (t) => {
  t.same(stores({ ...agreeing, replica: { stock: 9, version: 5 } }), ['replica']);
  t.same(stores({ ...agreeing, replica: { stock: 8, version: 6 } }), ['replica']);
  t.same(stores({ ...agreeing, actor: { stock: 7, version: 5 } }), ['actor']);
  t.same(stores({ ...agreeing, actor: { stock: 7, version: 6 } }), ['actor']);
  t.same(stores({ ...agreeing, projection: { confirmedOrders: 2, cancelledOrders: 0 } }), ['projection']);
  t.same(stores({ ...agreeing, primary: { ...primary, pendingQuantity: 1 } }), ['ledger']);
  t.same(stores({ ...agreeing, primary: { ...primary, received: 11 } }), ['ledger']);
});

t.test('cache drift: stale or wrong, and how each is healed', async (t) => {
  const truth = { stock: 8, version: 5 };
  t.equal(compareStores({ ...agreeing, cache: { stock: 9, version: 4 } }).cacheDrift, true);
  t.equal(cacheRepair(undefined, truth), 'none');
  t.equal(cacheRepair({ stock: 8, version: 5 }, truth), 'none');
  t.equal(cacheRepair({ stock: 9, version: 4 }, truth), 'rewrite', 'stale: an older version');
  t.equal(cacheRepair({ stock: 9, version: 5 }, truth), 'rewrite', 'wrong stock at the same version');
  t.equal(cacheRepair({ stock: 9, version: 6 }, truth), 'drop', 'a version the primary never had');
  t.equal(cacheRepair({ stock: NaN, version: NaN }, truth), 'drop', 'unreadable');
});

t.test('a round that cannot read a store fails alone; the next one tries again', async (t) => {
  let queries = 0;
  const broken = {
    query: () => {
      queries += 1;
      return Promise.reject(new Error('connect ECONNREFUSED'));
    },
  } as unknown as Pool;
  const outcomes: string[] = [];
  let twice!: () => void;
  const failedTwice = new Promise<void>((resolve) => (twice = resolve));
  const monitor = new ConsistencyMonitor({
    primary: broken,
    replica: broken,
    cache: {
      getStocks: () => Promise.resolve(new Map()),
      repairStock: () => Promise.resolve(true),
      dropStockIfUnchanged: () => Promise.resolve(true),
    },
    owns: () => true,
    ownsAny: () => true,
    checkProjection: true,
    logger: silentLogger,
    intervalMs: 1,
    onRound: (outcome) => {
      outcomes.push(outcome);
      if (outcomes.length === 2) twice();
    },
  });
  await t.rejects(monitor.round(), /ECONNREFUSED/, 'a round by hand rejects with the cause');
  // The monitor's timer is unref'd (it never keeps a node alive): this test holds the process up meanwhile.
  const alive = setInterval(() => undefined, 1_000);
  monitor.start();
  await failedTwice;
  await monitor.stop();
  clearInterval(alive);
  t.same(outcomes.slice(0, 2), ['failed', 'failed'], 'the timer goes on after a failed round');
  t.ok(queries >= 3, 'each round asked again');
});

t.test('a node that owns nothing checks nothing', async (t) => {
  let queries = 0;
  const pool = { query: () => ((queries += 1), Promise.resolve([[]])) } as unknown as Pool;
  const monitor = new ConsistencyMonitor({
    primary: pool,
    replica: pool,
    cache: {
      getStocks: () => Promise.resolve(new Map()),
      repairStock: () => Promise.resolve(true),
      dropStockIfUnchanged: () => Promise.resolve(true),
    },
    owns: () => false,
    ownsAny: () => false,
    checkProjection: true,
    logger: silentLogger,
    intervalMs: 0,
  });
  monitor.committed(1, 5, 2);
  t.same((await monitor.round()).checked, []);
  t.equal(queries, 0, 'not a query');
});
