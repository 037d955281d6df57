import type { AdminNodeSample, AdminNodeStatus } from '@chat/protocol';
import { HISTORY_LIMIT, HISTORY_MS, sampleOf, type NodeReport, type NodeStatusOptions, type NodeStatusStore } from './node-status.ts';
import type { RedisClient } from './redis-client.ts';
import { assertNoClientKeyPrefix, defineScript, LUA_NOW_MS, type RedisScript } from './redis-script.ts';

/*
 * Key layout, P = `${keyPrefix}admin:`; every key shares the hash tag {~admin}, so each script runs
 * on one shard of a Redis Cluster (a handful of small writes per node every 2 s):
 *   P{~admin}nodes            ZSET    nodeId → last report (Redis ms)
 *   P{~admin}status           HASH    nodeId → JSON of its last NodeReport
 *   P{~admin}history:<nodeId> LIST    "<Redis ms> <JSON sample>", newest first, capped, PEXPIREd
 * Node ids match NODE_ID (no braces), so a history key never leaves the tag.
 */
const TAG = '{~admin}';

// KEYS: nodes, status, the node's history; ARGV: node, report, sample, history limit, history ms.
const PUBLISH = `
${LUA_NOW_MS}
local now = now_ms()
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('LPUSH', KEYS[3], now .. ' ' .. ARGV[3])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
redis.call('PEXPIRE', KEYS[3], ARGV[5])
return now
`;

// KEYS: nodes, status; ARGV: ttl ms, history key prefix, '1' to return histories too. Removes the
// dead nodes, then returns {now, {node, last report ms, report JSON, history or false}...}.
const LIST = `
${LUA_NOW_MS}
local now = now_ms()
local cutoff = now - tonumber(ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff)
for _, node in ipairs(dead) do
  redis.call('ZREM', KEYS[1], node)
  redis.call('HDEL', KEYS[2], node)
  redis.call('DEL', ARGV[2] .. node)
end
local live = redis.call('ZRANGEBYSCORE', KEYS[1], cutoff, '+inf', 'WITHSCORES')
local out = {}
for i = 1, #live, 2 do
  local node = live[i]
  local history = false
  if ARGV[3] == '1' then history = redis.call('LRANGE', ARGV[2] .. node, 0, -1) end
  out[#out + 1] = {node, live[i + 1], redis.call('HGET', KEYS[2], node) or false, history}
end
return {now, out}
`;

const REMOVE = `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[3])
`;

type Row = [string, string, string | null, string[] | null];

/** The cluster's nodes, as every node reports itself: see {@link NodeStatusStore}, the layout above. */
export class RedisNodeStatusStore implements NodeStatusStore {
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #historyLimit: number;
  readonly #historyMs: number;
  readonly #publish: RedisScript;
  readonly #list: RedisScript;
  readonly #remove: RedisScript;

  constructor(redis: RedisClient, options: NodeStatusOptions & { keyPrefix: string }) {
    assertNoClientKeyPrefix(redis);
    this.#prefix = `${options.keyPrefix}admin:${TAG}`;
    this.#ttlMs = options.ttlMs;
    this.#historyLimit = options.historyLimit ?? HISTORY_LIMIT;
    this.#historyMs = options.historyMs ?? HISTORY_MS;
    this.#publish = defineScript(redis, 'nodeStatusPublish', 3, PUBLISH);
    this.#list = defineScript(redis, 'nodeStatusList', 2, LIST);
    this.#remove = defineScript(redis, 'nodeStatusRemove', 3, REMOVE);
  }

  get #nodes(): string {
    return `${this.#prefix}nodes`;
  }

  get #status(): string {
    return `${this.#prefix}status`;
  }

  #history(nodeId: string): string {
    return `${this.#prefix}history:${nodeId}`;
  }

  async publish(report: NodeReport): Promise<void> {
    const { at: _at, ...sample } = sampleOf(report, 0);
    await this.#publish(this.#nodes, this.#status, this.#history(report.id), report.id, JSON.stringify(report), JSON.stringify(sample), this.#historyLimit, this.#historyMs);
  }

  async list(): Promise<AdminNodeStatus[]> {
    const [, rows] = await this.#read(false);
    return rows
      .flatMap(([, at, json]) => (json === null ? [] : [{ ...(JSON.parse(json) as NodeReport), lastHeartbeatAt: new Date(Number(at)).toISOString() }]))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async history(): Promise<Record<string, AdminNodeSample[]>> {
    const [now, rows] = await this.#read(true);
    const since = now - this.#historyMs;
    return Object.fromEntries(
      rows.map(([nodeId, , , entries]) => [
        nodeId,
        (entries ?? [])
          .map((entry) => {
            const split = entry.indexOf(' ');
            return { at: Number(entry.slice(0, split)), ...(JSON.parse(entry.slice(split + 1)) as Omit<AdminNodeSample, 'at'>) };
          })
          .filter((sample) => sample.at >= since)
          .reverse(),
      ]),
    );
  }

  async remove(nodeId: string): Promise<void> {
    await this.#remove(this.#nodes, this.#status, this.#history(nodeId), nodeId);
  }

  async #read(withHistory: boolean): Promise<[number, Row[]]> {
    const [now, rows] = (await this.#list(this.#nodes, this.#status, this.#ttlMs, this.#history(''), withHistory ? '1' : '')) as [number, Row[]];
    return [Number(now), rows.map(([node, at, json, history]) => [node, at, json || null, history || null])];
  }
}
