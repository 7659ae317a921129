import { buildApp } from './app.js';
import { ConfigError, loadConfig, type Config, type MysqlEndpoint } from './config.js';
import { loadNativeUws } from './http/uws.js';
import { openInfrastructure } from './infrastructure.js';
import { isConnectionError } from './errors.js';
import { createLogger, type Logger } from './logger.js';
import { migrate } from './storage/migrate.js';
import { sleep } from './timeouts.js';

/** MYSQL_MIGRATION_URL, moved to the current primary when it names one of the configured servers. */
function migrationEndpoint(config: Config, primary: MysqlEndpoint): MysqlEndpoint {
  const { migration } = config.mysql;
  const names = (endpoint: MysqlEndpoint) =>
    endpoint.host === migration.host && endpoint.port === migration.port;
  return names(config.mysql.primary) || names(config.mysql.replica)
    ? { ...migration, host: primary.host, port: primary.port }
    : migration;
}

/** How long a starting node waits for a MariaDB primary that refuses connections (a failover), ms. */
const STARTUP_PRIMARY_WAIT_MS = 60_000;
const STARTUP_RETRY_MS = 1_000;

/**
 * Runs `step` (discover the primary, migrate) again while the primary refuses connections: a node started
 * during a MariaDB failover comes up once a primary answers instead of exiting. Other errors, and a primary
 * still unreachable after STARTUP_PRIMARY_WAIT_MS, are fatal.
 */
async function untilPrimaryAnswers<T>(logger: Logger, step: () => Promise<T>): Promise<T> {
  const giveUpAt = Date.now() + STARTUP_PRIMARY_WAIT_MS;
  for (;;) {
    try {
      return await step();
    } catch (err) {
      if (!isConnectionError(err) || Date.now() >= giveUpAt) throw err;
      logger.warn(
        { err: (err as Error).message },
        'MariaDB primary unreachable at start (a failover?); retrying',
      );
      await sleep(STARTUP_RETRY_MS);
    }
  }
}

/** Composition root: config → logger → clients → migrations → HTTP; SIGTERM/SIGINT drain and close. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config);
  const uws = loadNativeUws({ fallbackRequested: config.uwsFallbackRequested });

  const infra = openInfrastructure(config, logger);
  // As the schema owner (MYSQL_MIGRATION_URL): the app's own user may not change the schema. On whichever
  // server is the primary now, when the migration URL names one of the two (after a failover: the other).
  const migrations = await untilPrimaryAnswers(logger, async () => {
    await infra.mysql.discover();
    return migrate(migrationEndpoint(config, infra.mysql.primaryEndpoint));
  });
  logger.info(
    {
      applied: migrations.applied.map((m) => `${m.version}_${m.name}`),
      alreadyApplied: migrations.alreadyApplied,
    },
    'schema migrations checked',
  );

  const app = buildApp({ config, logger, uws, infra });
  // Signals are handled from here on: a SIGTERM during start still drains and exits cleanly.
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal, inFlight: app.server.inFlight() }, 'shutting down: draining in-flight requests');
    void (async () => {
      const { drained, abandoned } = await app.stop(config.shutdownGraceMs);
      await infra.close();
      logger.info({ drained, abandoned }, 'stopped');
      process.exit(drained ? 0 : 1);
    })();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const port = await app.server.listen(config.host, config.port);
  logger.info({ url: `http://${config.host}:${port}` }, 'listening');
  await app.start(port);
}

main().catch((err: unknown) => {
  process.stderr.write(`fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
