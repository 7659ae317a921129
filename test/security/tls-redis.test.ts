// Redis in the local stack as in production: TLS only (no plaintext port), every client authenticates
// (the `default` user is disabled), the app's ACL user may not administer the server, and the app's client
// verifies the server's certificate against its CA file.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { STACK_REDIS } from '../../scripts/stack/layout.js';
import { redisCommand } from '../../scripts/stack/redis.js';
import { STACK_PORTS } from '../../scripts/stack/stack.js';
import { loadConfig } from '../../src/config.js';
import { connectRedis, createRedis, pingRedis } from '../../src/storage/redis.js';

const execFileAsync = promisify(execFile);
const PORT = STACK_PORTS.redis;

/** What a plaintext client gets for `PING`: the bytes the server sends back before it closes. */
function plaintextPing(): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port: PORT });
    let received = '';
    const done = (how: string) => {
      socket.destroy();
      resolve(`${how}${received === '' ? '' : `: ${JSON.stringify(received)}`}`);
    };
    socket.setTimeout(3_000, () => done('no answer'));
    socket.once('connect', () => socket.write('*1\r\n$4\r\nPING\r\n'));
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    socket.once('error', (error: NodeJS.ErrnoException) => done(error.code ?? error.message));
    socket.once('end', () => done('closed'));
  });
}

void t.test(
  'a plaintext client is refused: no plaintext port, the TLS port never answers PING',
  async (t) => {
    const answer = await plaintextPing();
    t.notMatch(answer, /PONG|NOAUTH/, `plaintext PING to ${PORT}: ${answer}`);
    const plain = createRedis(
      loadConfig({ LOG_LEVEL: 'silent', REDIS_URL: `redis://flashsale:flashsale@127.0.0.1:${PORT}` }),
      {
        retryStrategy: () => null,
      },
    );
    plain.on('error', () => undefined);
    t.teardown(() => plain.disconnect());
    await t.rejects(connectRedis(plain), 'ioredis over plaintext does not get a connection');
  },
);

void t.test('over TLS, nothing without authentication', async (t) => {
  await t.rejects(redisCommand(PORT, ['PING'], { auth: null }), { message: /^NOAUTH/ }, 'no AUTH: NOAUTH');
  await t.rejects(
    redisCommand(PORT, ['GET', 'fs:anything'], { auth: null }),
    { message: /^NOAUTH/ },
    'no AUTH: no reads either',
  );
  await t.rejects(
    redisCommand(PORT, ['PING'], { auth: [STACK_REDIS.user, 'wrong-password'] }),
    { message: /^WRONGPASS/ },
    'a wrong password: WRONGPASS',
  );
  await t.rejects(
    redisCommand(PORT, ['PING'], { auth: ['default', ''] }),
    { message: /^WRONGPASS/ },
    'the default user is disabled',
  );
  t.equal(await redisCommand(PORT, ['ACL', 'WHOAMI']), STACK_REDIS.user, "the app's credentials work");
});

void t.test("the app's client: TLS with its credentials; no administration", async (t) => {
  const config = loadConfig({ LOG_LEVEL: 'silent' });
  t.match(config.redis.url, /^rediss:\/\/flashsale:/, 'the default REDIS_URL is TLS with the app user');
  const redis = createRedis(config);
  t.teardown(() => redis.disconnect());
  await connectRedis(redis);
  await pingRedis(redis);
  t.equal(await redis.call('ACL', 'WHOAMI'), STACK_REDIS.user, 'connected as the app user');
  t.equal((redis as unknown as { stream: { encrypted?: boolean } }).stream.encrypted, true, 'over TLS');
  for (const command of [
    ['CONFIG', 'GET', 'port'],
    ['FLUSHALL'],
    ['SHUTDOWN'],
    ['ACL', 'LIST'],
    ['REPLICAOF', 'NO', 'ONE'],
  ]) {
    await t.rejects(
      redis.call(command[0]!, ...command.slice(1)),
      { message: /^NOPERM/ },
      `${command.join(' ')}: NOPERM`,
    );
  }
});

void t.test("the app's client verifies the server's certificate and needs its CA file", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flashsale-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const foreignCa = join(dir, 'foreign-ca.pem');
  await execFileAsync('openssl', [
    ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=someone else'],
    ...['-keyout', join(dir, 'foreign-ca.key'), '-out', foreignCa],
  ]);
  // One node named by REDIS_URL (no Sentinels): the TLS error itself comes back.
  const foreign = createRedis(
    loadConfig({
      LOG_LEVEL: 'silent',
      REDIS_URL: `rediss://flashsale:flashsale@127.0.0.1:${PORT}`,
      REDIS_TLS_CA_FILE: foreignCa,
    }),
    { retryStrategy: () => null },
  );
  t.teardown(() => foreign.disconnect());
  await t.rejects(
    connectRedis(foreign),
    { message: /self.signed|unable to verify|certificate/i },
    'a server whose certificate the configured CA did not sign is refused',
  );
  // Through the Sentinels (the default): they are refused the same way, so no primary is ever reached.
  const foreignViaSentinels = createRedis(loadConfig({ LOG_LEVEL: 'silent', REDIS_TLS_CA_FILE: foreignCa }), {
    sentinelRetryStrategy: () => null,
  });
  t.teardown(() => foreignViaSentinels.disconnect());
  await t.rejects(
    connectRedis(foreignViaSentinels),
    { message: /sentinels are unreachable/i },
    'Sentinels whose certificate the configured CA did not sign are refused',
  );
  t.throws(
    () => createRedis(loadConfig({ LOG_LEVEL: 'silent', REDIS_TLS_CA_FILE: join(dir, 'nowhere.pem') })),
    { message: /^REDIS_TLS_CA_FILE=.*nowhere\.pem.*no such file.*redis:\/\// },
    'a missing CA file is an error naming the setting',
  );

  const viaSentinels = createRedis(loadConfig({ LOG_LEVEL: 'silent', REDIS_SENTINELS: '127.0.0.1:1' }));
  t.teardown(() => viaSentinels.disconnect());
  t.match(
    viaSentinels.options,
    {
      enableTLSForSentinelMode: true,
      tls: { rejectUnauthorized: true },
      sentinelTLS: { rejectUnauthorized: true },
    },
    'through Sentinel, TLS to the sentinels and to the data nodes they name',
  );
});
