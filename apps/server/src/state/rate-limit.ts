import type { Redis } from 'ioredis';
import { assertNoClientKeyPrefix, defineScript, LUA_NOW_MS, type RedisScript } from './redis-script.ts';

/** A token bucket: holds up to `capacity` tokens, starts full, gains `refillPerSecond` continuously. */
export interface TokenBucket {
  /** The burst allowed after a quiet period. */
  capacity: number;
  refillPerSecond: number;
}

export interface RateLimitResult {
  allowed: boolean;
  /** Whole tokens left after this call. */
  remaining: number;
  /** 0 when allowed; otherwise how long until `cost` tokens will be there (if nobody else takes them). */
  retryAfterMs: number;
}

/**
 * Token-bucket rate limiting, one budget per key shared by every node (a user's devices on
 * different nodes draw from the same bucket).
 *
 * `consume` is atomic: concurrent calls for one key never grant more than the bucket holds. A refused
 * call takes nothing. Refill is measured on the store's clock (Redis `TIME`), so nodes with skewed
 * clocks agree. A bucket is forgotten once it would be full again, which is indistinguishable from
 * keeping it, so idle keys cost no memory.
 *
 * @example
 * const { allowed, retryAfterMs } = await limiter.consume(`send:${userId}`, { capacity: 20, refillPerSecond: 5 });
 * if (!allowed) throw new AppError('rate_limited', 'Slow down', { retryAfterMs });
 */
export interface RateLimiter {
  /**
   * Takes `cost` tokens from the bucket at `key` if it holds that many.
   * @param cost @default 1; 0 only reads. More than `capacity` could never succeed and throws a RangeError.
   */
  consume(key: string, bucket: TokenBucket, cost?: number): Promise<RateLimitResult>;
}

// Refill arithmetic accumulates float error (0.1 + 0.2); a bucket that is full to within it is full.
const EPSILON = 1e-9;

function validate({ capacity, refillPerSecond }: TokenBucket, cost: number): void {
  if (!(capacity > 0 && Number.isFinite(capacity))) throw new RangeError(`capacity must be positive, got ${capacity}`);
  if (!(refillPerSecond > 0 && Number.isFinite(refillPerSecond))) throw new RangeError(`refillPerSecond must be positive, got ${refillPerSecond}`);
  if (!(cost >= 0 && cost <= capacity)) throw new RangeError(`cost must be between 0 and capacity (${capacity}), got ${cost}`);
}

interface Bucket {
  tokens: number;
  at: number;
  fullAt: number;
}

/** Buckets of one process. Full buckets are dropped by a sweep that runs at most once per `sweepIntervalMs`. */
export class MemoryRateLimiter implements RateLimiter {
  readonly #now: () => number;
  readonly #sweepIntervalMs: number;
  readonly #buckets = new Map<string, Bucket>();
  #nextSweepAt = 0;

  /** @param options.sweepIntervalMs @default 60_000 */
  constructor(options: { now?: () => number; sweepIntervalMs?: number } = {}) {
    this.#now = options.now ?? Date.now;
    this.#sweepIntervalMs = options.sweepIntervalMs ?? 60_000;
  }

  async consume(key: string, bucket: TokenBucket, cost = 1): Promise<RateLimitResult> {
    validate(bucket, cost);
    const { capacity, refillPerSecond } = bucket;
    const now = this.#now();
    this.#sweep(now);
    const state = this.#buckets.get(key);
    let tokens = state ? Math.min(capacity, state.tokens + (Math.max(0, now - state.at) * refillPerSecond) / 1000) : capacity;
    let retryAfterMs = 0;
    const allowed = tokens + EPSILON >= cost;
    if (allowed) tokens = Math.max(0, tokens - cost);
    else retryAfterMs = Math.ceil(((cost - tokens) * 1000) / refillPerSecond);
    const fullInMs = Math.ceil(((capacity - tokens) * 1000) / refillPerSecond - EPSILON);
    if (fullInMs > 0) this.#buckets.set(key, { tokens, at: now, fullAt: now + fullInMs });
    else this.#buckets.delete(key);
    return { allowed, remaining: Math.floor(tokens + EPSILON), retryAfterMs };
  }

  #sweep(now: number): void {
    if (now < this.#nextSweepAt) return;
    this.#nextSweepAt = now + this.#sweepIntervalMs;
    for (const [key, { fullAt }] of this.#buckets) if (fullAt <= now) this.#buckets.delete(key);
  }
}

/*
 * Key layout: `${keyPrefix}rl:<key>` HASH tokens (float), at (Redis ms of the last update),
 * PEXPIRE = time until the bucket is full again; a full bucket is deleted instead of stored.
 */
const CONSUME = `
${LUA_NOW_MS}
local capacity, rate, cost, epsilon = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ${EPSILON}
local now = now_ms()
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = capacity
if state[1] then
  tokens = math.min(capacity, tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * rate / 1000)
end
local allowed, retry = 0, 0
if tokens + epsilon >= cost then
  allowed = 1
  tokens = math.max(0, tokens - cost)
else
  retry = math.ceil((cost - tokens) * 1000 / rate)
end
local fullIn = math.ceil((capacity - tokens) * 1000 / rate - epsilon)
if fullIn > 0 then
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%d', now))
  redis.call('PEXPIRE', KEYS[1], fullIn)
else
  redis.call('DEL', KEYS[1])
end
return {allowed, math.floor(tokens + epsilon), retry}
`;

/** The shared limiter: see {@link RateLimiter} for the guarantees, the key layout above. */
export class RedisRateLimiter implements RateLimiter {
  readonly #prefix: string;
  readonly #consume: RedisScript;

  constructor(redis: Redis, options: { keyPrefix: string }) {
    assertNoClientKeyPrefix(redis);
    this.#prefix = `${options.keyPrefix}rl:`;
    this.#consume = defineScript(redis, 'rateLimitConsume', 1, CONSUME);
  }

  async consume(key: string, bucket: TokenBucket, cost = 1): Promise<RateLimitResult> {
    validate(bucket, cost);
    const [allowed, remaining, retryAfterMs] = (await this.#consume(this.#prefix + key, bucket.capacity, bucket.refillPerSecond, cost)) as [number, number, number];
    return { allowed: allowed === 1, remaining, retryAfterMs };
  }
}
