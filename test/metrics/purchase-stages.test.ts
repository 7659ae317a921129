// The per-stage latency histogram of a purchase: one purchase through a running app is counted in every
// stage (queue, reserve_commit, payment, confirm_commit, reply) of purchase_stage_duration_seconds.
import t from 'tap';
import { PURCHASE_STAGES } from '../../src/domain/index.js';
import { startApp } from '../helpers/app.js';
import { uniq } from '../helpers/isolation.js';

/** The `_count` of each stage in the /metrics text. */
function stageCounts(text: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const match of text.matchAll(/^purchase_stage_duration_seconds_count\{stage="(\w+)"\} (\d+)$/gm))
    counts.set(match[1]!, Number(match[2]));
  return counts;
}

t.test('a confirmed purchase is counted in every stage', async (t) => {
  const running = await startApp(t);
  const before = stageCounts((await running.get('/metrics')).body as string);
  t.same([...before.keys()].sort(), [...PURCHASE_STAGES].sort(), 'every stage is listed before any purchase');
  t.ok(
    [...before.values()].every((n) => n === 0),
    'all at 0',
  );

  const productId = await running.createProduct({ stock: 10 });
  const answer = await running.purchase(productId, 1, uniq('user'), uniq('key'));
  t.equal(answer.status, 201);
  t.equal(answer.body.status, 'CONFIRMED', 'the saga ended before the answer (payment and confirm done)');

  const text = (await running.get('/metrics')).body as string;
  const after = stageCounts(text);
  for (const stage of PURCHASE_STAGES) t.equal(after.get(stage), 1, `${stage}: one purchase observed`);
  t.match(text, /# HELP purchase_stage_duration_seconds /);
  t.match(text, /purchase_stage_duration_seconds_bucket\{le="\+Inf",stage="reply"\} 1/);
});

t.test('out-of-stock purchases are not counted as reserved or committed', async (t) => {
  const running = await startApp(t);
  const productId = await running.createProduct({ stock: 0 });
  const answer = await running.purchase(productId, 1, uniq('user'), uniq('key'));
  t.equal(answer.status, 409);
  const after = stageCounts((await running.get('/metrics')).body as string);
  for (const stage of PURCHASE_STAGES) t.equal(after.get(stage), 0, `${stage}: nothing`);
});
