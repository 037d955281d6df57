import { EPSILON, validate, type RateLimiter, type RateLimitResult, type TokenBucket } from './token-buckets.ts';
import type { Spend } from './token-buckets-redis.ts';

interface Local {
  bucket: TokenBucket;
  /** The level as this node knows it at `at` (below zero while the shared bucket is in debt). */
  tokens: number;
  at: number;
  /** Spent here since the last settle was sent. */
  pending: number;
  /** Spent here and sent in the settle under way. */
  settling: number;
  /** Whether `tokens` came from the shared bucket (false: a copy this node started from full). */
  heard: boolean;
}

/**
 * The cluster's rate limiter: every node decides from a local copy of each bucket its users draw on,
 * with no Redis round trip per event, and settles with the shared bucket every `syncIntervalMs`,
 * all keys it touched in one call (RedisBucketLedger). After a settle the local copy is the shared
 * level less what this node spent since.
 *
 * Exactness, for a key used on k nodes with capacity C, refill r per second and T = syncIntervalMs
 * plus one Redis round trip:
 * - k = 1 (a user whose devices are on one node): exact, as a single bucket, except that the first
 *   call after the key was last full is granted before the node heard the shared level (one call).
 * - A node that has not heard a key's shared level grants one call on trust; further calls wait for
 *   the next settle (at most T) and are decided on the shared level.
 * - k > 1: each node may spend what it last heard was there before it hears what the others spent,
 *   so over any window of t seconds the key is granted at most C + r·t + (k−1)·(C + r·T) (the worst
 *   case: every node heard a full bucket just before the others spent it). The excess is recorded as
 *   debt in the shared bucket and paid back: every node refuses until it has refilled.
 * - Redis unreachable: each node keeps enforcing its own copies (at most k times the budget
 *   cluster-wide) and the failed settle is counted, not retried.
 */
export class SyncedRateLimiter implements RateLimiter {
  readonly #settle: (spends: readonly Spend[]) => Promise<number[]>;
  readonly #syncIntervalMs: number;
  readonly #now: () => number;
  readonly #onSettleFailed: (error: unknown) => void;
  readonly #buckets = new Map<string, Local>();
  /** Keys with spending not yet sent: what the next settle carries. */
  readonly #dirty = new Set<string>();
  readonly #sweepIntervalMs: number;
  #nextSweepAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #settling: Promise<void> = Promise.resolve();

  constructor(settle: (spends: readonly Spend[]) => Promise<number[]>, options: { syncIntervalMs: number; sweepIntervalMs?: number; now?: () => number; onSettleFailed?: (error: unknown) => void }) {
    this.#settle = settle;
    this.#syncIntervalMs = options.syncIntervalMs;
    this.#sweepIntervalMs = options.sweepIntervalMs ?? 60_000;
    this.#now = options.now ?? Date.now;
    this.#onSettleFailed = options.onSettleFailed ?? (() => {});
  }

  async consume(key: string, bucket: TokenBucket, cost = 1): Promise<RateLimitResult> {
    validate(bucket, cost);
    let local = this.#buckets.get(key);
    // A key this node has not heard the shared level of grants one call on trust; the next ones
    // wait (at most one settle) for the level, so a user switching nodes gets no fresh burst.
    while (local && !local.heard && local.pending + local.settling > 0 && cost > 0) {
      await this.flush();
      local = this.#buckets.get(key);
    }
    const now = this.#now();
    local ??= { bucket, tokens: bucket.capacity, at: now, pending: 0, settling: 0, heard: false };
    local.bucket = bucket;
    let tokens = this.#level(local, now);
    let retryAfterMs = 0;
    const allowed = tokens + EPSILON >= cost;
    if (allowed) {
      tokens -= cost;
      local.pending += cost;
      if (cost > 0) this.#dirty.add(key);
    } else {
      retryAfterMs = Math.ceil(((cost - tokens) * 1000) / bucket.refillPerSecond);
    }
    local.tokens = tokens;
    local.at = now;
    this.#buckets.set(key, local);
    if (this.#dirty.size > 0) this.#schedule();
    return { allowed, remaining: Math.max(0, Math.floor(tokens + EPSILON)), retryAfterMs };
  }

  /** Settles now (and waits for it): what every node spent reaches the shared buckets. */
  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#settling = this.#settling.then(() => this.#settleNow());
    return this.#settling;
  }

  #level(local: Local, now: number): number {
    const { capacity, refillPerSecond } = local.bucket;
    return Math.min(capacity, local.tokens + (Math.max(0, now - local.at) * refillPerSecond) / 1000);
  }

  #schedule(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => void this.flush(), this.#syncIntervalMs);
    this.#timer.unref();
  }

  async #settleNow(): Promise<void> {
    this.#sweep(this.#now());
    const batch: Array<[string, Local]> = [];
    for (const key of this.#dirty) {
      const local = this.#buckets.get(key)!;
      local.settling = local.pending;
      local.pending = 0;
      batch.push([key, local]);
    }
    this.#dirty.clear();
    if (batch.length === 0) return;
    try {
      const levels = await this.#settle(batch.map(([key, local]) => ({ key, capacity: local.bucket.capacity, refillPerSecond: local.bucket.refillPerSecond, spent: local.settling })));
      const at = this.#now();
      batch.forEach(([, local], i) => {
        local.tokens = levels[i]! - local.pending;
        local.at = at;
        local.settling = 0;
        local.heard = true;
      });
    } catch (error) {
      // Unreachable shared buckets: this node goes on with its own copies (and waits for nothing).
      for (const [, local] of batch) {
        local.settling = 0;
        local.heard = true;
      }
      this.#onSettleFailed(error);
    }
    if (this.#dirty.size > 0) this.#schedule();
  }

  /** Forgets buckets that are full again with nothing to tell, at most once per sweep interval. */
  #sweep(now: number): void {
    if (now < this.#nextSweepAt) return;
    this.#nextSweepAt = now + this.#sweepIntervalMs;
    for (const [key, local] of this.#buckets) {
      // Forgetting a full bucket is indistinguishable from keeping it.
      if (local.pending + local.settling === 0 && this.#level(local, now) + EPSILON >= local.bucket.capacity) this.#buckets.delete(key);
    }
  }
}
