import type { CallState } from '@chat/protocol';
import { byCall, FINAL_CALL_STATES, type CallPatch, type CallRecord, type CallStore, type CallTimings, type CallTransition, type NewCall, type Touched } from './calls.ts';
import type { RedisClient } from './redis-client.ts';
import { assertNoClientKeyPrefix, defineScript, LUA_NOW_MS, type RedisScript } from './redis-script.ts';

/*
 * Key layout (all under the store's prefix P = `${keyPrefix}{~calls}`):
 *   call:<callId>      STRING  the CallRecord as JSON; PX = ring timeout + liveTtlMs while ringing,
 *                              2 × liveTtlMs once accepted, finalTtlMs after
 *   call-user:<userId> STRING  the id of the user's live call (the busy marker), same PX as the call
 *   calls-ringing      ZSET    callId → ring deadline, for expireRinging
 * Scripts build the keys from the prefix they are given (ARGV[1]), like the presence store's, and
 * declare the ringing set as their one key. The hash tag keeps every call key in one slot of a
 * Redis Cluster: creating a call checks and sets both users' busy markers atomically. Calls are
 * few and small beside presence, typing and rate limits, which spread by user and conversation.
 */

const LUA_COMMON = `
${LUA_NOW_MS}
local prefix = ARGV[1]
local final = { ${[...FINAL_CALL_STATES].map((state) => `${state} = true`).join(', ')} }
local function call_key(id) return prefix .. 'call:' .. id end
local function marker_key(user) return prefix .. 'call-user:' .. user end
local function drop_markers(call)
  for _, user in ipairs({ call.callerId, call.calleeId }) do
    if redis.call('GET', marker_key(user)) == call.id then redis.call('DEL', marker_key(user)) end
  end
end
local function refresh_markers(call, ttl)
  for _, user in ipairs({ call.callerId, call.calleeId }) do
    if redis.call('GET', marker_key(user)) == call.id then redis.call('PEXPIRE', marker_key(user), ttl) end
  end
end
-- Moves a decoded call to a state, stamping times and keeping markers, TTL and the ringing index right.
local function apply(call, to, now, live_ttl, final_ttl)
  call.state = to
  if to == 'accepted' then
    call.acceptedAt = now
    call.calleeSeenAt = now
  end
  if final[to] then
    call.endedAt = now
    drop_markers(call)
    redis.call('ZREM', prefix .. 'calls-ringing', call.id)
    redis.call('SET', call_key(call.id), cjson.encode(call), 'PX', final_ttl)
  else
    if to ~= 'ringing' then redis.call('ZREM', prefix .. 'calls-ringing', call.id) end
    redis.call('SET', call_key(call.id), cjson.encode(call), 'PX', 2 * live_ttl)
    refresh_markers(call, 2 * live_ttl)
  end
end
`;

// ARGV: prefix, call JSON (NewCall), ringTimeoutMs, liveTtlMs, finalTtlMs
const CREATE = `
${LUA_COMMON}
local now = now_ms()
local call = cjson.decode(ARGV[2])
local ring, live_ttl, final_ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('EXISTS', marker_key(call.callerId)) == 1 then return { 'caller' } end
call.calleeDeviceId = cjson.null
call.endedBy = cjson.null
call.createdAt = now
call.ringDeadline = now + ring
call.acceptedAt = cjson.null
call.callerSeenAt = now
call.calleeSeenAt = cjson.null
if redis.call('EXISTS', marker_key(call.calleeId)) == 1 then
  call.state = 'busy'
  call.endedAt = now
  local json = cjson.encode(call)
  redis.call('SET', call_key(call.id), json, 'PX', final_ttl)
  return { 'callee', json }
end
call.state = 'ringing'
call.endedAt = cjson.null
local json = cjson.encode(call)
-- Outlives its deadline, whoever touches it, so expireRinging always finds it.
redis.call('SET', call_key(call.id), json, 'PX', ring + live_ttl)
redis.call('SET', marker_key(call.callerId), call.id, 'PX', ring + live_ttl)
redis.call('SET', marker_key(call.calleeId), call.id, 'PX', ring + live_ttl)
redis.call('ZADD', prefix .. 'calls-ringing', call.ringDeadline, call.id)
return { '', json }
`;

// ARGV: prefix, callId, from (comma-separated), to, patch JSON, liveTtlMs, finalTtlMs
const TRANSITION = `
${LUA_COMMON}
local raw = redis.call('GET', call_key(ARGV[2]))
if not raw then return { 0 } end
local call = cjson.decode(raw)
local allowed = false
for state in string.gmatch(ARGV[3], '[^,]+') do if state == call.state then allowed = true end end
if not allowed then return { 0, raw } end
for field, value in pairs(cjson.decode(ARGV[5])) do call[field] = value end
apply(call, ARGV[4], now_ms(), tonumber(ARGV[6]), tonumber(ARGV[7]))
return { 1, cjson.encode(call) }
`;

// ARGV: prefix, liveTtlMs, finalTtlMs, limit
const EXPIRE_RINGING = `
${LUA_COMMON}
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', prefix .. 'calls-ringing', '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local claimed = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', prefix .. 'calls-ringing', id)
  local raw = redis.call('GET', call_key(id))
  if raw then
    local call = cjson.decode(raw)
    if call.state == 'ringing' then
      call.endedBy = cjson.null
      apply(call, 'missed', now, tonumber(ARGV[2]), tonumber(ARGV[3]))
      table.insert(claimed, cjson.encode(call))
    end
  end
end
return claimed
`;

// ARGV: prefix, liveTtlMs, finalTtlMs, then (callId, deviceId) pairs → per pair: state ('' when gone), ended call JSON or ''
const TOUCH = `
${LUA_COMMON}
local now = now_ms()
local ttl, final_ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local results = {}
for i = 4, #ARGV, 2 do
  local raw = redis.call('GET', call_key(ARGV[i]))
  if not raw then
    table.insert(results, '')
    table.insert(results, '')
  else
    local call = cjson.decode(raw)
    local device = ARGV[i + 1]
    if call.state == 'ringing' and device == call.callerDeviceId then
      call.callerSeenAt = now
      redis.call('SET', call_key(call.id), cjson.encode(call), 'KEEPTTL')
    end
    if call.state ~= 'accepted' then
      table.insert(results, call.state)
      table.insert(results, '')
    else
      local other
      if device == call.callerDeviceId then
        call.callerSeenAt = now
        other = call.calleeSeenAt
      else
        if device == call.calleeDeviceId then call.calleeSeenAt = now end
        other = call.callerSeenAt
      end
      if other == cjson.null or other < now - ttl then
        call.endedBy = cjson.null
        apply(call, 'ended', now, ttl, final_ttl)
        table.insert(results, 'ended')
        table.insert(results, cjson.encode(call))
      else
        redis.call('SET', call_key(call.id), cjson.encode(call), 'PX', 2 * ttl)
        refresh_markers(call, 2 * ttl)
        table.insert(results, 'accepted')
        table.insert(results, '')
      end
    end
  end
end
return results
`;

/** The shared store: see {@link CallStore} for the guarantees, the key layout above. */
export class RedisCallStore implements CallStore {
  readonly #prefix: string;
  readonly #create: RedisScript;
  readonly #transition: RedisScript;
  readonly #expire: RedisScript;
  readonly #touch: RedisScript;
  readonly #redis: RedisClient;

  constructor(redis: RedisClient, options: { keyPrefix: string }) {
    assertNoClientKeyPrefix(redis);
    this.#redis = redis;
    this.#prefix = `${options.keyPrefix}{~calls}`;
    this.#create = defineScript(redis, 'callCreate', 1, CREATE);
    this.#transition = defineScript(redis, 'callTransition', 1, TRANSITION);
    this.#expire = defineScript(redis, 'callExpireRinging', 1, EXPIRE_RINGING);
    this.#touch = defineScript(redis, 'callTouch', 1, TOUCH);
  }

  get #ringing(): string {
    return `${this.#prefix}calls-ringing`;
  }

  async create(call: NewCall, timings: CallTimings): Promise<{ call: CallRecord; busy: null | 'callee' } | { call: null; busy: 'caller' }> {
    const [busy, json] = (await this.#create(this.#ringing, this.#prefix, JSON.stringify(call), timings.ringTimeoutMs, timings.liveTtlMs, timings.finalTtlMs)) as [string, string?];
    if (busy === 'caller') return { call: null, busy: 'caller' };
    return { call: parse(json!), busy: busy === 'callee' ? 'callee' : null };
  }

  async get(callId: string): Promise<CallRecord | null> {
    const raw = await this.#redis.get(`${this.#prefix}call:${callId}`);
    return raw === null ? null : parse(raw);
  }

  async transition(callId: string, from: readonly CallState[], to: CallState, patch: CallPatch, timings: CallTimings): Promise<CallTransition> {
    const [changed, json] = (await this.#transition(this.#ringing, this.#prefix, callId, from.join(','), to, JSON.stringify(patch), timings.liveTtlMs, timings.finalTtlMs)) as [number, string?];
    return { call: json === undefined ? null : parse(json), changed: changed === 1 };
  }

  async expireRinging(timings: CallTimings, limit = 100): Promise<CallRecord[]> {
    return ((await this.#expire(this.#ringing, this.#prefix, timings.liveTtlMs, timings.finalTtlMs, limit)) as string[]).map(parse);
  }

  async touch(devices: ReadonlyArray<{ callId: string; deviceId: string }>, timings: CallTimings): Promise<Map<string, Touched>> {
    if (devices.length === 0) return new Map();
    const flat = (await this.#touch(this.#ringing, this.#prefix, timings.liveTtlMs, timings.finalTtlMs, ...devices.flatMap((d) => [d.callId, d.deviceId]))) as string[];
    return byCall(devices.map((d, i): [string, Touched] => [d.callId, { state: flat[2 * i] ? (flat[2 * i] as CallState) : null, ended: flat[2 * i + 1] ? parse(flat[2 * i + 1]!) : null }]));
  }
}

function parse(json: string): CallRecord {
  return JSON.parse(json) as CallRecord;
}
