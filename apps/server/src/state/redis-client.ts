import calculateSlot from 'cluster-key-slot';
import { Cluster, type Redis } from 'ioredis';

/** One Redis server or a Redis Cluster: the state stores and the cluster bus run on either. */
export type RedisClient = Redis | Cluster;

export function isCluster(redis: RedisClient): redis is Cluster {
  return redis instanceof Cluster;
}

/**
 * `{tag}`: the part of a key Redis Cluster hashes to pick its slot. Keys of one user (or one
 * conversation) share a tag, so a script touching only them runs on one shard, and the tags spread
 * different users over all shards. A tag holds ids only: user ids cannot contain braces.
 */
export function hashTag(id: string): string {
  return `{${id}}`;
}

/**
 * Splits `items` into groups whose keys share one hash slot, in first-seen order, so each group
 * can be one script call (Redis Cluster refuses a script whose keys span slots). A single Redis is
 * one group: one call.
 */
export function groupBySlot<T>(redis: RedisClient, items: readonly T[], keyOf: (item: T) => string): T[][] {
  if (!isCluster(redis)) return items.length > 0 ? [[...items]] : [];
  const groups = new Map<number, T[]>();
  for (const item of items) {
    const slot = calculateSlot(keyOf(item));
    const group = groups.get(slot);
    if (group) group.push(item);
    else groups.set(slot, [item]);
  }
  return [...groups.values()];
}
