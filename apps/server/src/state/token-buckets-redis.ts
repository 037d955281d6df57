import { EPSILON } from './token-buckets.ts';
import { groupBySlot, hashTag, type RedisClient } from './redis-client.ts';
import { assertNoClientKeyPrefix, defineScript, LUA_NOW_MS, type RedisScript } from './redis-script.ts';

/** What one node spent from one shared bucket since it last settled. */
export interface Spend {
  key: string;
  capacity: number;
  refillPerSecond: number;
  spent: number;
}

/**
 * Key layout: `${keyPrefix}rl:{<key>}` HASH (hash-tagged by bucket, so buckets spread over a cluster's slots) tokens (float, below zero while in debt), at (Redis ms of
 * the last update); PEXPIRE = time until the bucket is full again; a full bucket is deleted instead
 * of stored, which is indistinguishable from keeping it.
 *
 * One call settles every key a node touched (on a Redis Cluster, one call per slot): refill on Redis' clock, subtract what was spent (debt
 * allowed: what nodes granted before they heard of each other is paid back), report the level.
 */
const SETTLE = `
${LUA_NOW_MS}
local now, epsilon = now_ms(), ${EPSILON}
local out = {}
for i = 1, #KEYS do
  local capacity, rate, spent = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  local tokens = capacity
  if state[1] then
    tokens = math.min(capacity, tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * rate / 1000)
  end
  tokens = tokens - spent
  local fullIn = math.ceil((capacity - tokens) * 1000 / rate - epsilon)
  if fullIn > 0 then
    redis.call('HSET', KEYS[i], 'tokens', string.format('%.17g', tokens), 'at', string.format('%d', now))
    redis.call('PEXPIRE', KEYS[i], fullIn)
  else
    redis.call('DEL', KEYS[i])
  end
  out[i] = string.format('%.17g', tokens)
end
return out
`;

/** The shared buckets the SyncedRateLimiter settles with. */
export class RedisBucketLedger {
  readonly #redis: RedisClient;
  readonly #prefix: string;
  readonly #settle: RedisScript;

  constructor(redis: RedisClient, options: { keyPrefix: string }) {
    assertNoClientKeyPrefix(redis);
    this.#redis = redis;
    this.#prefix = `${options.keyPrefix}rl:`;
    this.#settle = defineScript(redis, 'rateLimitSettle', 'per-call', SETTLE);
  }

  /** Applies the spends; resolves with each bucket's level after it, in order (Redis time). */
  async settle(spends: readonly Spend[]): Promise<number[]> {
    const levels = new Map<Spend, number>();
    await Promise.all(
      groupBySlot(this.#redis, spends, (spend) => this.#key(spend)).map(async (group) => {
        const keys = group.map((spend) => this.#key(spend));
        const args = group.flatMap((spend) => [spend.capacity, spend.refillPerSecond, spend.spent]);
        const after = (await this.#settle(keys.length, ...keys, ...args)) as string[];
        for (const [i, spend] of group.entries()) levels.set(spend, Number(after[i]));
      }),
    );
    return spends.map((spend) => levels.get(spend)!);
  }

  #key(spend: Spend): string {
    return this.#prefix + hashTag(spend.key);
  }
}
