import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

export type RedisScript = (...keysThenArgs: Array<string | number>) => Promise<unknown>;

/**
 * Registers a Lua script on the client with ioredis `defineCommand` (EVALSHA, falling back to EVAL
 * when Redis lost its script cache) and returns it as a plain function taking KEYS then ARGV
 * (with `'per-call'`, the number of KEYS first).
 * The command name carries a digest of the source, so two versions of a script on one client
 * (a rolling deploy in tests, say) never shadow each other.
 */
export function defineScript(redis: Redis, name: string, numberOfKeys: number | 'per-call', lua: string): RedisScript {
  const command = `chatState_${name}_${createHash('sha1').update(lua).digest('hex').slice(0, 8)}`;
  const commands = redis as unknown as Record<string, RedisScript | undefined>;
  if (typeof commands[command] !== 'function') redis.defineCommand(command, numberOfKeys === 'per-call' ? { lua } : { lua, numberOfKeys });
  const script = commands[command];
  if (!script) throw new Error(`ioredis did not define ${command}`);
  return script.bind(redis);
}

/**
 * Our keys are built inside Lua from the prefix we pass, so ioredis' own `keyPrefix` (which only
 * rewrites declared KEYS) would scatter one store over two namespaces.
 */
export function assertNoClientKeyPrefix(redis: Redis): void {
  if (redis.options.keyPrefix) {
    throw new Error('State stores take keyPrefix themselves: create the ioredis client without the keyPrefix option.');
  }
}

/** Redis server time in whole milliseconds; every script reads the clock here, never the caller's. */
export const LUA_NOW_MS = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`;
