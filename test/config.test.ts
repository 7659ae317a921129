import t from 'tap';
import { CONFIG_ENV_NAMES, ConfigError, loadConfig } from '../src/config.js';

t.test('defaults point at the local stack and are frozen', async (t) => {
  const config = loadConfig({});
  t.equal(config.port, 8080);
  t.equal(config.host, '127.0.0.1');
  t.same(config.mysql.primary, {
    host: '127.0.0.1',
    port: 13306,
    user: 'flashsale',
    password: 'flashsale',
    database: 'flashsale',
    tls: { caFile: '.stack/tls/ca.pem' },
  });
  t.equal(config.mysql.replica.port, 13307);
  t.same(config.mysql.replica.tls, { caFile: '.stack/tls/ca.pem' }, 'TLS to the replica too');
  t.same(
    config.mysql.migration,
    { ...config.mysql.primary, user: 'flashsale_migrate', password: 'flashsale_migrate' },
    "migrations run as the stack's schema owner, on the primary's database",
  );
  t.equal(config.redis.url, 'rediss://flashsale:flashsale@127.0.0.1:16379');
  t.same(config.redis.tls, { caFile: '.stack/tls/ca.pem' });
  t.same(
    config.redis.sentinels,
    [16381, 16382, 16383].map((port) => ({ host: '127.0.0.1', port })),
    "the local stack's Redis through its three Sentinels",
  );
  t.same(
    loadConfig({ REDIS_URL: 'rediss://app:pw@redis-1:6379' }).redis.sentinels,
    [],
    'REDIS_URL alone names a single node',
  );
  t.same(config.kafka.brokers, ['127.0.0.1:19092', '127.0.0.1:19192', '127.0.0.1:19292']);
  t.equal(config.kafka.replicationFactor, 3, 'topics on the three local brokers');
  t.ok(Object.isFrozen(config));
  t.ok(Object.isFrozen(config.mysql.primary));
  t.throws(() => {
    (config as { port: number }).port = 1;
  }, TypeError);
});

t.test('values from the environment are parsed', async (t) => {
  const config = loadConfig({
    PORT: '9000',
    NODE_ID: 'node-a',
    MYSQL_PRIMARY_URL: 'mysql://app:p%40ss@db1:3307/shop',
    REDIS_SENTINELS: 's1:26379, s2:26379,s3:26379',
    KAFKA_BROKERS: 'k1:9092,k2:9092',
    LOG_LEVEL: 'debug',
  });
  t.equal(config.port, 9000);
  t.equal(config.nodeId, 'node-a');
  t.same(config.mysql.primary, {
    host: 'db1',
    port: 3307,
    user: 'app',
    password: 'p@ss',
    database: 'shop',
    tls: { caFile: '.stack/tls/ca.pem' },
  });
  t.match(config.mysql.migration, { host: 'db1', port: 3307, user: 'flashsale_migrate', database: 'shop' });
  t.same(config.redis.sentinels, [
    { host: 's1', port: 26379 },
    { host: 's2', port: 26379 },
    { host: 's3', port: 26379 },
  ]);
  t.same(config.kafka.brokers, ['k1:9092', 'k2:9092']);
  t.equal(config.kafka.replicationFactor, 2, 'replication follows the brokers listed');
  t.equal(config.logLevel, 'debug');
  t.equal(config.outbox.relayLock, 'flashsale.outbox-relay.shop', 'the relay lock names the database');
});

t.test('TLS and the migration user: settings, plaintext switches, and their checks', async (t) => {
  const config = loadConfig({
    MYSQL_PRIMARY_URL: 'mysql://app:pw@db1:3306/shop',
    MYSQL_MIGRATION_URL: 'mysql://owner:s%40cret@db1-direct:3306/shop',
    MYSQL_TLS_CA_FILE: '/run/secrets/ca.pem',
    REDIS_URL: 'rediss://app:pw@redis-1:6379/0',
    REDIS_TLS_CA_FILE: '/run/secrets/redis-ca.pem',
  });
  t.same(config.mysql.migration, {
    host: 'db1-direct',
    port: 3306,
    user: 'owner',
    password: 's@cret',
    database: 'shop',
    tls: { caFile: '/run/secrets/ca.pem' },
  });
  t.same(config.mysql.replica.tls, { caFile: '/run/secrets/ca.pem' });
  t.same(config.redis.tls, { caFile: '/run/secrets/redis-ca.pem' });

  const plaintext = loadConfig({ MYSQL_TLS: 'off', REDIS_URL: 'redis://:pw@127.0.0.1:6379' });
  t.equal(plaintext.mysql.primary.tls, null, 'MYSQL_TLS=off: plaintext to MySQL');
  t.equal(plaintext.mysql.replica.tls, null);
  t.equal(plaintext.mysql.migration.tls, null);
  t.equal(plaintext.redis.tls, null, 'a redis:// URL: plaintext to Redis');

  const err = t.throws(() =>
    loadConfig({ MYSQL_TLS: 'maybe', MYSQL_MIGRATION_URL: 'mysql://owner:pw@127.0.0.1:13306/other' }),
  ) as ConfigError;
  t.match(err.message, /MYSQL_TLS="maybe": expected one of on, off/);
  t.match(err.message, /MYSQL_MIGRATION_URL names database "other"/, 'migrations go to the app database');
});

t.test('the relay lock must be a MySQL lock name (1 to 64 characters)', async (t) => {
  t.equal(loadConfig({ OUTBOX_RELAY_LOCK: 'mine' }).outbox.relayLock, 'mine');
  const err = t.throws(() => loadConfig({ OUTBOX_RELAY_LOCK: 'x'.repeat(65) })) as ConfigError;
  t.match(err.message, 'OUTBOX_RELAY_LOCK');
  t.equal(loadConfig({ PROJECTION_GROUP_ID: 'g1' }).projection.groupId, 'g1');
});

t.test('REDIS_NAT_MAP: reported address = reached address, each bad entry named once', async (t) => {
  t.same(loadConfig({}).redis.natMap, {}, 'none by default');
  t.same(
    loadConfig({ REDIS_NAT_MAP: '10.0.0.5:6379=127.0.0.1:40001, redis-2:6379=[::1]:40002' }).redis.natMap,
    { '10.0.0.5:6379': { host: '127.0.0.1', port: 40001 }, 'redis-2:6379': { host: '[::1]', port: 40002 } },
  );
  const err = t.throws(() =>
    loadConfig({ REDIS_NAT_MAP: 'a:1=b:2,nohostport=b:2,a:1=b:99999,a:1=b:2=c:3,a:1' }),
  ) as ConfigError;
  t.equal(err.problems.length, 4, err.message);
  for (const item of ['nohostport=b:2', 'a:1=b:99999', 'a:1=b:2=c:3', '"a:1"'])
    t.match(err.message, item, `names ${item}`);
  t.match(err.message, /REDIS_NAT_MAP: .* is not host:port=host:port/);
});

t.test('one error lists every bad setting, each by name', async (t) => {
  const err = t.throws(() =>
    loadConfig({
      PORT: 'eighty',
      MYSQL_POOL_SIZE: '0',
      MYSQL_REPLICA_URL: 'postgres://x@y/z',
      REDIS_URL: 'http://localhost',
      KAFKA_BROKERS: 'nohostport',
      LOG_LEVEL: 'loud',
      SHUTDOWN_GRACE_MS: '1.5',
    }),
  ) as ConfigError;
  t.type(err, ConfigError);
  const names = [
    'PORT',
    'MYSQL_POOL_SIZE',
    'MYSQL_REPLICA_URL',
    'REDIS_URL',
    'KAFKA_BROKERS',
    'LOG_LEVEL',
    'SHUTDOWN_GRACE_MS',
  ];
  t.equal(err.problems.length, names.length, err.message);
  for (const name of names) t.match(err.message, name, `message names ${name}`);
});

t.test('every variable read is listed in CONFIG_ENV_NAMES', async (t) => {
  const read = new Set<string>();
  const env = new Proxy(
    {},
    {
      get(_target, name) {
        if (typeof name === 'string') read.add(name);
        return undefined;
      },
    },
  );
  loadConfig(env);
  t.same([...read].sort(), [...CONFIG_ENV_NAMES].sort());
});

t.test('Kafka SASL and TLS: a mechanism needs its credentials; TLS names its CA', async (t) => {
  t.same(loadConfig({}).kafka.sasl, null, 'the local stack: no SASL');
  t.same(loadConfig({}).kafka.tls, null, 'the local stack: PLAINTEXT');
  t.throws(() => loadConfig({ KAFKA_SASL_MECHANISM: 'scram-sha-512' }), {
    message: /KAFKA_SASL_MECHANISM=scram-sha-512 needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD/,
  });
  t.throws(() => loadConfig({ KAFKA_SASL_MECHANISM: 'gssapi' }), { message: /KAFKA_SASL_MECHANISM/ });
  const config = loadConfig({
    KAFKA_SASL_MECHANISM: 'scram-sha-512',
    KAFKA_SASL_USERNAME: 'app',
    KAFKA_SASL_PASSWORD: 'pw',
    KAFKA_TLS: 'on',
    KAFKA_TLS_CA_FILE: '/etc/ca.pem',
  });
  t.same(config.kafka.sasl, { mechanism: 'scram-sha-512', username: 'app', password: 'pw' });
  t.same(config.kafka.tls, { caFile: '/etc/ca.pem' });
});
