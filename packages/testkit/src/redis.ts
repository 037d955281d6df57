/**
 * A private redis-server on a free loopback port, without persistence, stopped and started at will
 * (outage tests, the chaos harness); and the clean-up of keys a run wrote into a shared Redis. The
 * system service on 6379 is never touched.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from './cluster.ts';
import { onExit, terminate, waitUntil, type RestartableService } from './service-lifetime.ts';

/** `url`: redis://127.0.0.1:PORT. `stop()` is SIGTERM, then the wait for the exit; without persistence every key is gone. */
export type PrivateRedis = RestartableService;

/** redis-server on a free port, no persistence, as a child process of ours. */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  const forget = onExit(() => child?.kill('SIGKILL'));
  const start = async () => {
    const spawned = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    child = spawned;
    exited = new Promise((resolve) => spawned.once('exit', () => resolve()));
    spawned.once('error', () => {});
    await waitUntil(() => pingRedis(port), 15_000, `redis-server on port ${port}`);
  };
  const stop = async () => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await terminate(child, exited);
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop,
    start,
    destroy: async () => {
      forget();
      await stop();
    },
  };
}

/** Whether the redis-server on loopback `port` answers PING. */
export async function pingRedis(port: number): Promise<boolean> {
  const { Redis } = await import('ioredis');
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => {});
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/**
 * Deletes every key under `prefix` (SCAN and UNLINK, never KEYS): what a test run or a benchmark
 * wrote into a shared Redis, removed when it ends, as its throwaway database is dropped. Presence
 * keeps a user's last-seen record with no TTL on purpose, so without this every run would leave
 * one key per user it connected behind.
 */
export async function deleteRedisKeys(url: string, prefix: string): Promise<number> {
  if (!prefix) throw new Error('deleteRedisKeys needs a prefix: it would empty the whole database');
  const { Redis } = await import('ioredis');
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  let deleted = 0;
  try {
    await client.connect();
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`, 'COUNT', 1000);
      if (keys.length > 0) deleted += await client.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
    return deleted;
  } finally {
    client.disconnect();
  }
}
