/**
 * `npm run bench:startup` — start-to-ready time of a node: from spawning the process until GET /readyz
 * answers 200, for the TypeScript sources run through tsx (`npm start` in development) and for the
 * compiled JavaScript (`node apps/server/dist/main.js`, the image and `npm start` with
 * NODE_ENV=production; `npm run build` first). Two set-ups each:
 *   embedded  no DATABASE_URL/REDIS_URL: PGlite in a data folder of this run's own (created and migrated
 *             by one warm-up start, so the measured starts are restarts, as a pod's are) and in-memory state
 *   cluster   a throwaway migrated PostgreSQL database on DATABASE_URL's server and REDIS_URL, keys under
 *             a prefix of this run's own
 * Every start is a new process (NODE_ENV=production, as in the image) with a temp folder of its own
 * (TMPDIR), as a new pod has: tsx's compile cache lives there, so every tsx start is a cold one, as a
 * pod's first start is (with a warm cache tsx starts much faster). Each is stopped with SIGTERM
 * before the next. Reports every run and the median.
 *
 *   npm run bench:startup -- [--runs 5] [--only tsx|compiled] [--setup embedded|cluster]
 * Env: DATABASE_URL (server for the throwaway database; default the local one), REDIS_URL (default
 * redis://127.0.0.1:6379).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort } from '@chat/testkit/cluster';
import { deleteRedisKeys } from '@chat/testkit/services';
import { throwawayDatabase } from './database.ts';

const SERVER = fileURLToPath(new URL('../', import.meta.url));
const RUNNERS = {
  tsx: ['--conditions=@chat/source', '--import', 'tsx', join(SERVER, 'src/main.ts')],
  compiled: [join(SERVER, 'dist/main.js')],
} as const;
type Runner = keyof typeof RUNNERS;
const TIMEOUT_MS = 120_000;

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    only: { type: 'string' },
    setup: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log('npm run bench:startup -- [--runs 5] [--only tsx|compiled] [--setup embedded|cluster]');
  process.exit(0);
}
const runs = Number(values.runs);
const runners = (values.only ? [values.only] : Object.keys(RUNNERS)) as Runner[];
if (runners.includes('compiled') && !existsSync(RUNNERS.compiled[0])) {
  console.error('No apps/server/dist/main.js: run `npm run build` first (or --only tsx).');
  process.exit(1);
}

/** Milliseconds from spawn until /readyz answers 200; the process is stopped (SIGTERM) afterwards. */
async function startToReady(runner: Runner, env: Record<string, string>): Promise<number> {
  const port = await freePort();
  const tmp = mkdtempSync(join(tmpdir(), 'chat-startup-tmp-'));
  const started = performance.now();
  const child = spawn(process.execPath, [...RUNNERS[runner]], {
    env: { PATH: process.env['PATH'] ?? '', TMPDIR: tmp, NODE_ENV: 'production', HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    while (performance.now() - started < TIMEOUT_MS) {
      if (child.exitCode !== null) throw new Error(`${runner} exited with ${child.exitCode}: ${stderr.slice(-2000)}`);
      const ok = await fetch(`http://127.0.0.1:${port}/readyz`).then(
        (response) => response.status === 200,
        () => false,
      );
      if (ok) return performance.now() - started;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`${runner} not ready within ${TIMEOUT_MS} ms: ${stderr.slice(-2000)}`);
  } finally {
    child.kill('SIGTERM');
    await exited;
    rmSync(tmp, { recursive: true, force: true });
  }
}

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? NaN) : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
};

async function measure(setup: string, env: Record<string, string>): Promise<void> {
  for (const runner of runners) {
    const times: number[] = [];
    for (let i = 0; i < runs; i++) times.push(await startToReady(runner, env));
    console.log(`${setup.padEnd(9)} ${runner.padEnd(9)} median ${Math.round(median(times))} ms   runs: ${times.map((t) => Math.round(t)).join(', ')}`);
  }
}

const JWT_SECRET = randomBytes(32).toString('hex');
if (!values.setup || values.setup === 'embedded') {
  const dataDir = mkdtempSync(join(tmpdir(), 'chat-startup-'));
  try {
    // The first start creates and migrates the database; pods restart on an existing volume.
    await startToReady(runners[0] ?? 'compiled', { DATA_DIR: dataDir, JWT_SECRET });
    await measure('embedded', { DATA_DIR: dataDir, JWT_SECRET });
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}
if (!values.setup || values.setup === 'cluster') {
  const database = await throwawayDatabase('chat_bench_startup');
  const redisUrl = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
  const prefix = `bench:startup:${randomBytes(4).toString('hex')}:`;
  try {
    await measure('cluster', { DATABASE_URL: database.url, REDIS_URL: redisUrl, REDIS_KEY_PREFIX: prefix, JWT_SECRET });
  } finally {
    await database.drop();
    await deleteRedisKeys(redisUrl, prefix).catch(() => {});
  }
}
