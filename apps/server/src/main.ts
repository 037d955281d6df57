import { buildApp } from './app.ts';
import { loadConfig, type Config } from './config.ts';
import { ConfigError } from './config-errors.ts';
import { createLogger } from './logger.ts';
import type { DrainRequest } from './plugins/lifecycle.ts';
import { verifyClusterSeeds } from './plugins/redis.ts';
import { drainAndClose } from './shutdown.ts';

/**
 * The process: configuration, logging, listening, signals. Everything else is in app.ts.
 * Exit codes: 0 after a clean drain, 1 on a start-up failure or a drain past SHUTDOWN_TIMEOUT_MS,
 * 78 (EX_CONFIG) on bad configuration.
 */
function exitOnConfigError(error: unknown): never {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`${error.message}\n`);
  process.exit(78);
}

let config: Config;
try {
  config = loadConfig();
} catch (error) {
  exitOnConfigError(error);
}

const log = createLogger(config);
if (config.redis?.target.kind === 'cluster') {
  const { warnings } = await verifyClusterSeeds(config.redis.target).catch(exitOnConfigError);
  for (const warning of warnings) log.warn(`REDIS_CLUSTER_NODES: ${warning}; the cluster is reached through the other seeds`);
}
log.info(
  {
    database: config.database.kind,
    cluster: config.redis ? (config.redis.target.kind === 'cluster' ? 'redis-cluster' : 'redis') : 'memory',
    env: config.env,
  },
  config.database.kind === 'pglite' && !config.redis
    ? `embedded mode: PGlite database in ${config.database.dataDir}, in-memory adapter and state (single node; set DATABASE_URL and REDIS_URL or REDIS_CLUSTER_NODES for a cluster)`
    : `cluster mode: ${config.database.kind === 'postgres' ? 'PostgreSQL' : 'embedded PGlite'} and ${config.redis ? (config.redis.target.kind === 'cluster' ? 'Redis Cluster' : 'Redis') : 'in-memory state'}`,
);

process.on('unhandledRejection', (reason) => log.error({ err: reason }, 'unhandled rejection'));

const app = await buildApp(config, log).catch((error: unknown) => {
  log.fatal({ err: error }, 'start-up failed');
  process.exit(1);
});

let stopping = false;
/** The one drain of the process: SIGTERM, SIGINT, or an operator's request through the admin API. */
async function stop(cause: { signal: NodeJS.Signals } | { drainRequest: DrainRequest }): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ ...cause, timeoutMs: config.shutdown.timeoutMs }, 'shutting down');
  const deadline = setTimeout(() => {
    log.error({ inflight: app.lifecycle.inflight }, 'drain exceeded SHUTDOWN_TIMEOUT_MS; exiting');
    process.exit(1);
  }, config.shutdown.timeoutMs);
  deadline.unref();
  try {
    await drainAndClose(app);
    log.info('drained; bye');
    process.exit(0);
  } catch (error) {
    log.error({ err: error }, 'drain failed');
    process.exit(1);
  }
}
process.on('SIGTERM', (signal) => void stop({ signal }));
process.on('SIGINT', (signal) => void stop({ signal }));
app.lifecycle.onDrainRequested((drainRequest) => void stop({ drainRequest }));

try {
  await app.listen({ host: config.host, port: config.port });
} catch (error) {
  log.fatal({ err: error }, 'listen failed');
  process.exit(1);
}
