import fp from 'fastify-plugin';
import { Redis } from 'ioredis';
import type { Config } from '../config.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** The shared command connection, or null in single-node mode (no REDIS_URL). */
    redis: Redis | null;
  }
}

/**
 * Opens the Redis connection the node's state stores use. The Socket.IO adapter opens its own pair
 * (pub/sub connections cannot run commands). A Redis outage must never crash the node: errors are
 * logged and counted, ioredis keeps reconnecting, and readiness reports the dependency down.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    if (!config.redis) {
      app.decorate('redis', null);
      return;
    }
    const redis = createRedis(config.redis.url, app.log, 'state');
    app.decorate('redis', redis);
    app.lifecycle.addCheck('redis', async () => void (await redis.ping()));
    app.addHook('onClose', () => closeRedis(redis));
  },
  { name: 'redis', dependencies: ['lifecycle'] },
);

/** A Redis connection that logs its outages instead of throwing them at the process. */
export function createRedis(
  url: string,
  log: { warn: (obj: object, msg: string) => void },
  role: string,
  options: { maxRetriesPerRequest?: number | null } = {},
): Redis {
  const redis = new Redis(url, {
    connectionName: `chat-${role}`,
    // Fail commands fast while Redis is away instead of queueing them for ever; callers degrade.
    maxRetriesPerRequest: options.maxRetriesPerRequest === undefined ? 2 : options.maxRetriesPerRequest,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
    // Commands issued in one turn of the event loop (the fan-outs of one group-committed batch, the
    // presence lookups beside them) go out in one write.
    enableAutoPipelining: true,
  });
  let down = false;
  redis.on('error', (error: Error) => {
    if (!down) log.warn({ err: error, role }, 'redis connection error');
    down = true;
  });
  redis.on('ready', () => {
    if (down) log.warn({ role }, 'redis connection restored');
    down = false;
  });
  return redis;
}

/** Quits gracefully when connected; otherwise drops the connection at once instead of waiting for Redis. */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status === 'ready') await redis.quit().catch(() => redis.disconnect());
  else redis.disconnect();
}
