/**
 * A private PostgreSQL: its own data folder (initdb) and a free loopback port, stopped and started at
 * will (outage tests, the chaos harness). The system service on 5432 is never touched.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { parseDatabaseUrl } from '@chat/server/db/url';
import { freePort } from './cluster.ts';
import { onExit, waitUntil, type RestartableService } from './service-lifetime.ts';

/** `url`: postgresql://postgres@127.0.0.1:PORT/postgres. `stop()` is a fast shutdown (`pg_ctl stop -m fast`): connections are cut, committed data stays. */
export type PrivatePostgres = RestartableService;

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

/** Whether the PostgreSQL (or PgBouncer) at `url` answers `SELECT 1` within about a second. */
export async function pingPostgres(url: string): Promise<boolean> {
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
