import t from 'tap';
import { startApp } from '../helpers/app.js';
import { uniq } from '../helpers/isolation.js';
import { totals } from '../helpers/database.js';
import { sleep } from '../../src/timeouts.js';

t.test('messages arriving while actors passivate are all answered, and totals stay exact', async (t) => {
  // Actors passivate after 15 ms idle; waves of purchases arrive with gaps around that time.
  const running = await startApp(t, { ACTOR_PASSIVATE_AFTER_MS: '15' });
  const products = await Promise.all([1, 2, 3].map(() => running.createProduct({ stock: 300 })));
  const user = uniq('u');
  let sent = 0;
  const answers: { status: number; productId: number; quantity: number }[] = [];
  for (let wave = 0; wave < 40; wave += 1) {
    const batch = products.flatMap((productId) =>
      Array.from({ length: 5 }, () => {
        const quantity = 1 + (sent % 3);
        const key = `k${(sent += 1)}`;
        return running
          .purchase(productId, quantity, user, key)
          .then((a) => answers.push({ status: a.status, productId, quantity }));
      }),
    );
    await Promise.all(batch);
    await sleep(wave % 3 === 0 ? 25 : wave % 3 === 1 ? 10 : 0);
  }
  t.equal(answers.length, sent, 'every purchase was answered');
  const { activations } = running.app.actors.stats();
  t.ok(
    activations > products.length * 5,
    `actors passivated and came back between waves (${activations} activations)`,
  );
  t.same(
    [...new Set(answers.map((a) => a.status))].filter((s) => s !== 201 && s !== 409),
    [],
    'only 201 and 409',
  );
  for (const productId of products) {
    const sold = answers
      .filter((a) => a.productId === productId && a.status === 201)
      .reduce((s, a) => s + a.quantity, 0);
    const db = await totals(running.infra.mysql.primary, productId);
    t.equal(db.sold, sold, `product ${productId}: every 201 is an order`);
    t.equal(db.stock + db.sold, 300, `product ${productId}: stock + sold = initial`);
  }
  const metrics = await running.get('/metrics');
  t.match(metrics.body, /product_batch_size_count \d+/);
});
