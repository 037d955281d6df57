/**
 * `npm run bench:memory` — what an idle authenticated socket costs a node, against the bare relay.
 *
 * One server at a time (a chat node on PostgreSQL and Redis, then apps/server/bench/bare-relay.ts),
 * each its real entry point with gc-probe.ts preloaded, as `npm run bench` runs its servers. A few
 * sockets warm it up; then N more sockets, each a new user, connect over WebSocket and stay idle.
 * Before and after, the server runs a full GC and reports its memory, so the figures are what it
 * retains per socket:
 *   heap used     live JavaScript objects (the socket, its listeners, our per-socket state)
 *   heap committed  what V8 keeps reserved for the heap: grows with the garbage connecting makes
 *   RSS           the whole process as the operating system sees it, what `npm run bench` reports
 * `npm run bench` measures the same way over 10,000 sockets on its 3 nodes; this one is quicker and
 * shows what the committed heap does.
 *
 *   npm run bench:memory -- [--sockets 3000] [--warm 100]
 * Env: DATABASE_URL (server for the throwaway database; default the local one), REDIS_URL (default
 * redis://127.0.0.1:6379; keys under a prefix of this run's own).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createSigner } from 'fast-jwt';
import { freePort } from '@chat/testkit/cluster';
import { deleteRedisKeys, waitUntil } from '@chat/testkit/services';
import { holdIdleSockets, type IdleResult } from './connections.ts';
import { throwawayDatabase } from './database.ts';
import { gcProbe } from './process-stats.ts';

const { values } = parseArgs({
  options: {
    sockets: { type: 'string', default: '3000' },
    warm: { type: 'string', default: '100' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log('npm run bench:memory -- [--sockets 3000] [--warm 100]');
  console.log('Env: DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres), REDIS_URL (default redis://127.0.0.1:6379)');
  process.exit(0);
}
const sockets = Number(values.sockets);
const warm = Number(values.warm);
if (!Number.isInteger(sockets) || sockets < 1 || !Number.isInteger(warm) || warm < 0) throw new Error('--sockets and --warm take whole numbers');

const secret = 'bench-secret-that-is-at-least-32-characters';
const sign = createSigner({ key: secret, expiresIn: 3600_000 });
const run = randomBytes(3).toString('hex');

interface Server {
  child: ChildProcess;
  url: string;
}

/** Spawns `entry` with the GC probe preloaded and waits for /readyz. */
async function startServer(entry: string, env: Record<string, string | undefined>): Promise<Server> {
  const port = await freePort();
  const child = spawn(process.execPath, [...gcProbe.args, '--conditions=@chat/source', '--import', 'tsx', entry], {
    env: { PATH: process.env['PATH'], ...env, PORT: String(port), GC_PROBE_DIR: gcProbe.dir },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(
    async () => {
      if (child.exitCode !== null) throw new Error(`${entry} exited with code ${child.exitCode}`);
      return (await fetch(`${url}/readyz`).catch(() => null))?.ok ?? false;
    },
    30_000,
    entry,
  );
  return { child, url };
}

/** The idle-socket measurement of `npm run bench`, on one server, then the server stopped. */
async function measure(name: string, server: Server): Promise<IdleResult> {
  const idle = await holdIdleSockets(
    server.url,
    sockets,
    () => [server.child.pid!],
    (i) => sign({ sub: `mem-${run}-${name}-${i}` }),
    { batch: 200, warm },
  );
  try {
    if (idle.connected < sockets) throw new Error(`${name}: ${idle.connected} of ${sockets} sockets connected (${idle.stoppedBy ?? `${idle.failed} failed`})`);
    return idle;
  } finally {
    idle.release();
    server.child.kill('SIGTERM');
    await new Promise((done) => (server.child.exitCode !== null ? done(null) : server.child.once('exit', done)));
  }
}

async function main(): Promise<void> {
  const database = await throwawayDatabase('chat_bench_memory');
  const redisUrl = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
  const redisPrefix = `bench-memory-${run}:`;
  let ours: IdleResult;
  try {
    ours = await measure(
      'ours',
      await startServer(fileURLToPath(new URL('../src/main.ts', import.meta.url)), {
        NODE_ENV: 'production',
        HOST: '127.0.0.1',
        DATABASE_URL: database.url,
        REDIS_URL: redisUrl,
        REDIS_KEY_PREFIX: redisPrefix,
        JWT_SECRET: secret,
        LOG_LEVEL: 'warn',
        // Budgets live in Redis, not in the node; the per-address connect budget would refuse the burst.
        RATE_LIMITS: 'false',
      }),
    );
  } finally {
    await database.drop();
    await deleteRedisKeys(redisUrl, redisPrefix);
  }
  const bare = await measure('bare', await startServer(fileURLToPath(new URL('./bare-relay.ts', import.meta.url)), {}));

  const kb = (bytes: number) => (bytes / 1024).toFixed(1);
  const rows: Array<[string, number, number]> = [
    ['heap used per socket (KB, after full GC)', ours.heapBytesPerSocket, bare.heapBytesPerSocket],
    ['heap committed per socket (KB)', ours.heapCommittedBytesPerSocket, bare.heapCommittedBytesPerSocket],
    ['RSS per socket (KB)', ours.rssBytesPerSocket, bare.rssBytesPerSocket],
  ];
  console.log(`\n# npm run bench:memory — ${new Date().toISOString()}, ${sockets} idle WebSocket sockets (each a new user) after ${warm} warm-up ones, one server process each\n`);
  console.log('| per idle socket | ours (1 node, PostgreSQL + Redis) | bare relay | ours/bare |');
  console.log('|---|---|---|---|');
  for (const [label, a, b] of rows) console.log(`| ${label} | ${kb(a)} | ${kb(b)} | ${(a / b).toFixed(2)}x |`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
