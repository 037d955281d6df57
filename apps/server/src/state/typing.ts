import { hashTag, type RedisClient } from './redis-client.ts';
import { assertNoClientKeyPrefix, defineScript, LUA_NOW_MS, type RedisScript } from './redis-script.ts';

/**
 * Who is typing in each conversation. Every entry carries its own TTL, so a typist who vanishes
 * (closed laptop, SIGKILLed node) stops typing by themselves: nothing has to clean up after a dead node.
 *
 * Each call is atomic, and `changed` reports a transition exactly once even when several devices or
 * nodes race: callers broadcast only when `changed` is true. Expiry is measured on the store's clock
 * (Redis `TIME`), and an expired entry counts as stopped everywhere: `list` never returns it and a
 * later `start` reports `changed: true` again.
 */
export interface TypingStore {
  /**
   * Marks the user typing until `ttlMs` from now, extending an existing entry.
   * @returns `changed` false when the user was already typing (nothing to re-broadcast).
   */
  start(conversationId: string, userId: string, ttlMs: number): Promise<{ changed: boolean }>;

  /** @returns `changed` false when the user was not typing, or their entry had already expired. */
  stop(conversationId: string, userId: string): Promise<{ changed: boolean }>;

  /** User ids currently typing, in no particular order. */
  list(conversationId: string): Promise<string[]>;
}

/**
 * Typing state of one process. Entries are pruned whenever their conversation is touched, and
 * abandoned conversations by a sweep that runs at most once per `sweepIntervalMs`.
 */
export class MemoryTypingStore implements TypingStore {
  readonly #now: () => number;
  readonly #sweepIntervalMs: number;
  /** conversationId → userId → expiry (epoch ms) */
  readonly #conversations = new Map<string, Map<string, number>>();
  #nextSweepAt = 0;

  /** @param options.sweepIntervalMs @default 60_000 */
  constructor(options: { now?: () => number; sweepIntervalMs?: number } = {}) {
    this.#now = options.now ?? Date.now;
    this.#sweepIntervalMs = options.sweepIntervalMs ?? 60_000;
  }

  async start(conversationId: string, userId: string, ttlMs: number): Promise<{ changed: boolean }> {
    assertTtl(ttlMs);
    const now = this.#now();
    this.#sweep(now);
    const typists = this.#live(conversationId, now) ?? new Map<string, number>();
    const changed = !typists.has(userId);
    typists.set(userId, now + ttlMs);
    this.#conversations.set(conversationId, typists);
    return { changed };
  }

  async stop(conversationId: string, userId: string): Promise<{ changed: boolean }> {
    const typists = this.#live(conversationId, this.#now());
    const changed = typists?.delete(userId) ?? false;
    if (typists?.size === 0) this.#conversations.delete(conversationId);
    return { changed };
  }

  async list(conversationId: string): Promise<string[]> {
    return [...(this.#live(conversationId, this.#now())?.keys() ?? [])];
  }

  /** The conversation's unexpired typists, or undefined when none are left. */
  #live(conversationId: string, now: number): Map<string, number> | undefined {
    const typists = this.#conversations.get(conversationId);
    if (!typists) return undefined;
    for (const [userId, expiresAt] of typists) if (expiresAt <= now) typists.delete(userId);
    if (typists.size > 0) return typists;
    this.#conversations.delete(conversationId);
    return undefined;
  }

  #sweep(now: number): void {
    if (now < this.#nextSweepAt) return;
    this.#nextSweepAt = now + this.#sweepIntervalMs;
    for (const conversationId of this.#conversations.keys()) this.#live(conversationId, now);
  }
}

/*
 * Key layout: `${keyPrefix}typing:{<conversationId>}` ZSET (hash-tagged by conversation) userId → expiry (Redis ms). Expired members
 * are pruned by every call, and the key's own TTL follows its latest expiry, so the key of an
 * abandoned conversation disappears by itself.
 */

const START = `
${LUA_NOW_MS}
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local added = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local latest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], latest[2])
return added
`;

const STOP = `
${LUA_NOW_MS}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms())
return redis.call('ZREM', KEYS[1], ARGV[1])
`;

const LIST = `
${LUA_NOW_MS}
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
`;

/** The shared store: see {@link TypingStore} for the guarantees, the key layout above. */
export class RedisTypingStore implements TypingStore {
  readonly #prefix: string;
  readonly #start: RedisScript;
  readonly #stop: RedisScript;
  readonly #list: RedisScript;

  constructor(redis: RedisClient, options: { keyPrefix: string }) {
    assertNoClientKeyPrefix(redis);
    this.#prefix = `${options.keyPrefix}typing:`;
    this.#start = defineScript(redis, 'typingStart', 1, START);
    this.#stop = defineScript(redis, 'typingStop', 1, STOP);
    this.#list = defineScript(redis, 'typingList', 1, LIST);
  }

  #key(conversationId: string): string {
    return this.#prefix + hashTag(conversationId);
  }

  async start(conversationId: string, userId: string, ttlMs: number): Promise<{ changed: boolean }> {
    assertTtl(ttlMs);
    return { changed: (await this.#start(this.#key(conversationId), userId, Math.ceil(ttlMs))) === 1 };
  }

  async stop(conversationId: string, userId: string): Promise<{ changed: boolean }> {
    return { changed: (await this.#stop(this.#key(conversationId), userId)) === 1 };
  }

  async list(conversationId: string): Promise<string[]> {
    return (await this.#list(this.#key(conversationId))) as string[];
  }
}

function assertTtl(ttlMs: number): void {
  if (!(ttlMs > 0 && Number.isFinite(ttlMs))) throw new RangeError(`ttlMs must be a positive number, got ${ttlMs}`);
}
