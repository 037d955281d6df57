import type { PresenceStatus } from '@chat/protocol';
import {
  assertStatus,
  presenceView,
  REAPED_MEMORY_MS,
  viewerOf,
  type PresenceConnection,
  type PresenceOptions,
  type PresenceStore,
  type PresenceView,
  type PresenceViewpoint,
  type WentOffline,
} from './presence.ts';
import { groupBySlot, hashTag, type RedisClient } from './redis-client.ts';
import { assertNoClientKeyPrefix, defineScript, LUA_NOW_MS, type RedisScript } from './redis-script.ts';

/*
 * Key layout, P = `${keyPrefix}presence:`; braces are Redis Cluster hash tags, so a user's keys
 * share one slot and different users spread over all slots:
 *   P{~registry}nodes          ZSET   nodeId → last heartbeat (Redis ms)
 *   P{~registry}reaped:<node>  STRING tombstone, PX REAPED_MEMORY_MS, read by the node's next heartbeat
 *   P node:{<nodeId>}          HASH   connectionId → userId   (what to remove when the node dies)
 *   P conns:{<userId>}         HASH   connectionId → nodeId   (exists ⇔ the user is connected)
 *   P user:{<userId>}          HASH   status, lastSeenAt      (no TTL: a preference and a fact)
 *
 * Every script touches one slot: the registry's, one node's, or one user's (a group of users whose
 * keys share a slot). What spans them is ordered so that a crash between two steps leaves nothing a
 * later step cannot repair:
 * - connect writes the node's index before the user's `conns`, and disconnect removes it after, so
 *   every connection in a `conns` hash is found by the reaper through its node's index;
 * - a node is listed in the registry before its first connection is written (and by every heartbeat);
 * - the reaper removes a dead node's connections user by user (each only if still claimed by that
 *   node) before it drops the node from the registry, so two reapers, or one that dies half way,
 *   leave the same end state, and each user goes offline exactly once.
 */

const REGISTRY_TAG = '{~registry}';

const USER_CONNECT = `
local conns, userKey, conn, node = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local status = redis.call('HGET', userKey, 'status') or 'online'
local previous = redis.call('HGET', conns, conn)
if previous == node then return {0, status, false} end
local came = redis.call('EXISTS', conns) == 0 and 1 or 0
redis.call('HSET', conns, conn, node)
return {came, status, previous}
`;

const USER_DISCONNECT = `
local conns, userKey, conn, node = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
${LUA_NOW_MS}
local status = redis.call('HGET', userKey, 'status') or 'online'
if redis.call('HGET', conns, conn) ~= node then return {0, false, status} end
redis.call('HDEL', conns, conn)
if redis.call('EXISTS', conns) == 1 then return {0, false, status} end
if status ~= 'invisible' then redis.call('HSET', userKey, 'lastSeenAt', now_ms()) end
return {1, redis.call('HGET', userKey, 'lastSeenAt'), status}
`;

// KEYS[1] the registry: the node is listed (so the reaper finds what it registers) unless it is already.
const ENLIST = `
${LUA_NOW_MS}
return redis.call('ZADD', KEYS[1], 'NX', now_ms(), ARGV[1])
`;

const HEARTBEAT = `
${LUA_NOW_MS}
redis.call('ZADD', KEYS[1], now_ms(), ARGV[1])
return redis.call('DEL', KEYS[2])
`;

// KEYS[1] the registry. Without ARGV[2]: the nodes whose heartbeat is older than ARGV[1] ms, with
// it: that one node whatever its heartbeat (a node starting under the id of a previous process).
const FIND_DEAD = `
${LUA_NOW_MS}
if ARGV[2] ~= '' then return {ARGV[2], redis.call('ZSCORE', KEYS[1], ARGV[2]) or tostring(now_ms())} end
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now_ms() - tonumber(ARGV[1])), 'WITHSCORES')
`;

// KEYS: (conns, user) per connection of the dead node, all in one slot; ARGV: node, its last
// heartbeat, then (connection, user) pairs. Returns the users who went offline.
const USER_REAP = `
local node, lastBeat = ARGV[1], ARGV[2]
local offline = {}
for i = 1, #KEYS, 2 do
  local conns, userKey = KEYS[i], KEYS[i + 1]
  local conn, user = ARGV[i + 2], ARGV[i + 3]
  -- The connection may have been re-registered elsewhere; only this node's claim is removed.
  if redis.call('HGET', conns, conn) == node then
    redis.call('HDEL', conns, conn)
    if redis.call('EXISTS', conns) == 0 then
      local status = redis.call('HGET', userKey, 'status') or 'online'
      if status ~= 'invisible' then redis.call('HSET', userKey, 'lastSeenAt', lastBeat) end
      offline[#offline + 1] = {user, redis.call('HGET', userKey, 'lastSeenAt'), status}
    end
  end
end
return offline
`;

// KEYS: the registry, the node's tombstone; ARGV: node, tombstone lifetime ('' for none). Returns 1
// for the one reaper that removed the node from the registry.
const FORGET_NODE = `
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
return removed
`;

const SET_STATUS = `
local userKey, conns, status = KEYS[1], KEYS[2], ARGV[1]
${LUA_NOW_MS}
local previous = redis.call('HGET', userKey, 'status') or 'online'
local online = redis.call('EXISTS', conns)
if status == 'invisible' and previous ~= 'invisible' and online == 1 then
  redis.call('HSET', userKey, 'lastSeenAt', now_ms())
end
redis.call('HSET', userKey, 'status', status)
return {previous, online}
`;

// KEYS: (conns, user) per user. A script rather than a pipeline, so each answer is one consistent
// snapshot of the users in one slot (on a single Redis: of all of them).
const GET = `
local out = {}
for i = 1, #KEYS, 2 do
  local info = redis.call('HMGET', KEYS[i + 1], 'status', 'lastSeenAt')
  out[#out + 1] = {redis.call('EXISTS', KEYS[i]), info[1] or 'online', info[2]}
end
return out
`;

/** Connections of a dead node handled per script call: bounds how long one call holds Redis. */
const REAP_BATCH = 500;

type Nullable = string | null;

/** P in the key layout above, for a store created with `keyPrefix`. */
function presencePrefix(keyPrefix: string): string {
  return `${keyPrefix}presence:`;
}

/**
 * The `conns` hash of a user (connectionId → nodeId) in a store created with `keyPrefix`, as
 * `before + userId + after`: the routed fan-out reads these inside its publish script
 * (transport/socket/node-bus.ts), building the key from the two parts.
 */
export function connectionsKeyParts(keyPrefix: string): { before: string; after: string } {
  return { before: `${presencePrefix(keyPrefix)}conns:{`, after: '}' };
}

/** The shared store: see {@link PresenceStore} for the guarantees, the key layout above. */
export class RedisPresenceStore implements PresenceStore {
  readonly #redis: RedisClient;
  readonly #prefix: string;
  readonly #nodeTtlMs: number;
  readonly #userConnect: RedisScript;
  readonly #userDisconnect: RedisScript;
  readonly #enlist: RedisScript;
  readonly #heartbeat: RedisScript;
  /** Nodes this store listed in the registry on their first connect; their heartbeats keep them there. */
  readonly #enlisted = new Set<string>();
  readonly #findDead: RedisScript;
  readonly #userReap: RedisScript;
  readonly #forgetNode: RedisScript;
  readonly #setStatus: RedisScript;
  readonly #get: RedisScript;

  constructor(redis: RedisClient, options: PresenceOptions & { keyPrefix: string }) {
    assertNoClientKeyPrefix(redis);
    this.#redis = redis;
    this.#prefix = presencePrefix(options.keyPrefix);
    this.#nodeTtlMs = options.nodeTtlMs;
    this.#userConnect = defineScript(redis, 'presenceUserConnect', 2, USER_CONNECT);
    this.#userDisconnect = defineScript(redis, 'presenceUserDisconnect', 2, USER_DISCONNECT);
    this.#enlist = defineScript(redis, 'presenceEnlist', 1, ENLIST);
    this.#heartbeat = defineScript(redis, 'presenceHeartbeat', 2, HEARTBEAT);
    this.#findDead = defineScript(redis, 'presenceFindDead', 1, FIND_DEAD);
    this.#userReap = defineScript(redis, 'presenceUserReap', 'per-call', USER_REAP);
    this.#forgetNode = defineScript(redis, 'presenceForgetNode', 2, FORGET_NODE);
    this.#setStatus = defineScript(redis, 'presenceSetStatus', 2, SET_STATUS);
    this.#get = defineScript(redis, 'presenceGet', 'per-call', GET);
  }

  #conns(userId: string): string {
    return `${this.#prefix}conns:${hashTag(userId)}`;
  }

  #user(userId: string): string {
    return `${this.#prefix}user:${hashTag(userId)}`;
  }

  #node(nodeId: string): string {
    return `${this.#prefix}node:${hashTag(nodeId)}`;
  }

  get #registry(): string {
    return `${this.#prefix}${REGISTRY_TAG}nodes`;
  }

  #tombstone(nodeId: string): string {
    return `${this.#prefix}${REGISTRY_TAG}reaped:${nodeId}`;
  }

  async connect({ userId, connectionId, nodeId }: PresenceConnection): Promise<{ cameOnline: boolean; status: PresenceStatus }> {
    if (!this.#enlisted.has(nodeId)) {
      await this.#enlist(this.#registry, nodeId);
      this.#enlisted.add(nodeId);
    }
    await this.#redis.hset(this.#node(nodeId), connectionId, userId);
    const [came, status, previous] = (await this.#userConnect(this.#conns(userId), this.#user(userId), connectionId, nodeId)) as [number, PresenceStatus, Nullable];
    if (previous !== null && previous !== nodeId) await this.#redis.hdel(this.#node(previous), connectionId);
    return { cameOnline: came === 1, status };
  }

  async disconnect({ userId, connectionId, nodeId }: PresenceConnection): Promise<{ wentOffline: boolean; lastSeenAt: number | null; status: PresenceStatus }> {
    const [went, lastSeenAt, status] = (await this.#userDisconnect(this.#conns(userId), this.#user(userId), connectionId, nodeId)) as [number, Nullable, PresenceStatus];
    await this.#redis.hdel(this.#node(nodeId), connectionId);
    return { wentOffline: went === 1, lastSeenAt: toMs(lastSeenAt), status };
  }

  async heartbeat(nodeId: string): Promise<{ reaped: boolean }> {
    return { reaped: (await this.#heartbeat(this.#registry, this.#tombstone(nodeId), nodeId)) === 1 };
  }

  async reapDeadNodes(options: { spare?: string } = {}): Promise<{ deadNodes: string[]; wentOffline: WentOffline[] }> {
    const dead = (await this.#findDead(this.#registry, this.#nodeTtlMs, '')) as string[];
    const deadNodes: string[] = [];
    const wentOffline: WentOffline[] = [];
    for (let i = 0; i < dead.length; i += 2) {
      if (dead[i] === options.spare) continue;
      const { offline, removed } = await this.#reap(dead[i]!, dead[i + 1]!, true);
      if (removed) deadNodes.push(dead[i]!);
      wentOffline.push(...offline);
    }
    return { deadNodes, wentOffline };
  }

  async reapNode(nodeId: string): Promise<WentOffline[]> {
    const [, lastBeat] = (await this.#findDead(this.#registry, this.#nodeTtlMs, nodeId)) as [string, string];
    return (await this.#reap(nodeId, lastBeat, false)).offline;
  }

  /** Removes what `nodeId` holds, user slot by user slot, then the node itself (see the key layout). */
  async #reap(nodeId: string, lastBeat: string, leaveTombstone: boolean): Promise<{ offline: WentOffline[]; removed: boolean }> {
    const index = await this.#redis.hgetall(this.#node(nodeId));
    const entries = Object.entries(index);
    const offline: WentOffline[] = [];
    for (let start = 0; start < entries.length; start += REAP_BATCH) {
      const batch = entries.slice(start, start + REAP_BATCH);
      for (const group of groupBySlot(this.#redis, batch, ([, userId]) => this.#conns(userId))) {
        const keys = group.flatMap(([, userId]) => [this.#conns(userId), this.#user(userId)]);
        const rows = (await this.#userReap(keys.length, ...keys, nodeId, lastBeat, ...group.flat())) as Array<[string, Nullable, PresenceStatus]>;
        for (const [userId, lastSeenAt, status] of rows) offline.push({ userId, lastSeenAt: toMs(lastSeenAt), status });
      }
      await this.#redis.hdel(this.#node(nodeId), ...batch.map(([connectionId]) => connectionId));
    }
    const removed = await this.#forgetNode(this.#registry, this.#tombstone(nodeId), nodeId, leaveTombstone ? REAPED_MEMORY_MS : '');
    return { offline, removed: removed === 1 };
  }

  async setStatus(userId: string, status: PresenceStatus): Promise<{ previous: PresenceStatus; online: boolean }> {
    assertStatus(status);
    const [previous, online] = (await this.#setStatus(this.#user(userId), this.#conns(userId), status)) as [PresenceStatus, number];
    return { previous, online: online === 1 };
  }

  async get(userIds: readonly string[], options: PresenceViewpoint = {}): Promise<PresenceView[]> {
    if (userIds.length === 0) return [];
    const found = new Map<string, [number, PresenceStatus, Nullable]>();
    await Promise.all(
      groupBySlot(this.#redis, [...new Set(userIds)], (userId) => this.#conns(userId)).map(async (group) => {
        const keys = group.flatMap((userId) => [this.#conns(userId), this.#user(userId)]);
        const rows = (await this.#get(keys.length, ...keys)) as Array<[number, PresenceStatus, Nullable]>;
        for (const [i, userId] of group.entries()) found.set(userId, rows[i]!);
      }),
    );
    return userIds.map((userId) => {
      const [connected, status, lastSeenAt] = found.get(userId)!;
      return presenceView(userId, viewerOf(userId, options), connected === 1, status, toMs(lastSeenAt));
    });
  }
}

function toMs(value: Nullable): number | null {
  return value === null ? null : Number(value);
}
