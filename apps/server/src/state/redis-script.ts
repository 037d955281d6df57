import { createHash } from 'node:crypto';
import { isCluster, type RedisClient } from './redis-client.ts';

export type RedisScript = (...keysThenArgs: Array<string | number>) => Promise<unknown>;

/**
 * Registers a Lua script on the client with ioredis `defineCommand` (EVALSHA, falling back to EVAL
 * when Redis lost its script cache) and returns it as a plain function taking KEYS then ARGV
 * (with `'per-call'`, the number of KEYS first).
 * The command name carries a digest of the source, so two versions of a script on one client
 * (a rolling deploy in tests, say) never shadow each other.
 * On a Redis Cluster a script is routed by its first key, and every key it touches must share that
 * key's slot: scripts declare at least one key, and build further keys only within its hash tag.
 */
export function defineScript(redis: RedisClient, name: string, numberOfKeys: number | 'per-call', lua: string): RedisScript {
  const command = `chatState_${name}_${createHash('sha1').update(lua).digest('hex').slice(0, 8)}`;
  const commands = redis as unknown as Record<string, RedisScript | undefined>;
  if (typeof commands[command] !== 'function') {
    redis.defineCommand(command, numberOfKeys === 'per-call' ? { lua } : { lua, numberOfKeys });
    // ioredis' auto-pipelining picks a cluster slot from a command's first argument, which for a
    // script given its number of keys per call is that number, not a key: such scripts are sent on
    // their own, routed by their real first key.
    if (numberOfKeys === 'per-call' && isCluster(redis)) {
      redis.options.autoPipeliningIgnoredCommands = [...(redis.options.autoPipeliningIgnoredCommands ?? []), command];
    }
  }
  const script = commands[command];
  if (!script) throw new Error(`ioredis did not define ${command}`);
  return script.bind(redis);
}

/**
 * Our keys are built inside Lua from the prefix we pass, so ioredis' own `keyPrefix` (which only
 * rewrites declared KEYS) would scatter one store over two namespaces.
 */
export function assertNoClientKeyPrefix(redis: RedisClient): void {
  const options = redis.options as { keyPrefix?: string; redisOptions?: { keyPrefix?: string } };
  if (options.keyPrefix || options.redisOptions?.keyPrefix) {
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
