import { MemoryCallStore, type CallStore } from './calls.ts';
import { RedisCallStore } from './calls-redis.ts';
import { MemoryPresenceStore, type PresenceOptions, type PresenceStore } from './presence.ts';
import { RedisPresenceStore } from './presence-redis.ts';
import type { RedisClient } from './redis-client.ts';
import { MemoryRateLimiter, type RateLimiter } from './token-buckets.ts';
import { RedisBucketLedger } from './token-buckets-redis.ts';
import { SyncedRateLimiter } from './token-buckets-synced.ts';
import { MemoryTypingStore, RedisTypingStore, type TypingStore } from './typing.ts';

export * from './calls.ts';
export { RedisCallStore } from './calls-redis.ts';
export * from './presence.ts';
export { connectionsKeyParts, RedisPresenceStore } from './presence-redis.ts';
export { groupBySlot, hashTag, isCluster, type RedisClient } from './redis-client.ts';
export * from './token-buckets.ts';
export { RedisBucketLedger } from './token-buckets-redis.ts';
export { SyncedRateLimiter } from './token-buckets-synced.ts';
export * from './typing.ts';

/** Cluster state that may be lost and rebuilt. Each store's interface documents its guarantees. */
export interface StateStores {
  presence: PresenceStore;
  typing: TypingStore;
  rateLimiter: RateLimiter;
  calls: CallStore;
}

export interface StateStoreOptions {
  /**
   * The shared connection. Without one the stores live in this process (single-node mode, tests).
   * It must not have ioredis' own `keyPrefix` option set.
   */
  redis?: RedisClient;
  /**
   * Prepended to every Redis key the stores write, e.g. `chat:state:`. On a Redis Cluster it must
   * hold no hash tag: the stores tag their keys by user, conversation or bucket themselves.
   */
  keyPrefix: string;
  presence: PresenceOptions;
  /**
   * How often a node settles its rate-limit spending with the shared buckets (SyncedRateLimiter).
   * @default 50
   */
  rateLimitSyncMs?: number;
  /** Told when a settle could not reach Redis (a metric). */
  onRateLimitSettleFailed?: (error: unknown) => void;
  /**
   * The memory stores' clock, epoch ms: a test passes its own to move time without waiting. The Redis
   * stores ignore it: their clock is Redis `TIME`, so nodes with skewed clocks agree.
   * @default Date.now
   */
  now?: () => number;
}

/**
 * Memory stores when no Redis client is given, Redis ones otherwise (one Redis or a Redis Cluster). The stores do not own the
 * client: whoever created it closes it.
 */
export function createStateStores(options: StateStoreOptions): StateStores {
  const { redis, keyPrefix } = options;
  if (!redis) {
    const clock = options.now && { now: options.now };
    return {
      presence: new MemoryPresenceStore({ ...options.presence, ...clock }),
      typing: new MemoryTypingStore(clock),
      rateLimiter: new MemoryRateLimiter(clock),
      calls: new MemoryCallStore(clock),
    };
  }
  const ledger = new RedisBucketLedger(redis, { keyPrefix });
  return {
    presence: new RedisPresenceStore(redis, { ...options.presence, keyPrefix }),
    typing: new RedisTypingStore(redis, { keyPrefix }),
    rateLimiter: new SyncedRateLimiter((spends) => ledger.settle(spends), {
      syncIntervalMs: options.rateLimitSyncMs ?? 50,
      ...(options.onRateLimitSettleFailed && { onSettleFailed: options.onRateLimitSettleFailed }),
    }),
    calls: new RedisCallStore(redis, { keyPrefix }),
  };
}
