import type { Redis } from 'ioredis';
import {
  assertStatus,
  presenceView,
  REAPED_MEMORY_MS,
  viewerOf,
  type PresenceConnection,
  type PresenceOptions,
  type PresenceStatus,
  type PresenceStore,
  type PresenceView,
  type PresenceViewpoint,
  type WentOffline,
} from './presence.ts';
import { assertNoClientKeyPrefix, defineScript, LUA_NOW_MS, type RedisScript } from './redis-script.ts';

/*
 * Key layout, P = `${keyPrefix}presence:`
 *   P nodes                ZSET   nodeId → last heartbeat (Redis ms)
 *   P node:<nodeId>        HASH   connectionId → userId      (what to remove when the node dies)
 *   P conns:<userId>       HASH   connectionId → nodeId      (exists ⇔ the user is connected)
 *   P user:<userId>        HASH   status, lastSeenAt         (no TTL: a preference and a fact)
 *   P reaped:<nodeId>      STRING tombstone, PX REAPED_MEMORY_MS, read by the node's next heartbeat
 *
 * The reaper derives user keys from a node's hash, so scripts build keys from the prefix instead of
 * declaring them; on Redis Cluster the prefix must carry a hash tag (`{chat}:`) to keep them in one slot.
 */

const CONNECT = `
local P, user, conn, node = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
${LUA_NOW_MS}
redis.call('ZADD', P .. 'nodes', now_ms(), node)
local status = redis.call('HGET', P .. 'user:' .. user, 'status') or 'online'
local conns = P .. 'conns:' .. user
local previous = redis.call('HGET', conns, conn)
if previous == node then return {0, status} end
if previous then redis.call('HDEL', P .. 'node:' .. previous, conn) end
local came = redis.call('EXISTS', conns) == 0 and 1 or 0
redis.call('HSET', conns, conn, node)
redis.call('HSET', P .. 'node:' .. node, conn, user)
return {came, status}
`;

const DISCONNECT = `
local P, user, conn, node = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
${LUA_NOW_MS}
local userKey = P .. 'user:' .. user
local status = redis.call('HGET', userKey, 'status') or 'online'
local conns = P .. 'conns:' .. user
if redis.call('HGET', conns, conn) ~= node then return {0, false, status} end
redis.call('HDEL', conns, conn)
redis.call('HDEL', P .. 'node:' .. node, conn)
if redis.call('EXISTS', conns) == 1 then return {0, false, status} end
if status ~= 'invisible' then redis.call('HSET', userKey, 'lastSeenAt', now_ms()) end
return {1, redis.call('HGET', userKey, 'lastSeenAt'), status}
`;

const HEARTBEAT = `
local P, node = ARGV[1], ARGV[2]
${LUA_NOW_MS}
redis.call('ZADD', P .. 'nodes', now_ms(), node)
return redis.call('DEL', P .. 'reaped:' .. node)
`;

// One script for the whole reap: a second reaper running concurrently finds the dead nodes gone,
// and a connect on another node is ordered entirely before or after, never in between.
// With ARGV[4] set, that one node is reaped whatever its heartbeat says (a node starting under the
// id of a previous process clears what that process left), and no tombstone is left for it.
const REAP = `
local P, ttl, remember, only = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
${LUA_NOW_MS}
local nodesKey = P .. 'nodes'
local dead
if only ~= '' then
  dead = {only, redis.call('ZSCORE', nodesKey, only) or now_ms()}
else
  dead = redis.call('ZRANGEBYSCORE', nodesKey, '-inf', '(' .. (now_ms() - ttl), 'WITHSCORES')
end
local deadNodes, offline = {}, {}
for i = 1, #dead, 2 do
  local node, lastBeat = dead[i], dead[i + 1]
  deadNodes[#deadNodes + 1] = node
  local nodeKey = P .. 'node:' .. node
  local entries = redis.call('HGETALL', nodeKey)
  for j = 1, #entries, 2 do
    local conn, user = entries[j], entries[j + 1]
    local conns = P .. 'conns:' .. user
    -- The connection may have been re-registered elsewhere; only this node's claim is removed.
    if redis.call('HGET', conns, conn) == node then
      redis.call('HDEL', conns, conn)
      if redis.call('EXISTS', conns) == 0 then
        local userKey = P .. 'user:' .. user
        local status = redis.call('HGET', userKey, 'status') or 'online'
        if status ~= 'invisible' then redis.call('HSET', userKey, 'lastSeenAt', lastBeat) end
        offline[#offline + 1] = {user, redis.call('HGET', userKey, 'lastSeenAt'), status}
      end
    end
  end
  redis.call('DEL', nodeKey)
  redis.call('ZREM', nodesKey, node)
  if only == '' then redis.call('SET', P .. 'reaped:' .. node, '1', 'PX', remember) end
end
return {deadNodes, offline}
`;

const SET_STATUS = `
local P, user, status = ARGV[1], ARGV[2], ARGV[3]
${LUA_NOW_MS}
local userKey = P .. 'user:' .. user
local previous = redis.call('HGET', userKey, 'status') or 'online'
local online = redis.call('EXISTS', P .. 'conns:' .. user)
if status == 'invisible' and previous ~= 'invisible' and online == 1 then
  redis.call('HSET', userKey, 'lastSeenAt', now_ms())
end
redis.call('HSET', userKey, 'status', status)
return {previous, online}
`;

// A script rather than a pipeline so each answer is one consistent snapshot.
const GET = `
local P = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local user = ARGV[i]
  local info = redis.call('HMGET', P .. 'user:' .. user, 'status', 'lastSeenAt')
  out[#out + 1] = {redis.call('EXISTS', P .. 'conns:' .. user), info[1] or 'online', info[2]}
end
return out
`;

type Nullable = string | null;

/** P in the key layout above, for a store created with `keyPrefix`. */
function presencePrefix(keyPrefix: string): string {
  return `${keyPrefix}presence:`;
}

/**
 * Where the `conns:<userId>` hashes (connectionId → nodeId) of a store created with `keyPrefix` live:
 * the routed fan-out reads them inside its publish script (transport/socket/node-bus.ts).
 */
export function connectionsKeyPrefix(keyPrefix: string): string {
  return `${presencePrefix(keyPrefix)}conns:`;
}

/** The shared store: see {@link PresenceStore} for the guarantees, the key layout above. */
export class RedisPresenceStore implements PresenceStore {
  readonly #prefix: string;
  readonly #nodeTtlMs: number;
  readonly #connect: RedisScript;
  readonly #disconnect: RedisScript;
  readonly #heartbeat: RedisScript;
  readonly #reap: RedisScript;
  readonly #setStatus: RedisScript;
  readonly #get: RedisScript;

  constructor(redis: Redis, options: PresenceOptions & { keyPrefix: string }) {
    assertNoClientKeyPrefix(redis);
    this.#prefix = presencePrefix(options.keyPrefix);
    this.#nodeTtlMs = options.nodeTtlMs;
    this.#connect = defineScript(redis, 'presenceConnect', 0, CONNECT);
    this.#disconnect = defineScript(redis, 'presenceDisconnect', 0, DISCONNECT);
    this.#heartbeat = defineScript(redis, 'presenceHeartbeat', 0, HEARTBEAT);
    this.#reap = defineScript(redis, 'presenceReap', 0, REAP);
    this.#setStatus = defineScript(redis, 'presenceSetStatus', 0, SET_STATUS);
    this.#get = defineScript(redis, 'presenceGet', 0, GET);
  }

  async connect({ userId, connectionId, nodeId }: PresenceConnection): Promise<{ cameOnline: boolean; status: PresenceStatus }> {
    const [came, status] = (await this.#connect(this.#prefix, userId, connectionId, nodeId)) as [number, PresenceStatus];
    return { cameOnline: came === 1, status };
  }

  async disconnect({ userId, connectionId, nodeId }: PresenceConnection): Promise<{ wentOffline: boolean; lastSeenAt: number | null; status: PresenceStatus }> {
    const [went, lastSeenAt, status] = (await this.#disconnect(this.#prefix, userId, connectionId, nodeId)) as [number, Nullable, PresenceStatus];
    return { wentOffline: went === 1, lastSeenAt: toMs(lastSeenAt), status };
  }

  async heartbeat(nodeId: string): Promise<{ reaped: boolean }> {
    return { reaped: (await this.#heartbeat(this.#prefix, nodeId)) === 1 };
  }

  async reapDeadNodes(): Promise<{ deadNodes: string[]; wentOffline: WentOffline[] }> {
    const [deadNodes, offline] = (await this.#reap(this.#prefix, this.#nodeTtlMs, REAPED_MEMORY_MS, '')) as [string[], Array<[string, Nullable, PresenceStatus]>];
    return { deadNodes, wentOffline: offline.map(([userId, lastSeenAt, status]) => ({ userId, lastSeenAt: toMs(lastSeenAt), status })) };
  }

  async reapNode(nodeId: string): Promise<WentOffline[]> {
    const [, offline] = (await this.#reap(this.#prefix, this.#nodeTtlMs, REAPED_MEMORY_MS, nodeId)) as [string[], Array<[string, Nullable, PresenceStatus]>];
    return offline.map(([userId, lastSeenAt, status]) => ({ userId, lastSeenAt: toMs(lastSeenAt), status }));
  }

  async setStatus(userId: string, status: PresenceStatus): Promise<{ previous: PresenceStatus; online: boolean }> {
    assertStatus(status);
    const [previous, online] = (await this.#setStatus(this.#prefix, userId, status)) as [PresenceStatus, number];
    return { previous, online: online === 1 };
  }

  async get(userIds: readonly string[], options: PresenceViewpoint = {}): Promise<PresenceView[]> {
    if (userIds.length === 0) return [];
    const rows = (await this.#get(this.#prefix, ...userIds)) as Array<[number, PresenceStatus, Nullable]>;
    return rows.map(([connected, status, lastSeenAt], i) => presenceView(userIds[i]!, viewerOf(userIds[i]!, options), connected === 1, status, toMs(lastSeenAt)));
  }
}

function toMs(value: Nullable): number | null {
  return value === null ? null : Number(value);
}
