// The stack's Redis restarted as a whole (both data nodes stopped, then started while the Sentinels run): the
// primary stays the primary, the other comes back as its replica, and what scripts and transactions wrote
// survives in the AOF. Runs serially with the other fault tests (it restarts the stack's Redis).
import t from 'tap';
import { STACK_PORTS, STACK_REDIS, STACK_REDIS_NODES } from '../../scripts/stack/layout.js';
import {
  redisCommand,
  redisPrimaryPort,
  redisQuery,
  redisRole,
  replyField,
} from '../../scripts/stack/redis.js';
import { waitUntil } from '../../scripts/stack/process.js';
import { REDIS_DATA_NODES, startServers, stopServers } from '../../scripts/stack/stack.js';
import { loadConfig } from '../../src/config.js';
import { connectRedis, createRedis } from '../../src/storage/redis.js';

const [first, second] = STACK_REDIS_NODES.map((node) => node.port) as [number, number];
const [SENTINEL] = STACK_PORTS.sentinels;

/** The Sentinels' configuration epoch of the primary: every failover raises it. */
async function configEpoch(): Promise<number> {
  const fields = await redisQuery(SENTINEL, ['SENTINEL', 'MASTER', STACK_REDIS.masterName], { auth: null });
  const epoch = replyField(fields, 'config-epoch');
  if (epoch === undefined) throw new Error(`SENTINEL MASTER gave no config-epoch: ${JSON.stringify(fields)}`);
  return Number(epoch);
}

t.test('both data nodes restarted under running Sentinels: no failover, no write lost', async (t) => {
  t.teardown(() => startServers(REDIS_DATA_NODES));
  // The start order matters most when the primary is the node the stack lists second: make it so.
  if ((await redisPrimaryPort()) === first) {
    await redisCommand(SENTINEL, ['SENTINEL', 'FAILOVER', STACK_REDIS.masterName], { auth: null });
    await waitUntil(async () => (await redisPrimaryPort()) === second, {
      what: 'the Sentinels promote the second node',
      timeoutMs: 20_000,
    });
    await waitUntil(async () => (await redisRole(first)) === 'slave', {
      what: 'the first node follows it',
      timeoutMs: 20_000,
    });
  }
  const primary = await redisPrimaryPort();
  const epochBefore = await configEpoch();

  // Writes a plain command, a script and a transaction each make (Redis 7 logs scripts as MULTI/EXEC).
  const redis = createRedis(loadConfig({ LOG_LEVEL: 'silent' }));
  t.teardown(() => redis.disconnect());
  await connectRedis(redis);
  const key = `test:restart:${process.pid}:${Date.now()}`;
  await redis.set(`${key}:plain`, 'plain');
  await redis.eval("redis.call('SET', KEYS[1], ARGV[1]) return 1", 1, `${key}:script`, 'script');
  await redis.multi().set(`${key}:multi`, 'multi').incr(`${key}:counter`).exec();
  redis.disconnect();

  await stopServers(REDIS_DATA_NODES);
  await new Promise((r) => setTimeout(r, 1_500)); // the Sentinels see the primary down and try to fail over
  await startServers(REDIS_DATA_NODES);

  t.equal(await redisPrimaryPort(), primary, 'the Sentinels still name the same primary');
  t.equal(await redisRole(primary), 'master', 'it acts as the primary');
  const other = primary === first ? second : first;
  await waitUntil(async () => (await redisRole(other)) === 'slave', {
    what: 'the other node replicates',
    timeoutMs: 10_000,
  });
  t.pass('the other node came back as its replica');

  const after = createRedis(loadConfig({ LOG_LEVEL: 'silent' }));
  t.teardown(() => after.disconnect());
  await connectRedis(after);
  t.same(
    await after.mget(`${key}:plain`, `${key}:script`, `${key}:multi`, `${key}:counter`),
    ['plain', 'script', 'multi', '1'],
    'a plain write, a script write and a transaction are all back from the AOF',
  );
  await after.del(`${key}:plain`, `${key}:script`, `${key}:multi`, `${key}:counter`);

  // Every failover raises the epoch; a restart must not cause any (the start-up order used to).
  t.equal(await configEpoch(), epochBefore, 'no failover happened: the configuration epoch is unchanged');
});
