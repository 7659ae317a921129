import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { ConfigError, loadConfig } from '../../src/config.js';
import { startApp } from '../helpers/app.js';
import { uniq } from '../helpers/isolation.js';

const run = promisify(execFile);

/** `npm run -s token -- …` exactly as the README shows it. */
const token = (...args: string[]) => run('npm', ['run', '-s', 'token', '--', ...args], { timeout: 60_000 });

t.test('npm run -s token prints only a JWT the service accepts, with its role', async (t) => {
  const running = await startApp(t);
  const productId = await running.createProduct({ stock: 3 });
  const user = uniq('cli');
  const { stdout, stderr } = await token('--sub', user, '--role', 'customer');
  t.match(stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/, 'one line: the token');
  t.equal(stderr, '');
  const bought = await running.post(
    '/purchases',
    { productId, quantity: 1 },
    { authorization: `Bearer ${stdout.trim()}`, 'idempotency-key': 'k' },
  );
  t.equal(bought.status, 201);
  t.match(
    (await running.get(`/orders/${bought.body.orderId}`, { authorization: `Bearer ${stdout.trim()}` })).body,
    {
      userId: user,
    },
  );

  const admin = (await token('--sub', 'ops', '--role', 'admin')).stdout.trim();
  const restock = await running.post(
    `/products/${productId}/restock`,
    { quantity: 1 },
    { authorization: `Bearer ${admin}` },
  );
  t.equal(restock.status, 200, 'an admin token restocks');

  const expired = (await token('--sub', user, '--role', 'customer', '--ttl-s', '-120')).stdout.trim();
  const refused = await running.get(`/orders/${bought.body.orderId}`, { authorization: `Bearer ${expired}` });
  t.equal(refused.status, 401, 'a negative --ttl-s is an expired token');
  t.match(refused.body, { error: { message: /expired/ } });
});

t.test('bad arguments exit 2 with the usage on stderr and nothing on stdout', async (t) => {
  for (const args of [
    [],
    ['--sub', 'a'],
    ['--sub', 'a', '--role', 'root'],
    ['--sub', 'a b', '--role', 'admin'],
    ['--bogus'],
  ]) {
    const failed = await token(...args).then(
      () => undefined,
      (err: { code: number; stdout: string; stderr: string }) => err,
    );
    t.equal(failed?.code, 2, `${args.join(' ') || '(none)'}: exit 2`);
    t.equal(failed?.stdout, '');
    t.match(failed?.stderr, /usage: npm run -s token/);
  }
});

t.test('NODE_ENV=production refuses the built-in PEER_SECRET', async (t) => {
  t.throws(() => loadConfig({ NODE_ENV: 'production' }), ConfigError);
  t.throws(() => loadConfig({ NODE_ENV: 'production' }), {
    message: /PEER_SECRET is the built-in local value/,
  });
  t.throws(() => loadConfig({ NODE_ENV: 'production', PEER_SECRET: 'short' }), { message: /at least 16/ });
  t.equal(
    loadConfig({ NODE_ENV: 'production', PEER_SECRET: 'a-long-secret-of-the-cluster' }).production,
    true,
  );
  t.equal(loadConfig({}).production, false, 'locally the default secret is fine');
});
