import type { Config } from './config.js';
import type { Logger } from './logger.js';
import { createKafka, KafkaProbe, type ServiceKafka } from './storage/kafka.js';
import { createMysqlPools, pingMysql, pingWritable, type MysqlPools } from './storage/mysql.js';
import { createRedis, pingRedis, type Redis } from './storage/redis.js';
import type { Dependency, DependencyCheck } from './readiness.js';

/** The clients of every server the service talks to, opened and closed together. */
export interface Infrastructure {
  readonly mysql: MysqlPools;
  readonly redis: Redis;
  readonly kafka: ServiceKafka;
  readonly checks: Readonly<Record<Dependency, DependencyCheck>>;
  close(): Promise<void>;
}

/**
 * Creates the clients without waiting for any server: a node starts (and reports not-ready) while a
 * dependency is down, and its clients reconnect when it comes back.
 */
export function openInfrastructure(config: Config, logger: Logger): Infrastructure {
  const mysql = createMysqlPools(config, logger.child({ component: 'mysql' }));
  const redis = createRedis(config, { lazyConnect: false });
  redis.on('error', (err: Error) =>
    logger.warn({ component: 'redis', err: err.message }, 'redis connection error'),
  );
  const kafka = createKafka(config, logger);
  const kafkaProbe = new KafkaProbe(config, logger);
  return {
    mysql,
    redis,
    kafka,
    checks: {
      primary: () => pingWritable(mysql.primary),
      replica: () => pingMysql(mysql.replica),
      redis: () => pingRedis(redis),
      kafka: () => kafkaProbe.ping(),
    },
    async close() {
      await Promise.allSettled([
        mysql.close(),
        redis.quit().catch(() => redis.disconnect()),
        kafkaProbe.close(),
      ]);
      // Last: the app's event clients have stopped (or were given up on at shutdown); what they left open ends.
      kafka.sockets.close();
    },
  };
}
