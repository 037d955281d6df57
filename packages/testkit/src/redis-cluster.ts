/**
 * A private Redis Cluster (masters with replicas, from the redis-server binary) on free loopback ports,
 * whose nodes can be killed, paused and started again: the failover tests and the chaos harness.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pingRedis } from './redis.ts';
import { onExit, waitUntil } from './service-lifetime.ts';

export interface PrivateRedisCluster {
  /** `127.0.0.1:P1,127.0.0.1:P2,…`: every node, as REDIS_CLUSTER_NODES takes them. */
  readonly nodes: string;
  readonly ports: readonly number[];
  /** The masters now, with the slot ranges each serves, read from a live node. */
  masters(): Promise<Array<{ port: number; slots: Array<[number, number]> }>>;
  /** SIGKILL one node: a master's replica takes over after `cluster-node-timeout`. */
  kill(port: number): Promise<void>;
  /** The ports of the replicas of the master at `port`. */
  replicasOf(port: number): Promise<number[]>;
  /** SIGSTOP / SIGCONT one node: a paused replica cannot be promoted, so a failover waits for it. */
  pause(port: number): void;
  resume(port: number): void;
  /** Starts a killed node again on its port and folder; it rejoins (a former master as a replica). */
  start(port: number): Promise<void>;
  /** Resolves when every running node says cluster_state:ok and every slot is served by a running master (after a kill: once its replica took over). */
  waitHealthy(timeoutMs?: number): Promise<void>;
  destroy(): Promise<void>;
}

/** Failure detection in a private cluster: a killed master's replica is promoted about this long after. */
export const PRIVATE_CLUSTER_NODE_TIMEOUT_MS = 1000;

/**
 * A Redis Cluster of `masters` masters with `replicas` replicas each, from the redis-server binary
 * (`cluster-enabled yes`, joined with `redis-cli --cluster create`), on free loopback ports whose
 * cluster-bus ports (port + 10000) are free too. No persistence; nodes.conf lives in a temporary
 * folder so a killed node rejoins with its identity.
 */
export async function startPrivateRedisCluster(options: { masters?: number; replicas?: number } = {}): Promise<PrivateRedisCluster> {
  const masters = options.masters ?? 3;
  const replicas = options.replicas ?? 1;
  const dir = mkdtempSync(join(tmpdir(), 'chat-redis-cluster-'));
  const ports: number[] = [];
  while (ports.length < masters * (1 + replicas)) {
    const port = await freeClusterPort();
    if (!ports.includes(port)) ports.push(port);
  }
  const children = new Map<number, { child: ChildProcess; exited: Promise<void> }>();
  const forget = onExit(() => {
    for (const { child } of children.values()) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const start = async (port: number) => {
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        `nodes-${port}.conf`,
        '--cluster-node-timeout',
        String(PRIVATE_CLUSTER_NODE_TIMEOUT_MS),
        // A replica whose master died a while ago may still be promoted (tests kill masters on purpose).
        '--cluster-replica-validity-factor',
        '0',
      ],
      { stdio: 'ignore' },
    );
    child.once('error', () => {});
    children.set(port, { child, exited: new Promise((resolve) => child.once('exit', () => resolve())) });
    await waitUntil(() => pingRedis(port), 15_000, `redis-server (cluster) on port ${port}`);
  };
  const kill = async (port: number) => {
    const entry = children.get(port);
    if (!entry || entry.child.exitCode !== null || entry.child.signalCode !== null) return;
    entry.child.kill('SIGKILL');
    await entry.exited;
  };
  const running = () =>
    ports.filter((port) => {
      const entry = children.get(port);
      return entry && entry.child.exitCode === null && entry.child.signalCode === null;
    });
  const clusterCommand = async <T>(port: number, ...args: string[]): Promise<T> => {
    const { Redis } = await import('ioredis');
    const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => {});
    try {
      await client.connect();
      return (await client.call('CLUSTER', ...args)) as T;
    } finally {
      client.disconnect();
    }
  };
  const readMasters = async () => {
    for (const port of running()) {
      try {
        const lines = (await clusterCommand<string>(port, 'NODES')).trim().split('\n');
        return lines
          .map((line) => line.split(' '))
          .filter((fields) => fields[2]!.split(',').includes('master') && !fields[2]!.includes('fail') && fields.length > 8)
          .map((fields) => ({
            port: Number(fields[1]!.split('@')[0]!.split(':')[1]),
            slots: fields
              .slice(8)
              .filter((range) => !range.startsWith('['))
              .map((range) => {
                const [from, to] = range.split('-').map(Number) as [number, number?];
                return [from, to ?? from] as [number, number];
              }),
          }));
      } catch {
        // That node is going away: ask the next one.
      }
    }
    throw new Error('no Redis Cluster node answers');
  };
  const replicasOf = async (port: number) => {
    for (const live of running()) {
      try {
        const lines = (await clusterCommand<string>(live, 'NODES'))
          .trim()
          .split('\n')
          .map((line) => line.split(' '));
        const master = lines.find((fields) => fields[1]!.split('@')[0] === `127.0.0.1:${port}`);
        if (!master) return [];
        return lines.filter((fields) => fields[3] === master[0]).map((fields) => Number(fields[1]!.split('@')[0]!.split(':')[1]));
      } catch {
        // Ask the next node.
      }
    }
    throw new Error('no Redis Cluster node answers');
  };
  const signal = (port: number, name: NodeJS.Signals) => {
    children.get(port)?.child.kill(name);
  };
  const waitHealthy = async (timeoutMs = 30_000) => {
    await waitUntil(
      async () => {
        try {
          for (const port of running()) {
            if (!(await clusterCommand<string>(port, 'INFO')).includes('cluster_state:ok')) return false;
          }
          const live = running();
          const owners = await readMasters();
          // A killed master still counts as one until the others flag it failed and promote its replica.
          if (owners.some((master) => master.slots.length > 0 && !live.includes(master.port))) return false;
          return owners.flatMap((master) => master.slots).reduce((sum, [from, to]) => sum + to - from + 1, 0) === 16384;
        } catch {
          return false;
        }
      },
      timeoutMs,
      'Redis Cluster (cluster_state:ok, every slot served)',
    );
  };

  try {
    await Promise.all(ports.map(start));
    const created = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', String(replicas), '--cluster-yes'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`);
    await waitHealthy();
    // Replicas must have synced before a test kills a master, or there is nobody to promote.
    await waitUntil(
      async () => {
        const info = await Promise.all(ports.map((port) => clusterCommand<string>(port, 'NODES')));
        return info.every((nodes) => nodes.split('\n').filter((line) => line.includes('slave')).length === masters * replicas);
      },
      30_000,
      'Redis Cluster replicas attached',
    );
  } catch (error) {
    for (const port of ports) await kill(port);
    forget();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    nodes: ports.map((port) => `127.0.0.1:${port}`).join(','),
    ports,
    masters: readMasters,
    replicasOf,
    pause: (port) => signal(port, 'SIGSTOP'),
    resume: (port) => signal(port, 'SIGCONT'),
    kill,
    start,
    waitHealthy,
    destroy: async () => {
      forget();
      for (const port of ports) await kill(port);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A free port P below 55536 whose cluster-bus port P + 10000 is free as well. */
/**
 * A port whose cluster-bus port (+10000) is free too, both below Linux's ephemeral range (32768 and
 * up by default): a port checked free there can be taken, before redis-server binds it, by any
 * outgoing connection of the tests running alongside (a CI run lost a cluster to that: the node
 * could not bind and never answered). Below it, only a listener chosen on purpose can take it.
 */
async function freeClusterPort(): Promise<number> {
  for (;;) {
    const port = 12000 + Math.floor(Math.random() * 10_000);
    if ((await portFree(port)) && (await portFree(port + 10000))) return port;
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
