import { buildApp } from './app.js';
import { ConfigError, loadConfig, type Config, type MysqlEndpoint } from './config.js';
import { loadNativeUws } from './http/uws.js';
import { openInfrastructure } from './infrastructure.js';
import { createLogger } from './logger.js';
import { migrate } from './storage/migrate.js';

/** MYSQL_MIGRATION_URL, moved to the current primary when it names one of the configured servers. */
function migrationEndpoint(config: Config, primary: MysqlEndpoint): MysqlEndpoint {
  const { migration } = config.mysql;
  const names = (endpoint: MysqlEndpoint) =>
    endpoint.host === migration.host && endpoint.port === migration.port;
  return names(config.mysql.primary) || names(config.mysql.replica)
    ? { ...migration, host: primary.host, port: primary.port }
    : migration;
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
  await infra.mysql.discover();
  const migrations = await migrate(migrationEndpoint(config, infra.mysql.primaryEndpoint));
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
