import { backoffDelay } from '@chat/protocol';
import fp from 'fastify-plugin';
import { Cluster, Redis } from 'ioredis';
import type { Config, RedisTarget } from '../config.ts';
import { ConfigError } from '../config-errors.ts';
import type { RedisClient } from '../state/redis-client.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** The shared command connection, or null in single-node mode (no REDIS_URL or REDIS_CLUSTER_NODES). */
    redis: RedisClient | null;
  }
}

/**
 * Opens the Redis connection the node's state stores use. The Socket.IO adapter opens its own pair
 * (pub/sub connections cannot run commands). A Redis outage must never crash the node: errors are
 * logged and counted, ioredis keeps reconnecting, and readiness reports the dependency down; on a
 * Redis Cluster, readiness also fails while the cluster reports itself down (a master lost and its
 * replica not yet promoted).
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    if (!config.redis) {
      app.decorate('redis', null);
      return;
    }
    const redis = createRedis(config.redis.target, app.log, 'state');
    app.decorate<RedisClient | null>('redis', redis);
    app.lifecycle.addCheck('redis', async () => {
      if (!(redis instanceof Cluster)) return void (await redis.ping());
      const info = (await redis.cluster('INFO')) as string;
      if (!info.includes('cluster_state:ok')) throw new Error('Redis Cluster reports cluster_state:fail (a master is down; failover pending)');
    });
    app.addHook('onClose', () => closeRedis(redis));
  },
  { name: 'redis', dependencies: ['lifecycle'] },
);

export interface RedisRoleOptions {
  /** ioredis' retries per command while disconnected; null waits for ever (subscriber connections). @default 2 */
  maxRetriesPerRequest?: number | null;
  /** On a Redis Cluster: one subscriber connection per master, for SSUBSCRIBE (sharded pub/sub). */
  shardedSubscribers?: boolean;
}

/** A Redis (or Redis Cluster) connection that logs its outages instead of throwing them at the process. */
/** Reconnect delays: 100–200 ms after the first failure, doubling up to 1–2 s. */
const REDIS_RECONNECT = { initialMs: 200, maxMs: 2000 };

export function createRedis(target: RedisTarget, log: { warn: (obj: object, msg: string) => void }, role: string, options: RedisRoleOptions = {}): RedisClient {
  const maxRetriesPerRequest = options.maxRetriesPerRequest === undefined ? 2 : options.maxRetriesPerRequest;
  // Jittered, so replicas that lost Redis together do not reconnect in lockstep.
  const retryStrategy = (attempt: number) => backoffDelay(attempt, REDIS_RECONNECT);
  const redis: RedisClient =
    target.kind === 'single'
      ? new Redis(target.url, {
          connectionName: `chat-${role}`,
          // Fail commands fast while Redis is away instead of queueing them for ever; callers degrade.
          maxRetriesPerRequest,
          retryStrategy,
          // Commands issued in one turn of the event loop (the fan-outs of one group-committed batch, the
          // presence lookups beside them) go out in one write.
          enableAutoPipelining: true,
        })
      : new Cluster(target.nodes, {
          redisOptions: {
            connectionName: `chat-${role}`,
            maxRetriesPerRequest,
            ...(target.username && { username: target.username }),
            ...(target.password && { password: target.password }),
            ...(target.tls && { tls: {} }),
          },
          clusterRetryStrategy: retryStrategy,
          // A command to a slot whose master just died is retried while the replica is promoted
          // (cluster-node-timeout plus the election), then fails: callers degrade as on an outage.
          retryDelayOnFailover: 200,
          retryDelayOnClusterDown: 200,
          retryDelayOnTryAgain: 200,
          slotsRefreshTimeout: 2000,
          enableAutoPipelining: true,
          shardedSubscribers: options.shardedSubscribers ?? false,
        });
  let down = false;
  const onError = (error: Error) => {
    if (!down) log.warn({ err: error, role }, 'redis connection error');
    down = true;
  };
  redis.on('error', onError);
  if (redis instanceof Cluster) redis.on('node error', onError);
  redis.on('ready', () => {
    if (down) log.warn({ role }, 'redis connection restored');
    down = false;
  });
  return redis;
}

/** Quits gracefully when connected; otherwise drops the connection at once instead of waiting for Redis. */
export async function closeRedis(redis: RedisClient): Promise<void> {
  if (redis.status === 'ready') await redis.quit().catch(() => redis.disconnect());
  else redis.disconnect();
}

/**
 * Checks REDIS_CLUSTER_NODES before the node starts, so a wrong value stops it with one line (a
 * ConfigError, exit 78) instead of a node that never becomes ready: at least one seed must answer,
 * every seed that answers must be a cluster node (not a standalone Redis), and all of them members
 * of the same cluster. A seed that does not answer while others do is reported in `warnings` and
 * tolerated: a node may start while one Redis node is down for a failover.
 */
export async function verifyClusterSeeds(target: Extract<RedisTarget, { kind: 'cluster' }>, timeoutMs = 3000): Promise<{ warnings: string[] }> {
  const warnings: string[] = [];
  const members: Array<{ seed: string; id: string; known: Set<string> }> = [];
  for (const { host, port } of target.nodes) {
    const seed = `${host}:${port}`;
    const client = new Redis({
      host,
      port,
      lazyConnect: true,
      connectTimeout: timeoutMs,
      commandTimeout: timeoutMs,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      ...(target.username && { username: target.username }),
      ...(target.password && { password: target.password }),
      ...(target.tls && { tls: {} }),
    });
    client.on('error', () => {});
    try {
      try {
        await client.connect();
      } catch (error) {
        warnings.push(`${seed} does not answer (${(error as Error).message})`);
        continue;
      }
      let nodes: string;
      try {
        nodes = (await client.call('CLUSTER', 'NODES')) as string;
      } catch (error) {
        const message = (error as Error).message;
        if (/cluster support disabled/i.test(message)) {
          throw new ConfigError(`Invalid configuration: REDIS_CLUSTER_NODES: expected nodes of one Redis Cluster, but ${seed} is a standalone Redis (use REDIS_URL for one Redis)`);
        }
        throw new ConfigError(`Invalid configuration: REDIS_CLUSTER_NODES: ${seed} refused CLUSTER NODES: ${message}`);
      }
      const lines = nodes
        .trim()
        .split('\n')
        .map((line) => line.split(' '));
      const self = lines.find((fields) => fields[2]?.split(',').includes('myself'));
      members.push({ seed, id: self?.[0] ?? '', known: new Set(lines.map((fields) => fields[0]!)) });
    } finally {
      client.disconnect();
    }
  }
  if (members.length === 0) {
    throw new ConfigError(`Invalid configuration: REDIS_CLUSTER_NODES: no seed node answers (${warnings.join('; ')})`);
  }
  const [first] = members as [(typeof members)[number]];
  for (const member of members.slice(1)) {
    if (!first.known.has(member.id) || !member.known.has(first.id)) {
      throw new ConfigError(`Invalid configuration: REDIS_CLUSTER_NODES: ${member.seed} and ${first.seed} belong to different Redis Clusters`);
    }
  }
  return { warnings };
}
