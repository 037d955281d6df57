/**
 * `npm run bench:messages` — how fast one node persists and acks messages.
 *
 * N concurrent senders (each its own socket and user) send into M direct conversations on ONE node
 * backed by the local PostgreSQL, each in a closed loop (send, wait for the ok-ack, send the next), for
 * a fixed duration after a warm-up. Every ok-ack means committed in PostgreSQL. Prints throughput and
 * ack latency percentiles, then checks the database: one row per ack, seqs gap-free per conversation.
 *
 * The node runs as its own process (the real entry point); the senders run here. A throwaway database
 * is created, migrated and dropped. With --pgbouncer the same measurement runs again in the same run
 * with a fresh node reaching that database through a private PgBouncer (transaction pooling), so the
 * two rows share the machine's state.
 *
 *   npm run bench:messages -- --senders 50 --conversations 25 --duration 20 --warmup 3
 *   npm run bench:messages -- --duration 15 --pgbouncer --rounds 3
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { createSigner } from 'fast-jwt';
import pg from 'pg';
import { io, type Socket } from 'socket.io-client';
import { freePort } from '@chat/testkit/cluster';
import { startPrivatePgBouncer, type PrivatePgBouncer } from '@chat/testkit/services';
import { throwawayDatabase } from './database.ts';
import { cpuSeconds } from './process-stats.ts';
import { newestProfile, summarise } from './profile-summary.ts';

const { values } = parseArgs({
  options: {
    senders: { type: 'string', default: '50' },
    conversations: { type: 'string', default: '25' },
    duration: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '3' },
    body: { type: 'string', default: '64' },
    'cpu-prof': { type: 'boolean', default: false },
    pgbouncer: { type: 'boolean', default: false },
    'pgbouncer-pool': { type: 'string', default: '10' },
    rounds: { type: 'string', default: '1' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log('npm run bench:messages -- [--senders 50] [--conversations 25] [--duration 20 (s)] [--warmup 3 (s)] [--body 64 (chars)] [--cpu-prof] [--pgbouncer [--pgbouncer-pool 10] [--rounds 1]]');
  console.log("  --cpu-prof        run the node with --cpu-prof into reports/profiles/ and print where its CPU time goes (the last node's)");
  console.log('  --pgbouncer       measure twice, side by side: the node on PostgreSQL directly, then a fresh node through a private');
  console.log('                    PgBouncer 1.18 (pool_mode = transaction, ?pgbouncer=true: hot statements unnamed)');
  console.log("  --pgbouncer-pool  its default_pool_size (server connections; the node's pool is DATABASE_POOL_SIZE, default 10)");
  console.log('  --rounds N        repeat both N times, alternating which goes first');
  console.log('Env: DATABASE_URL (server to create the throwaway database on; default postgresql://postgres@127.0.0.1:5432/postgres)');
  process.exit(0);
}
const senders = Number(values.senders);
const conversations = Math.max(1, Math.min(Number(values.conversations), Math.floor(senders / 2)));
const durationMs = Number(values.duration) * 1000;
const warmupMs = Number(values.warmup) * 1000;
const body = 'x'.repeat(Number(values.body));
const rounds = Math.max(1, Number(values.rounds));

const secret = 'bench-secret-that-is-at-least-32-characters';
const sign = createSigner({ key: secret, expiresIn: 3600_000 });

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface Route {
  /** Short name, in user ids and the summary. */
  key: string;
  /** What the row is called. */
  name: string;
  /** The node's DATABASE_URL. */
  databaseUrl: string;
  /** A PgBouncer in between, whose CPU counts as the route's. */
  bouncerPid?: number;
}

interface Result {
  route: string;
  acked: number;
  elapsed: number;
  latencies: number[];
  errors: Map<string, number>;
  loadCpuPercent: number;
  /** Messages per message-batch statement over the measured window. */
  batch: number;
  /** CPU seconds over the measured window: the node process, the PostgreSQL backends of the database, PgBouncer. */
  cpu: { node: number; postgres: number; pgbouncer: number };
  gaps: number;
}

/** The node's message batches so far: statements and the messages they carried (chat_write_batch_size). */
async function batches(url: string): Promise<{ statements: number; messages: number }> {
  const metrics = await (await fetch(`${url}/metrics`)).text();
  const value = (name: string) => Number(new RegExp(`^${name}\\{[^}]*writer="messages"[^}]*\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? NaN);
  return { statements: value('chat_write_batch_size_count'), messages: value('chat_write_batch_size_sum') };
}

/** CPU seconds so far of each PostgreSQL backend connected to the monitor's database, but the monitor's own. */
async function backendCpu(monitor: pg.Client): Promise<Map<number, number>> {
  const { rows } = await monitor.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
  const used = new Map<number, number>();
  for (const { pid } of rows) {
    try {
      used.set(pid, cpuSeconds(pid));
    } catch {
      // exited
    }
  }
  return used;
}

/** One node process on `route`, the senders' closed loops for the duration, then the gap check on `checkUrl`. */
async function measure(route: Route, checkUrl: string, round: number): Promise<Result> {
  const port = await freePort();
  let node: ReturnType<typeof spawn> | undefined;
  const sockets: Socket[] = [];
  try {
    const profileDir = resolve('reports/profiles');
    const profiling = values['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
    node = spawn(process.execPath, [...profiling, '--conditions=@chat/source', '--import', 'tsx', fileURLToPath(new URL('../src/main.ts', import.meta.url))], {
      env: {
        PATH: process.env['PATH'],
        NODE_ENV: 'production',
        HOST: '127.0.0.1',
        PORT: String(port),
        DATABASE_URL: route.databaseUrl,
        JWT_SECRET: secret,
        LOG_LEVEL: 'warn',
        RATE_LIMITS: 'false',
        DATABASE_POOL_SIZE: process.env['DATABASE_POOL_SIZE'] ?? '10',
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    const url = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      if ((await fetch(`${url}/readyz`).catch(() => null))?.ok) break;
      if (i > 200) throw new Error('node did not become ready');
      await sleep(100);
    }

    const connect = (userId: string) =>
      new Promise<Socket>((resolve, reject) => {
        const socket = io(url, { auth: { token: sign({ sub: userId }) }, transports: ['websocket'], reconnection: false });
        socket.once('connect', () => resolve(socket));
        socket.once('connect_error', reject);
      });
    // Conversation c is the direct conversation of users 2c and 2c+1. Sender i is user i mod 2M
    // (more senders than users means several devices per user) and writes into its user's conversation.
    // Each measurement has users and conversations of its own.
    const users = 2 * conversations;
    const user = (n: number) => `bench-r${round}-${route.key}-${n}`;
    for (let i = 0; i < senders; i++) sockets.push(await connect(user(i % users)));
    const conversationIds: string[] = [];
    for (let c = 0; c < conversations; c++) {
      const ack = await sockets[2 * c]!.emitWithAck('conversation:open-direct', { userId: user(2 * c + 1) });
      if (!ack.ok) throw new Error(`open-direct failed: ${JSON.stringify(ack.error)}`);
      conversationIds.push(ack.conversation.id);
    }
    const membership = new Map<number, string>();
    for (let i = 0; i < senders; i++) membership.set(i, conversationIds[Math.floor((i % users) / 2)]!);

    const latencies: number[] = [];
    const errors = new Map<string, number>();
    let acked = 0;
    let measuring = false;
    let stop = false;
    let counter = 0;
    const loop = async (i: number) => {
      const socket = sockets[i]!;
      const conversationId = membership.get(i)!;
      while (!stop) {
        const started = performance.now();
        const ack = await socket
          .timeout(10_000)
          .emitWithAck('message:send', { conversationId, clientMsgId: `b${i}-${++counter}-${randomBytes(4).toString('hex')}`, body })
          .catch((error: Error) => ({ ok: false, error: { code: error.message } }));
        if (!measuring) continue;
        if (ack.ok) {
          acked++;
          latencies.push(performance.now() - started);
        } else errors.set(ack.error.code, (errors.get(ack.error.code) ?? 0) + 1);
      }
    };
    const loops = Array.from({ length: senders }, (_, i) => loop(i));
    await sleep(warmupMs);
    // PostgreSQL's backends are listed at both ends: one that appeared in between counts whole.
    const monitor = new pg.Client({ connectionString: checkUrl });
    await monitor.connect();
    const backendsBefore = await backendCpu(monitor);
    const nodeBefore = cpuSeconds(node.pid!);
    const batchesBefore = await batches(url);
    const bouncerBefore = route.bouncerPid === undefined ? 0 : cpuSeconds(route.bouncerPid);
    measuring = true;
    const started = performance.now();
    const cpuBefore = process.cpuUsage();
    await sleep(durationMs);
    measuring = false;
    const elapsed = (performance.now() - started) / 1000;
    const loadCpu = process.cpuUsage(cpuBefore);
    const backendsAfter = await backendCpu(monitor);
    const batchesAfter = await batches(url);
    await monitor.end();
    const cpu = {
      node: cpuSeconds(node.pid!) - nodeBefore,
      postgres: [...backendsAfter].reduce((sum, [pid, seconds]) => sum + seconds - (backendsBefore.get(pid) ?? 0), 0),
      pgbouncer: route.bouncerPid === undefined ? 0 : cpuSeconds(route.bouncerPid) - bouncerBefore,
    };
    stop = true;
    await Promise.all(loops);

    latencies.sort((a, b) => a - b);
    const check = new pg.Client({ connectionString: checkUrl });
    await check.connect();
    const gaps = await check.query<{ conversations_with_gaps: number }>(
      `SELECT count(*)::int AS conversations_with_gaps FROM (
         SELECT conversation_id, max(seq) = count(*) AS ok FROM messages WHERE conversation_id = ANY($1::uuid[]) GROUP BY conversation_id) t WHERE NOT ok`,
      [conversationIds],
    );
    await check.end();
    return {
      route: route.name,
      acked,
      elapsed,
      latencies,
      errors,
      loadCpuPercent: ((loadCpu.user + loadCpu.system) / 1000 / (elapsed * 1000)) * 100,
      cpu,
      batch: (batchesAfter.messages - batchesBefore.messages) / (batchesAfter.statements - batchesBefore.statements),
      gaps: gaps.rows[0]!.conversations_with_gaps,
    };
  } finally {
    for (const socket of sockets) socket.close();
    if (node) {
      node.kill('SIGTERM');
      await new Promise((resolve) => node!.once('exit', resolve));
    }
  }
}

function report(result: Result): void {
  const { latencies } = result;
  const fmt = (ms: number) => `${ms.toFixed(1)} ms`;
  console.log(`\n  ${result.route}`);
  console.log(`  acked messages     ${result.acked} in ${result.elapsed.toFixed(1)} s  →  ${(result.acked / result.elapsed).toFixed(0)} msgs/s`);
  console.log(`  ack latency        p50 ${fmt(percentile(latencies, 50))}  p95 ${fmt(percentile(latencies, 95))}  p99 ${fmt(percentile(latencies, 99))}  max ${fmt(latencies.at(-1) ?? NaN)}`);
  console.log(`  errors             ${result.errors.size === 0 ? 'none' : JSON.stringify(Object.fromEntries(result.errors))}`);
  console.log(`  load process CPU   ${result.loadCpuPercent.toFixed(0)}% of one core`);
  const perMessage = (seconds: number) => `${((seconds * 1e6) / result.acked).toFixed(0)} µs`;
  console.log(`  batch              ${result.batch.toFixed(1)} messages per statement`);
  console.log(
    `  CPU per message    node ${perMessage(result.cpu.node)}  PostgreSQL ${perMessage(result.cpu.postgres)}${result.cpu.pgbouncer ? `  PgBouncer ${perMessage(result.cpu.pgbouncer)}` : ''}`,
  );
  console.log(`  seq gaps           ${result.gaps === 0 ? 'none' : `${result.gaps} conversations with gaps`}`);
}

async function main(): Promise<void> {
  const database = await throwawayDatabase('chat_bench');
  let bouncer: PrivatePgBouncer | undefined;
  try {
    const routes: Route[] = [{ key: 'direct', name: 'PostgreSQL directly', databaseUrl: database.url }];
    if (values.pgbouncer) {
      bouncer = await startPrivatePgBouncer({ target: database.url, poolSize: Number(values['pgbouncer-pool']) });
      routes.push({ key: 'pgbouncer', name: `through PgBouncer 1.18, pool_mode = transaction, default_pool_size ${values['pgbouncer-pool']}`, databaseUrl: bouncer.url, bouncerPid: bouncer.pid });
    }
    console.log(`\nbench:messages — ${senders} senders, ${conversations} direct conversations, one node (${new Date().toISOString()})`);
    const results: Result[] = [];
    for (let round = 0; round < rounds; round++) {
      // Alternating the order spreads the machine's drift over both routes.
      for (const route of round % 2 === 0 ? routes : [...routes].reverse()) {
        const result = await measure(route, database.url, round);
        report(result);
        results.push(result);
      }
    }
    if (routes.length > 1) {
      console.log('\n  per round:  msgs/s  |  p50 / p99 ms  |  messages per statement  |  CPU µs per message: node + PostgreSQL (+ PgBouncer)');
      for (const route of routes) {
        const mine = results.filter((result) => result.route === route.name);
        const us = (result: Result, seconds: number) => ((seconds * 1e6) / result.acked).toFixed(0);
        console.log(`  ${route.key}`);
        console.log(`    ${mine.map((result) => (result.acked / result.elapsed).toFixed(0)).join(', ')}`);
        console.log(`    ${mine.map((result) => `${percentile(result.latencies, 50).toFixed(1)} / ${percentile(result.latencies, 99).toFixed(1)}`).join(', ')}`);
        console.log(`    ${mine.map((result) => result.batch.toFixed(1)).join(', ')}`);
        console.log(
          `    ${mine.map((result) => `${us(result, result.cpu.node)} + ${us(result, result.cpu.postgres)}${result.cpu.pgbouncer ? ` + ${us(result, result.cpu.pgbouncer)}` : ''}`).join(', ')}`,
        );
      }
    }
  } finally {
    await bouncer?.destroy();
    await database.drop();
  }
  if (values['cpu-prof']) {
    const dir = resolve('reports/profiles');
    const newest = newestProfile(dir);
    if (newest) console.log(`\n${summarise(newest)}`);
  }
}

await main();
