/**
 * The no-Docker twin of docker-compose.yml: migrations once, N chat nodes as child processes, and nginx
 * in front of them with the repository's nginx.conf, laid out as its header comment specifies. Used by
 * `npm run cluster` (cli.ts), tests, benchmarks and chaos runs, which kill and restart nodes through
 * the returned handle.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { CONFIG_VARIABLES, migrationDatabaseUrl } from '@chat/server/config';
import { applyMigrations } from '@chat/server/db/migrations';
import { findExecutable } from './executables.ts';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SERVER_MAIN = join(ROOT, 'apps/server/src/main.ts');
// The repository pins Node 24 in node_modules; the system node may be older than the server needs.
const PINNED_NODE = join(ROOT, 'node_modules/node/bin/node');
const NODE_BIN = existsSync(PINNED_NODE) ? PINNED_NODE : process.execPath;
const TAIL_LINES = 200;

export const DEFAULT_DATABASE_URL = 'postgresql://postgres@127.0.0.1:5432/chat';
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
/** docker-compose.yml's default, so tokens minted against either set-up work on both. */
export const COMPOSE_DEV_JWT_SECRET = 'compose-local-dev-secret-change-me-0123456789';

/** What a cluster node gets for these variables when the environment leaves them unset: docker-compose.yml's values. */
export const CLUSTER_DEFAULTS: Readonly<Record<string, string>> = {
  NODE_ENV: 'development',
  DATABASE_URL: DEFAULT_DATABASE_URL,
  REDIS_URL: DEFAULT_REDIS_URL,
  JWT_SECRET: COMPOSE_DEV_JWT_SECRET,
  DEV_TOKENS: 'true',
  LOG_LEVEL: 'info',
  SHUTDOWN_TIMEOUT_MS: '10000',
};

export interface ClusterOptions {
  /** How many chat nodes. @default 3 */
  nodes?: number;
  /** nginx's port on 127.0.0.1; 0 picks a free one. @default 0 */
  port?: number;
  /** node-1 listens on basePort, node-2 on basePort + 1, …; unset picks free ports. */
  basePort?: number;
  /**
   * Environment of every node, over process.env and {@link CLUSTER_DEFAULTS}. Every variable of the
   * node's configuration (CONFIG_VARIABLES in apps/server/src/config.ts) that process.env sets, empty
   * counting as unset, reaches the nodes; NODE_ID, HOST and PORT are always the cluster's. Migrations
   * run against DATABASE_DIRECT_URL, else DATABASE_URL; the default database
   * ({@link DEFAULT_DATABASE_URL}) is created when missing.
   * @example { DATABASE_URL: 'postgresql://…/chat_test_1', REDIS_KEY_PREFIX: 'test:1:' }
   */
  env?: Record<string, string | undefined>;
  /** Forward every node's and nginx's output, line by line with a `[node-1]` prefix. @default false */
  verbose?: boolean;
  /** `access_log off;` instead of DIR/access.log (cheapest for load tests). @default true */
  accessLog?: boolean;
  /** The nginx binary. @default {@link findNginx}() */
  nginx?: string;
  /** Longest wait for one node's /readyz or for nginx's /healthz. @default 30_000 */
  readyTimeoutMs?: number;
  /**
   * Extra Node.js flags for node `index` (0-based), also on restarts.
   * @example (index) => [`--inspect=127.0.0.1:${9229 + index}`]
   */
  nodeArgs?: (index: number) => string[];
  /**
   * The TypeScript program every node runs (it must serve /readyz on HOST:PORT). Benchmarks run
   * their bare relay this way; a program other than the chat server gets no database migration.
   * @default apps/server/src/main.ts
   */
  program?: string;
}

export interface ClusterNode {
  /** NODE_ID: node-1 … node-N. */
  readonly id: string;
  readonly port: number;
  /** http://127.0.0.1:PORT, the node directly (not through nginx). */
  readonly url: string;
  /** The current process; changes on {@link Cluster.restartNode}. */
  pid: number;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Cluster {
  /** nginx: http://127.0.0.1:PORT. */
  readonly url: string;
  readonly nodes: readonly ClusterNode[];
  readonly nginxPid: number;
  /** The run folder: nginx.conf, cluster/*.conf, access.log. Removed by stop(). */
  readonly dir: string;
  /** The last lines a node (by index) or nginx wrote, kept also when verbose. */
  logs(target: number | 'nginx'): string[];
  /**
   * Signals node `index` (0-based) and resolves when it has exited; at once if it already had.
   * nginx skips a refused node for 5 s (`fail_timeout`) and sends its keys to the next one.
   */
  killNode(index: number, signal?: NodeJS.Signals): Promise<ExitInfo>;
  /**
   * Starts node `index` again with the same id and port (stopping it first with SIGTERM if it still
   * runs) and resolves when it is ready. nginx retries it once its `fail_timeout` (5 s) has passed.
   */
  restartNode(index: number): Promise<void>;
  /** SIGTERM to every node (they drain), then nginx; removes the run folder. Idempotent. */
  stop(): Promise<void>;
}

/** nginx on PATH, else where Debian puts it (/usr/sbin is not on a non-root user's PATH). */
export function findNginx(): string | undefined {
  return findExecutable('nginx');
}

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const count = options.nodes ?? 3;
  const readyTimeoutMs = options.readyTimeoutMs ?? 30_000;
  const verbose = options.verbose ?? false;
  const nginxBin = options.nginx ?? findNginx();
  if (!Number.isInteger(count) || count < 1) throw new Error(`nodes: expected an integer >= 1, got ${count}`);
  if (!nginxBin) throw new Error('no nginx binary on PATH or in /usr/sbin (`apt-get install -y nginx`)');

  const inherited = Object.fromEntries(CONFIG_VARIABLES.flatMap((name) => (process.env[name] ? [[name, process.env[name]]] : [])));
  const env: Record<string, string | undefined> = { ...CLUSTER_DEFAULTS, ...inherited, ...options.env };
  // Seeds of a Redis Cluster replace the default single Redis (the node refuses both at once).
  if (env['REDIS_CLUSTER_NODES'] && !inherited['REDIS_URL'] && !options.env?.['REDIS_URL']) delete env['REDIS_URL'];
  const program = options.program ?? SERVER_MAIN;
  if (program === SERVER_MAIN) {
    const migrateUrl = migrationDatabaseUrl(env);
    await prepareDatabase(migrateUrl, migrateUrl === DEFAULT_DATABASE_URL);
  }

  const { basePort } = options;
  const ports = basePort === undefined ? await Promise.all(Array.from({ length: count }, freePort)) : Array.from({ length: count }, (_, i) => basePort + i);
  if (basePort !== undefined) for (const port of ports) await assertFree(port, `node port ${port}`);
  if (options.port) await assertFree(options.port, `nginx port ${options.port}`);
  const nginxPort = options.port || (await freePort());

  const procs: Array<Proc | undefined> = [];
  let nginx: Proc | undefined;
  let dir: string | undefined;
  const nodes: ClusterNode[] = ports.map((port, i) => ({ id: `node-${i + 1}`, port, url: `http://127.0.0.1:${port}`, pid: 0 }));
  const tails = nodes.map((): string[] => []);

  const startNode = async (i: number): Promise<void> => {
    const node = nodes[i]!;
    const proc = launch(
      node.id,
      NODE_BIN,
      [...(options.nodeArgs?.(i) ?? []), '--conditions=@chat/source', '--import', 'tsx', program],
      {
        PATH: process.env['PATH'],
        ...env,
        NODE_ID: node.id,
        HOST: '127.0.0.1',
        PORT: String(node.port),
      },
      verbose,
      tails[i]!,
    );
    procs[i] = proc;
    node.pid = proc.child.pid!;
    await waitFor(`${node.url}/readyz`, proc, readyTimeoutMs);
    proc.ready = true;
  };

  const stopNode = async (i: number, signal: NodeJS.Signals): Promise<ExitInfo> => {
    const proc = procs[i]!;
    proc.expected = true;
    if (proc.exit === null) proc.child.kill(signal);
    // Past the node's own drain deadline (SHUTDOWN_TIMEOUT_MS) it is wedged: do not hang the caller.
    const graceMs = Number(env['SHUTDOWN_TIMEOUT_MS'] ?? 10_000) + 5000;
    const exit = await Promise.race([proc.exited, sleep(graceMs).then(() => null)]);
    if (exit) return exit;
    proc.child.kill('SIGKILL');
    return proc.exited;
  };

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      // Before any signal: a terminal's Ctrl-C also reaches the children, and nginx may exit first.
      for (const proc of [...procs, nginx]) if (proc) proc.expected = true;
      await Promise.all(procs.map((proc, i) => (proc ? stopNode(i, 'SIGTERM') : undefined)));
      if (nginx) {
        // SIGTERM is nginx's fast shutdown; a SIGKILLed master would leave its workers behind.
        nginx.child.kill('SIGTERM');
        await Promise.race([nginx.exited, sleep(5000)]);
        if (nginx.exit === null) nginx.child.kill('SIGKILL');
        await nginx.exited;
      }
      if (dir) {
        removeDir(dir);
        runDirs.delete(dir);
      }
    })());

  try {
    await Promise.all(nodes.map((_, i) => startNode(i)));

    dir = makeRunFolder(nodes, nginxPort, options.accessLog ?? true);
    const nginxArgs = ['-c', join(dir, 'nginx.conf'), '-p', `${dir}/`, '-e', 'stderr'];
    const check = spawnSync(nginxBin, ['-t', ...nginxArgs], { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'pipe', 'pipe'] });
    if (check.status !== 0) throw new Error(`nginx -t failed:\n${check.stdout}${check.stderr}`);
    nginx = launch('nginx', nginxBin, [...nginxArgs, '-g', 'daemon off;'], { PATH: process.env['PATH'] }, verbose, [], true);
    await waitFor(`http://127.0.0.1:${nginxPort}/healthz`, nginx, readyTimeoutMs);
    nginx.ready = true;
  } catch (error) {
    await stop();
    throw error;
  }

  return {
    url: `http://127.0.0.1:${nginxPort}`,
    nodes,
    nginxPid: nginx.child.pid!,
    dir,
    logs: (target) => [...(target === 'nginx' ? nginx!.tail : (tails[target] ?? []))],
    killNode: (index, signal = 'SIGKILL') => stopNode(nodeIndex(nodes, index), signal),
    restartNode: async (index) => {
      const i = nodeIndex(nodes, index);
      if (stopping) throw new Error('the cluster is stopping');
      await stopNode(i, 'SIGTERM');
      await startNode(i);
    },
    stop,
  };
}

function nodeIndex(nodes: readonly ClusterNode[], index: number): number {
  if (!Number.isInteger(index) || index < 0 || index >= nodes.length) throw new Error(`no node ${index} (0 to ${nodes.length - 1})`);
  return index;
}

/** Creates the database when it is the local default (as compose's postgres image does), then migrates. */
async function prepareDatabase(url: string, createIfMissing: boolean): Promise<void> {
  if (createIfMissing) {
    const probe = new pg.Client({ connectionString: url });
    try {
      await probe.connect();
    } catch (error) {
      if ((error as { code?: string }).code !== '3D000') throw new Error(`PostgreSQL at ${url}: ${String(error)}`);
      const name = decodeURIComponent(new URL(url).pathname.slice(1));
      const admin = new pg.Client({ connectionString: Object.assign(new URL(url), { pathname: '/postgres' }).toString() });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE "${name.replaceAll('"', '""')}"`);
      } catch (createError) {
        // A concurrent start created it first.
        if ((createError as { code?: string }).code !== '42P04') throw createError;
      } finally {
        await admin.end();
      }
    } finally {
      await probe.end().catch(() => {});
    }
  }
  await applyMigrations({ kind: 'postgres', connectionString: url });
}

function makeRunFolder(nodes: readonly ClusterNode[], port: number, accessLog: boolean): string {
  mkdirSync(join(ROOT, '.data/cluster'), { recursive: true });
  const dir = mkdtempSync(join(ROOT, '.data/cluster/run-'));
  runDirs.add(dir);
  mkdirSync(join(dir, 'cluster'));
  // A copy, not a symlink: edits to the repository's file during a run reach it only through a restart.
  copyFileSync(join(ROOT, 'nginx.conf'), join(dir, 'nginx.conf'));
  writeFileSync(join(dir, 'cluster/upstream.conf'), nodes.map((node) => `server 127.0.0.1:${node.port} max_fails=1 fail_timeout=5s;\n`).join(''));
  writeFileSync(join(dir, 'cluster/server.conf'), `listen 127.0.0.1:${port};\n${accessLog ? 'access_log access.log chat buffer=64k flush=1s;' : 'access_log off;'}\n`);
  return dir;
}

// ── child processes ─────────────────────────────────────────────────────────────────────────────────

interface Proc {
  child: ChildProcess;
  tail: string[];
  exited: Promise<ExitInfo>;
  /** Set once it has exited. */
  exit: ExitInfo | null;
  /** Passed its readiness check: an exit from then on is reported unless {@link expected}. */
  ready: boolean;
  /** Stopped on purpose. */
  expected: boolean;
}

function launch(name: string, command: string, args: string[], env: Record<string, string | undefined>, verbose: boolean, tail: string[], isNginx = false): Proc {
  const child = spawn(command, args, {
    cwd: ROOT,
    env: Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined)) as Record<string, string>,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(child, isNginx);
  const keep = (stream: NodeJS.WritableStream) => (line: string) => {
    tail.push(line);
    if (tail.length > TAIL_LINES) tail.shift();
    if (verbose) stream.write(`[${name}] ${line}\n`);
  };
  createInterface({ input: child.stdout! }).on('line', keep(process.stdout));
  createInterface({ input: child.stderr! }).on('line', keep(process.stderr));
  const proc: Proc = { child, tail, exit: null, ready: false, expected: false, exited: undefined! };
  proc.exited = new Promise((resolve) => {
    child.on('error', (error) => {
      tail.push(String(error));
      // A failed spawn emits no 'exit'.
      if (child.pid !== undefined) return;
      untrack(child);
      proc.exit = { code: null, signal: null };
      resolve(proc.exit);
    });
    child.once('exit', (code, signal) => {
      untrack(child);
      proc.exit = { code, signal };
      // Later, and only if nobody meant it: a terminal's Ctrl-C reaches nginx before our own handler runs.
      const report = () => {
        if (proc.ready && !proc.expected)
          process.stderr.write(`[cluster] ${name} exited unexpectedly (code ${code}, signal ${signal})${verbose ? '' : `; last lines:\n${tail.slice(-20).join('\n')}`}\n`);
      };
      setTimeout(report, 500).unref();
      resolve(proc.exit);
    });
  });
  return proc;
}

/** Polls `url` until it answers 200; fails at once if the process exits, with its last lines. */
async function waitFor(url: string, proc: Proc, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exit) throw new Error(`${url}: the process exited (code ${proc.exit.code}, signal ${proc.exit.signal}) before it was ready:\n${proc.tail.slice(-30).join('\n')}`);
    const status = await fetch(url, { signal: AbortSignal.timeout(2000) }).then(
      (r) => {
        void r.body?.cancel();
        return r.status;
      },
      () => 0,
    );
    if (status === 200) return;
    if (Date.now() > deadline) throw new Error(`${url} not ready within ${timeoutMs} ms (last status ${status || 'no answer'}):\n${proc.tail.slice(-30).join('\n')}`);
    await sleep(100);
  }
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A clear error now instead of a node dying with EADDRINUSE later. */
function assertFree(port: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (error) => reject(new Error(`${what} is not available: ${(error as Error).message}`)));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve()));
  });
}

// ── no orphans ──────────────────────────────────────────────────────────────────────────────────────
// Children of every live cluster, killed synchronously when this process exits without stop(). Nodes
// get SIGKILL; nginx SIGTERM, because a SIGKILLed master leaves its workers running. A signal with no
// other listener would end the process without an 'exit' event, so while children live we take it,
// clean up and re-raise it; when the host has its own listener (the CLI), the host decides.

const live = new Map<ChildProcess, boolean>();
const runDirs = new Set<string>();
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function killAll(): void {
  for (const [child, isNginx] of live) child.kill(isNginx ? 'SIGTERM' : 'SIGKILL');
  for (const dir of runDirs) removeDir(dir);
}

function removeDir(dir: string): void {
  // rmSync with `force` stops quietly at an entry that vanished under it (nginx deleting its pid file as
  // it exits), leaving the rest: go again until the folder is gone.
  for (let attempt = 0; attempt < 10 && existsSync(dir); attempt++) rmSync(dir, { recursive: true, force: true });
}

function onSignal(signal: NodeJS.Signals): void {
  if (process.listenerCount(signal) > 1) return;
  killAll();
  for (const s of SIGNALS) process.removeListener(s, onSignal);
  process.kill(process.pid, signal);
}

function track(child: ChildProcess, isNginx: boolean): void {
  if (live.size === 0) {
    process.on('exit', killAll);
    for (const signal of SIGNALS) process.on(signal, onSignal);
  }
  live.set(child, isNginx);
}

function untrack(child: ChildProcess): void {
  if (!live.delete(child) || live.size > 0) return;
  process.removeListener('exit', killAll);
  for (const signal of SIGNALS) process.removeListener(signal, onSignal);
}

/** Whether a process with this pid exists (signal 0 checks without sending anything). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
