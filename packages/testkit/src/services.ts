/**
 * Private PostgreSQL, Redis and PgBouncer instances on free loopback ports, for runs that stop and
 * restart them (the chaos harness, outage tests) or put a pooler in front (the PgBouncer tests). The
 * system services on 5432/6379 are never touched. Each instance lives in a temporary folder that
 * destroy() removes; a process that exits without destroy() still kills them (synchronously, on 'exit').
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { createServer } from 'node:net';
import pg from 'pg';
import { parseDatabaseUrl } from '@chat/server/db/url';
import { freePort } from './cluster.ts';
import { findExecutable } from './executables.ts';

export interface PrivatePostgres {
  /** postgresql://postgres@127.0.0.1:PORT/postgres */
  readonly url: string;
  readonly port: number;
  /** Fast shutdown (`pg_ctl stop -m fast`): connections are cut, committed data stays. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data folder; resolves when it accepts connections. */
  start(): Promise<void>;
  /** Stops it for good and removes its folder. Idempotent. */
  destroy(): Promise<void>;
}

export interface PrivateRedis {
  /** redis://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  /** SIGTERM, then wait for the exit. Without persistence every key is gone. */
  stop(): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
}

const cleanups = new Set<() => void>();
let exitHooked = false;
function onExit(cleanup: () => void): () => void {
  if (!exitHooked) {
    exitHooked = true;
    process.on('exit', () => {
      for (const run of cleanups) run();
    });
  }
  cleanups.add(cleanup);
  return () => cleanups.delete(cleanup);
}

/** The newest PostgreSQL server binaries installed (Debian: /usr/lib/postgresql/N/bin), else PATH. */
export function findPostgresBin(): string {
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((name) => existsSync(join(base, name, 'bin/pg_ctl')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return join(base, versions[0], 'bin');
  }
  const which = spawnSync('sh', ['-c', 'command -v pg_ctl'], { encoding: 'utf8' });
  if (which.status === 0 && which.stdout.trim()) return join(which.stdout.trim(), '..');
  throw new Error('no PostgreSQL server binaries (pg_ctl) found: apt-get install -y postgresql');
}

/**
 * initdb into a temp folder and start it on a free port. PostgreSQL refuses to run as root, so as root
 * every server command runs as the `postgres` OS user (runuser). fsync is off: the instance is only
 * ever stopped cleanly (a fast shutdown writes everything out), never by a power cut, and the machine is
 * shared.
 */
export async function startPrivatePostgres(options: { verbose?: boolean } = {}): Promise<PrivatePostgres> {
  const bin = findPostgresBin();
  const asRoot = userInfo().uid === 0;
  const dir = mkdtempSync(join(tmpdir(), 'chat-pg-'));
  const data = join(dir, 'data');
  if (asRoot) {
    const owner = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
    const group = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
    if (owner.status !== 0) throw new Error('running as root needs the `postgres` OS user to run PostgreSQL');
    chownSync(dir, Number(owner.stdout), Number(group.stdout));
    chmodSync(dir, 0o700);
  }
  const run = (tool: string, args: string[], timeout = 60_000) => {
    const command = asRoot ? (['runuser', ['-u', 'postgres', '--', join(bin, tool), ...args]] as const) : ([join(bin, tool), args] as const);
    const result = spawnSync(command[0], command[1], { encoding: 'utf8', timeout, stdio: ['ignore', 'pipe', 'pipe'] });
    if (result.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed (${result.status ?? result.signal}):\n${result.stdout}${result.stderr}`);
    if (options.verbose) process.stderr.write(result.stdout + result.stderr);
  };
  const port = await freePort();
  const url = `postgresql://postgres@127.0.0.1:${port}/postgres`;
  let running = false;
  const stopNow = (mode: 'fast' | 'immediate') => {
    if (!existsSync(join(data, 'postmaster.pid'))) return;
    run('pg_ctl', ['stop', '-D', data, '-m', mode, '-w', '-t', '30']);
  };
  const forget = onExit(() => {
    try {
      stopNow('immediate');
    } catch {
      // exiting anyway
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const start = async () => {
    // -k: the socket goes into our folder, not /var/run/postgresql; -h: loopback only.
    const serverOptions = `-p ${port} -h 127.0.0.1 -k ${dir} -c fsync=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=64MB`;
    run('pg_ctl', ['start', '-D', data, '-l', join(dir, 'postgres.log'), '-w', '-t', '60', '-o', serverOptions]);
    running = true;
    await waitUntil(() => pingPostgres(url), 30_000, `PostgreSQL on port ${port}`);
  };

  try {
    run('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8', '--locale=C']);
    await start();
  } catch (error) {
    forget();
    try {
      stopNow('immediate');
    } catch {
      // reported below
    }
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }

  let destroyed = false;
  return {
    url,
    port,
    stop: async () => {
      stopNow('fast');
      running = false;
    },
    start,
    destroy: async () => {
      if (destroyed) return;
      destroyed = true;
      forget();
      if (running || existsSync(join(data, 'postmaster.pid'))) stopNow('fast');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function pingPostgres(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: parseDatabaseUrl(url).url, connectionTimeoutMillis: 1000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

export interface PrivatePgBouncer {
  /** The target's database through this PgBouncer: `postgresql://USER@127.0.0.1:PORT/DB?pgbouncer=true`. */
  readonly url: string;
  readonly port: number;
  /** PgBouncer's process id. */
  readonly pid: number;
  /** The last lines PgBouncer logged. */
  logs(): string[];
  /** SIGTERM (PgBouncer 1.18's immediate shutdown: client connections are cut), then removes its folder. Idempotent. */
  destroy(): Promise<void>;
}

export interface PgBouncerOptions {
  /**
   * The PostgreSQL it forwards to. Every database on that server is reachable through it (a `*`
   * entry) as the URL's user, whose password, if any, PgBouncer uses to log in to PostgreSQL.
   */
  target: string;
  /** `default_pool_size`: server connections per database and user. @default 10 */
  poolSize?: number;
  /** `max_client_conn`: client connections it accepts in all. @default 1000 */
  maxClientConnections?: number;
  /** Forward its log lines to stderr. @default false */
  verbose?: boolean;
}

/** The pgbouncer binary on PATH, /usr/sbin or /usr/local/sbin (Debian: `apt-get install -y pgbouncer`). */
export function findPgBouncer(): string | undefined {
  return findExecutable('pgbouncer');
}

/**
 * PgBouncer in `pool_mode = transaction` on a free loopback port, as a child process of ours: the
 * pooler production puts between many replicas and one PostgreSQL. Clients are trusted (`auth_type =
 * trust`; the user must still be listed in its auth file). PgBouncer refuses to run as root, so as root
 * it runs as the `postgres` OS user (else `nobody`), which owns its folder.
 */
export async function startPrivatePgBouncer(options: PgBouncerOptions): Promise<PrivatePgBouncer> {
  const bin = findPgBouncer();
  if (!bin) throw new Error('no pgbouncer binary on PATH or in /usr/sbin (`apt-get install -y pgbouncer`)');
  const target = new URL(options.target);
  const user = decodeURIComponent(target.username) || 'postgres';
  const quote = (value: string) => `"${value.replaceAll('"', '""')}"`;
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'chat-pgbouncer-'));
  writeFileSync(join(dir, 'users.txt'), `${quote(user)} ${quote(decodeURIComponent(target.password))}\n`);
  writeFileSync(
    join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      // Any database name a client asks for, on the target server.
      `* = host=${target.hostname.replace(/^\[(.*)\]$/, '$1')} port=${target.port || 5432}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'pool_mode = transaction',
      'auth_type = trust',
      `auth_file = ${join(dir, 'users.txt')}`,
      `max_client_conn = ${options.maxClientConnections ?? 1000}`,
      `default_pool_size = ${options.poolSize ?? 10}`,
      // A query that has waited 3 s for a server connection (PostgreSQL down, or the pool saturated)
      // fails with an error the node answers as `unavailable`, as it does after its own 3 s connect
      // timeout; PgBouncer's default (120 s) holds requests far past a client's ack timeout (10 s).
      'query_wait_timeout = 3',
      // After a failed server login PgBouncer refuses new clients until it tries again: 1 s, not 15,
      // so an outage ends for the nodes about when it ends for PostgreSQL.
      'server_login_retry = 1',
      'logfile =',
      'pidfile =',
      '',
    ].join('\n'),
  );
  let command: [string, string[]] = [bin, [join(dir, 'pgbouncer.ini')]];
  if (userInfo().uid === 0) {
    const runAs = ['postgres', 'nobody'].find((name) => spawnSync('id', ['-u', name]).status === 0);
    if (!runAs) throw new Error('running as root needs a `postgres` or `nobody` OS user to run PgBouncer');
    const id = (flag: string) => Number(spawnSync('id', [flag, runAs], { encoding: 'utf8' }).stdout);
    chownSync(dir, id('-u'), id('-g'));
    chmodSync(dir, 0o700);
    for (const file of ['users.txt', 'pgbouncer.ini']) chownSync(join(dir, file), id('-u'), id('-g'));
    command = ['setpriv', [`--reuid=${runAs}`, `--regid=${runAs}`, '--init-groups', bin, join(dir, 'pgbouncer.ini')]];
  }

  // setpriv execs pgbouncer, so the child's pid is PgBouncer's.
  const child = spawn(command[0], command[1], { stdio: ['ignore', 'pipe', 'pipe'] });
  const tail: string[] = [];
  const keep = (line: string) => {
    tail.push(line);
    if (tail.length > 200) tail.shift();
    if (options.verbose) process.stderr.write(`[pgbouncer] ${line}\n`);
  };
  createInterface({ input: child.stdout! }).on('line', keep);
  createInterface({ input: child.stderr! }).on('line', keep);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    // A failed spawn (no setpriv, say) emits no 'exit'.
    child.once('error', (error) => {
      keep(String(error));
      if (child.pid === undefined) resolve();
    });
  });
  const forget = onExit(() => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const through = new URL(options.target);
  through.hostname = '127.0.0.1';
  through.port = String(port);
  through.searchParams.set('pgbouncer', 'true');
  const url = through.toString();

  let destroyed = false;
  const destroy = async () => {
    if (destroyed) return;
    destroyed = true;
    forget();
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitUntil(
      async () => {
        if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) throw new Error(`pgbouncer exited (${child.exitCode ?? child.signalCode}):\n${tail.join('\n')}`);
        return pingPostgres(url);
      },
      15_000,
      `pgbouncer on port ${port}`,
    );
  } catch (error) {
    await destroy();
    throw error;
  }
  return { url, port, pid: child.pid!, logs: () => [...tail], destroy };
}

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
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(5000)]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
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

async function pingRedis(port: number): Promise<boolean> {
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
async function freeClusterPort(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port <= 55535 && (await portFree(port + 10000))) return port;
    const low = 20000 + Math.floor(Math.random() * 30000);
    if ((await portFree(low)) && (await portFree(low + 10000))) return low;
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** Polls `probe` every 100 ms until it is true; throws once `timeoutMs` has passed. */
export async function waitUntil(probe: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`${what} did not come up within ${timeoutMs} ms`);
    await sleep(100);
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
