import t from 'tap';
import { checkReadiness } from '../src/readiness.js';

const up = () => Promise.resolve();

t.test('ready when every check answers', async (t) => {
  const r = await checkReadiness({ primary: up, replica: up, redis: up, kafka: up }, 100);
  t.equal(r.ready, true);
  t.same(r.down, []);
});

t.test('names each dependency that fails or does not answer in time', async (t) => {
  const hang = () => new Promise<void>(() => undefined);
  const fail = () => Promise.reject(new Error('connection refused'));
  const started = Date.now();
  const r = await checkReadiness({ primary: up, replica: hang, redis: fail, kafka: up }, 100);
  t.ok(Date.now() - started < 1000, 'a hanging check is cut at the timeout');
  t.equal(r.ready, false);
  t.same(r.down, ['replica', 'redis']);
  t.match(r.dependencies.redis, { status: 'down', error: 'connection refused' });
  t.match(r.dependencies.replica, { status: 'down', error: /longer than 100 ms/ });
});
