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
 * On one node `consume` is exact: calls for one key never grant more than the bucket holds, and a
 * refused call takes nothing. Across nodes the cluster's limiter (SyncedRateLimiter) bounds the
 * overshoot instead; see there. A bucket is forgotten once it would be full again, which is
 * indistinguishable from keeping it, so idle keys cost no memory.
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
export const EPSILON = 1e-9;

export function validate({ capacity, refillPerSecond }: TokenBucket, cost: number): void {
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
