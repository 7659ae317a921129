// GET /stats/products/:id over a real uWS server and the real product_sales table.
import t from 'tap';
import { request } from 'undici';
import { loadConfig } from '../../src/config.js';
import { statsRoutes } from '../../src/http/stats.js';
import { migrate } from '../../src/storage/migrate.js';
import { createMysqlPools } from '../../src/storage/mysql.js';
import { uniqueProductId } from '../helpers/events.js';
import { startServer } from '../helpers/http.js';
import { asAdmin } from '../helpers/tokens.js';
import { TokenVerifier } from '../../src/auth/tokens.js';

void t.test('GET /stats/products/:id', async (t) => {
  const config = loadConfig({ MYSQL_POOL_SIZE: '2' });
  await migrate(config.mysql.migration);
  const mysql = createMysqlPools(config);
  t.teardown(() => mysql.close());
  const { base } = await startServer(t, statsRoutes({ pool: mysql.primary }), {
    tokens: new TokenVerifier({ auth: config.auth }),
  });
  const admin = await asAdmin();
  const get = async (path: string) => {
    const res = await request(`${base}${path}`, { headers: admin });
    return { status: res.statusCode, body: (await res.body.json()) as any };
  };
  const sold = uniqueProductId();
  t.teardown(() => mysql.primary.query('DELETE FROM product_sales WHERE product_id = ?', [sold]));
  await mysql.primary.query(
    `INSERT INTO product_sales (product_id, confirmed_orders, confirmed_quantity, revenue_cents,
       cancelled_orders, cancelled_quantity, updated_at) VALUES (?, 3, 5, 12500, 1, 2, '2030-01-02 03:04:05.678')`,
    [sold],
  );

  t.same(await get(`/stats/products/${sold}`), {
    status: 200,
    body: {
      productId: sold,
      confirmedOrders: 3,
      soldQuantity: 5,
      revenueCents: 12_500,
      cancelledOrders: 1,
      cancelledQuantity: 2,
      updatedAt: '2030-01-02T03:04:05.678Z',
    },
  });

  const none = uniqueProductId();
  t.same(
    await get(`/stats/products/${none}`),
    {
      status: 200,
      body: {
        productId: none,
        confirmedOrders: 0,
        soldQuantity: 0,
        revenueCents: 0,
        cancelledOrders: 0,
        cancelledQuantity: 0,
        updatedAt: null,
      },
    },
    'zeros before the first sale',
  );

  for (const bad of ['abc', '0', '-1', '1.5', '99999999999999999']) {
    const answer = await get(`/stats/products/${bad}`);
    t.equal(answer.status, 400, `${bad}: 400`);
    t.match(answer.body, { error: { code: 'VALIDATION_FAILED', field: 'id' } }, `${bad}: names the field`);
  }
});
