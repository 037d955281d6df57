import fp from 'fastify-plugin';
import type { Config } from '../config.ts';
import { createStateStores, type StateStores } from '../state/index.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Cluster state that may be lost and rebuilt: presence, typing, rate limits. Redis-backed in a cluster. */
    state: StateStores;
  }
}

export default fp<{ config: Config }>(
  async (app, { config }) => {
    app.decorate(
      'state',
      createStateStores({
        ...(app.redis && { redis: app.redis }),
        keyPrefix: stateKeyPrefix(config),
        presence: { nodeTtlMs: config.presence.nodeTtlMs },
        rateLimitSyncMs: config.rateLimits.syncIntervalMs,
        onRateLimitSettleFailed: (error) => {
          app.metrics.rateLimiterFailures.inc();
          app.log.warn({ err: error }, 'rate limits: could not settle with the shared buckets; each node enforces its own copy meanwhile');
        },
      }),
    );
  },
  { name: 'state', dependencies: ['redis', 'metrics'] },
);

/** Where the state stores' Redis keys live. */
export function stateKeyPrefix(config: Config): string {
  return `${config.redis?.keyPrefix ?? 'chat:'}state:`;
}
