import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, inject } from 'vitest';
import { eventually } from '@chat/testkit/eventually';
import { deleteRedisKeys, startPrivateRedisCluster, type PrivateRedisCluster } from '@chat/testkit/services';
import { createStateStores, type RedisClient, type StateStores } from '../../src/state/index.ts';

/**
 * The backends the state contract suites run against: memory, one Redis, and a private Redis
 * Cluster. Each suite runs the same tests against every backend, as the redis adapter's
 * `testSuite(createAdapter)` does.
 */

export const NODE_TTL_MS = 300;
/** The store clock may be Redis' own; on one machine it agrees with ours to well within this. */
export const CLOCK_SLACK_MS = 250;
export const REDIS_URL = process.env.REDIS_URL ?? inject('redisUrl') ?? 'redis://127.0.0.1:6379';

/**
 * The time the stores of a backend go by. Tests read and move time only through it, so the memory
 * stores run on a clock the test moves (no waiting) and the Redis ones on real time, which Redis owns
 * (its `TIME`, its key expiry).
 */
export interface TestClock {
  /** Epoch ms as the stores see it (within CLOCK_SLACK_MS for Redis). */
  now(): number;
  /** Lets `ms` pass. */
  advance(ms: number): Promise<void>;
  /** Retries `assertion` until it passes or `timeoutMs` passed on this clock, `intervalMs` apart; then rethrows its last failure. */
  eventually<T>(assertion: () => T | Promise<T>, options?: { timeoutMs?: number; intervalMs?: number }): Promise<T>;
}

/** A clock that moves only when told: time passes instantly, and exactly as much as asked. */
export class ManualClock implements TestClock {
  #now = Date.now();

  now = (): number => this.#now;

  async advance(ms: number): Promise<void> {
    this.#now += ms;
  }

  async eventually<T>(assertion: () => T | Promise<T>, { timeoutMs = 5000, intervalMs = 25 } = {}): Promise<T> {
    const deadline = this.#now + timeoutMs;
    for (;;) {
      try {
        return await assertion();
      } catch (error) {
        if (this.#now > deadline) throw error;
        this.#now += intervalMs;
      }
    }
  }
}

export const realClock: TestClock = { now: Date.now, advance: (ms) => sleep(ms), eventually };

/**
 * A backend hands out `count` views of one fresh, empty state, as separate nodes would see it:
 * the same object for memory, separate connections for Redis so races are real.
 */
export interface Backend {
  name: string;
  clock: TestClock;
  cluster(count: number): StateStores[];
}

export interface StateBackends {
  memory: Backend;
  redis: Backend;
  redisCluster: Backend;
  /** The `i`th connection to the one Redis, shared by the stores `redis.cluster` created. */
  redisClient(i: number): Redis;
  /** The key prefix of stores a Redis backend created. */
  prefixOf(stores: StateStores): string;
}

/**
 * The three backends of a contract suite. Call it once at the top of a test file: it starts the
 * private Redis Cluster before the file's tests and, after them, closes every connection and deletes
 * the keys it wrote in the shared Redis.
 */
export function stateBackends(): StateBackends {
  // Unique per run and deleted afterwards: other suites and runs share this Redis.
  const runPrefix = `${inject('redisPrefix') ?? 'test:'}state:${randomUUID()}:`;
  let states = 0;
  const nextPrefix = () => `${runPrefix}${states++}:`;

  const clock = new ManualClock();
  const memory: Backend = {
    name: 'memory',
    clock,
    cluster(count) {
      const stores = createStateStores({ keyPrefix: 'unused:', presence: { nodeTtlMs: NODE_TTL_MS }, now: clock.now });
      return Array.from({ length: count }, () => stores);
    },
  };

  const prefixes = new WeakMap<StateStores, string>();
  const redisBackend = (name: string, client: (i: number) => RedisClient): Backend => ({
    name,
    clock: realClock,
    cluster(count) {
      const keyPrefix = nextPrefix();
      return Array.from({ length: count }, (_, i) => {
        const stores = createStateStores({ redis: client(i), keyPrefix, presence: { nodeTtlMs: NODE_TTL_MS } });
        prefixes.set(stores, keyPrefix);
        return stores;
      });
    },
  });

  const redisClients: Redis[] = [];
  const redisClient = (i: number): Redis => {
    while (redisClients.length <= i) redisClients.push(new Redis(REDIS_URL, { connectionName: 'state-contract-test' }));
    return redisClients[i]!;
  };
  const redis = redisBackend('redis', redisClient);

  /** A private Redis Cluster (3 masters, 3 replicas): the stores' scripts must keep to one slot each. */
  let privateCluster: PrivateRedisCluster | undefined;
  const clusterClients: Cluster[] = [];
  const redisCluster = redisBackend('redis-cluster', (i) => {
    while (clusterClients.length <= i) {
      const nodes = privateCluster!.ports.map((port) => ({ host: '127.0.0.1', port }));
      clusterClients.push(new Cluster(nodes, { redisOptions: { connectionName: 'state-contract-test' }, enableAutoPipelining: true }));
    }
    return clusterClients[i]!;
  });

  beforeAll(async () => {
    privateCluster = await startPrivateRedisCluster();
  });

  afterAll(async () => {
    await Promise.all(clusterClients.map((c) => c.quit()));
    await privateCluster?.destroy();
    if (redisClients.length === 0) return;
    await deleteRedisKeys(REDIS_URL, runPrefix);
    await Promise.all(redisClients.map((c) => c.quit()));
  });

  return { memory, redis, redisCluster, redisClient, prefixOf: (stores) => prefixes.get(stores)! };
}

export const id = (kind: string) => `${kind}-${randomUUID()}`;
