/**
 * A private PgBouncer in transaction pooling mode in front of a PostgreSQL, on a free loopback port:
 * the pooler production puts between many replicas and one database (the PgBouncer tests, benchmarks).
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { freePort } from './cluster.ts';
import { findExecutable } from './executables.ts';
import { pingPostgres } from './postgres.ts';
import { onExit, terminate, waitUntil } from './service-lifetime.ts';

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
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) await terminate(child, exited);
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
