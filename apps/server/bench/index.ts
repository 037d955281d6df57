/**
 * `npm run bench` — the headline benchmark: our 3-node cluster behind nginx against a bare Socket.IO
 * relay, with the same load generator scenario, in one run, on one machine.
 *
 * 1. Throughput: a fixed scenario (1:1 conversations, open-loop rate, receipts, typing, presence)
 *    through nginx to 3 nodes on PostgreSQL and Redis; then the same scenario against the bare relay
 *    (apps/server/bench/bare-relay.ts: one process, in-memory, no persistence, no auth).
 * 2. Connections: idle authenticated WebSocket sockets held by the cluster (through nginx) and by the
 *    relay, up to --idle, with server memory per socket.
 * Prints both side by side with ratios and writes reports/bench-<time>.{json,md}; the load generator's
 * own JSON and HTML reports for each run sit beside them.
 *
 *   npm run bench -- [--clients 2000] [--rate 2000/s] [--duration 30s] [--receipts read] [--typing 0.1] [--idle 10000] [--skip-bare] [--skip-idle] [--cpu-prof]
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createSigner } from 'fast-jwt';
import pg from 'pg';
import type { Summary } from '../../loadgen/src/summary.ts';
import { startCluster } from '../../../infra/cluster/cluster.ts';
import { deleteRedisKeys } from '../../../infra/cluster/services.ts';
import { throwawayDatabase } from './database.ts';
import { holdIdleSockets, type IdleResult } from './connections.ts';
import { cpuSeconds, gcProbe, machineTicks } from './process-stats.ts';
import { newestProfile, summarise } from './profile-summary.ts';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '2000' },
    rate: { type: 'string', default: '2000/s' },
    duration: { type: 'string', default: '30s' },
    ramp: { type: 'string', default: '500/s' },
    idle: { type: 'string', default: '10000' },
    receipts: { type: 'string', default: 'read' },
    typing: { type: 'string', default: '0.1' },
    grace: { type: 'string', default: '5s' },
    workers: { type: 'string' },
    'rate-limits': { type: 'string', default: 'on' },
    'skip-bare': { type: 'boolean', default: false },
    'skip-idle': { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log('npm run bench -- [--clients 2000] [--rate 2000/s] [--duration 30s] [--ramp 500/s] [--receipts read|delivered|none] [--typing 0.1] [--grace 5s] [--workers N] [--rate-limits on|off] [--idle 10000] [--skip-bare] [--skip-idle] [--cpu-prof]');
  console.log('  --cpu-prof  run node-1 with --cpu-prof into reports/profiles/ and print where its CPU time goes (profiling slows that node)');
  console.log('Env: DATABASE_URL (server for the throwaway database; default postgresql://postgres@127.0.0.1:5432/postgres), REDIS_URL (default redis://127.0.0.1:6379)');
  process.exit(0);
}

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const REPORTS = resolve(ROOT, 'reports');
const PROFILES = join(REPORTS, 'profiles');
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const secret = `bench-${randomBytes(16).toString('hex')}`;
const scenario = {
  clients: values.clients!,
  conversations: String(Math.floor(Number(values.clients) / 2)),
  'group-size': '2',
  'devices-per-user': '1',
  rate: values.rate!,
  duration: values.duration!,
  ramp: values.ramp!,
  transport: 'websocket',
  churn: '0',
  typing: values.typing!,
  receipts: values.receipts!,
  grace: values.grace!,
  presence: '0',
  // The load generator's default (cores - 1) unless given.
  ...(values.workers && { workers: values.workers }),
};

/** The stack's processes beyond our nodes, by what they are: what "the whole stack" costs. */
const INFRA = { postgres: 'PostgreSQL', 'redis-server': 'Redis', nginx: 'nginx' } as const;
type Component = 'nodes' | (typeof INFRA)[keyof typeof INFRA];

/** Every process of the data stores and the proxy, with its component. */
function infraPids(): Array<[number, Component]> {
  const found: Array<[number, Component]> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      if (Object.hasOwn(INFRA, comm)) found.push([Number(entry), INFRA[comm as keyof typeof INFRA]]);
    } catch {
      // exited
    }
  }
  return found;
}

/** CPU seconds used so far by each process that still exists, with its component. */
function cpuByPid(pids: Array<[number, Component]>): Map<number, { component: Component; seconds: number }> {
  const used = new Map<number, { component: Component; seconds: number }>();
  for (const [pid, component] of pids) {
    try {
      used.set(pid, { component, seconds: cpuSeconds(pid) });
    } catch {
      // exited
    }
  }
  return used;
}

/**
 * CPU used between two samples, per component. PostgreSQL starts a backend per pool connection
 * whenever a pool grows, so the processes are listed anew at every sample; one that appeared in
 * between counts whole.
 */
function cpuBetween(from: Map<number, { seconds: number }>, to: Map<number, { component: Component; seconds: number }>): Record<Component, number> {
  const used: Record<Component, number> = { nodes: 0, PostgreSQL: 0, Redis: 0, nginx: 0 };
  for (const [pid, { component, seconds }] of to) used[component] += seconds - (from.get(pid)?.seconds ?? 0);
  return used;
}

interface Run {
  summary: Summary;
  serverCpuSeconds: number;
  stackCpuSeconds: number;
  /** CPU seconds of the load phase per component of the stack. */
  cpuByComponent: Record<Component, number>;
  /** Mean items per group-commit statement over the run, from the nodes' /metrics (ours only). */
  batch?: { messages: number; receipts: number };
  /** PostgreSQL's background work during the run (ours only): what makes one run's tail unlike another's. */
  background?: Background;
  /** Share of the whole machine's CPU (every core, every process, the kernel) busy during the load phase. */
  machineBusyPct: number;
}

/**
 * Runs the load generator once and measures the servers' CPU over its load phase only (connecting
 * and creating conversations are set-up, not the steady state): /proc is sampled every 250 ms and
 * the samples nearest to the phase's start and end, from the load generator's own timeline, are used.
 */
async function runLoad(name: string, url: string, serverPids: number[], extra: string[], options: { warmup?: boolean; metricsUrls?: string[]; databaseUrl?: string } = {}): Promise<Run> {
  const batchesBefore = options.metricsUrls && (await writeBatches(options.metricsUrls));
  const backgroundBefore = options.databaseUrl && (await background(options.databaseUrl));
  const out = join(REPORTS, `bench-${stamp}-${name}${options.warmup ? '-warmup' : ''}.json`);
  const flags = { ...scenario, ...(options.warmup && { duration: '8s' }) };
  const args = ['--import', 'tsx', join(ROOT, 'apps/loadgen/src/cli.ts'), '--url', url, '--out', out, '--quiet', ...Object.entries(flags).flatMap(([key, value]) => [`--${key}`, value]), ...extra];
  const samples: Array<{ at: number; cpu: Map<number, { component: Component; seconds: number }>; machine: { busy: number; total: number } }> = [];
  const sample = () => samples.push({ at: Date.now(), cpu: cpuByPid([...serverPids.map((pid): [number, Component] => [pid, 'nodes']), ...infraPids()]), machine: machineTicks() });
  sample();
  const timer = setInterval(sample, 250);
  const code = await new Promise<number | null>((done) => spawn(process.execPath, args, { stdio: options.warmup ? 'ignore' : 'inherit' }).once('exit', done));
  clearInterval(timer);
  sample();
  console.log(`loadgen against ${name}${options.warmup ? ' (warm-up)' : ''} exited with ${code}`);
  const summary = JSON.parse(readFileSync(out, 'utf8')) as Summary;
  const started = Date.parse(summary.run.startedAt);
  const load = summary.phases.find((phase) => phase.name === 'load');
  const nearest = (at: number) => samples.reduce((best, s) => (Math.abs(s.at - at) < Math.abs(best.at - at) ? s : best));
  const from = nearest(started + (load?.startS ?? 0) * 1000);
  const to = nearest(started + (load?.endS ?? summary.run.wallSeconds) * 1000);
  const machine = to.machine.total > from.machine.total ? (100 * (to.machine.busy - from.machine.busy)) / (to.machine.total - from.machine.total) : NaN;
  const cpuByComponent = cpuBetween(from.cpu, to.cpu);
  const stackCpuSeconds = Object.values(cpuByComponent).reduce((a, b) => a + b, 0);
  const batchesAfter = options.metricsUrls && (await writeBatches(options.metricsUrls));
  const backgroundAfter = options.databaseUrl && (await background(options.databaseUrl));
  const mean = (writer: 'messages' | 'receipts') => {
    const { sum, count } = { sum: batchesAfter![writer].sum - batchesBefore![writer].sum, count: batchesAfter![writer].count - batchesBefore![writer].count };
    return count > 0 ? sum / count : NaN;
  };
  return { summary, serverCpuSeconds: cpuByComponent.nodes, stackCpuSeconds, cpuByComponent, machineBusyPct: machine,
    ...(batchesAfter && { batch: { messages: mean('messages'), receipts: mean('receipts') } }),
    ...(backgroundBefore && backgroundAfter && { background: { checkpoints: backgroundAfter.checkpoints - backgroundBefore.checkpoints, autovacuums: backgroundAfter.autovacuums - backgroundBefore.autovacuums } }),
  };
}

interface Background {
  /** Checkpoints of the whole server (a checkpoint makes the next write of every page log it whole). */
  checkpoints: number;
  /** Autovacuum and autoanalyze runs on the benchmark's tables. */
  autovacuums: number;
}

/** Counters of PostgreSQL's background work so far; -1 where the server does not say. */
async function background(databaseUrl: string): Promise<Background> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    // pg_stat_bgwriter up to PostgreSQL 16, pg_stat_checkpointer from 17.
    const checkpoints = await client
      .query<{ n: string }>('SELECT checkpoints_timed + checkpoints_req AS n FROM pg_stat_bgwriter')
      .catch(() => client.query<{ n: string }>('SELECT num_timed + num_requested AS n FROM pg_stat_checkpointer'))
      .then((result) => Number(result.rows[0]?.n ?? -1), () => -1);
    const vacuums = await client.query<{ n: string }>('SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) AS n FROM pg_stat_user_tables');
    return { checkpoints, autovacuums: Number(vacuums.rows[0]?.n ?? -1) };
  } finally {
    await client.end();
  }
}

/** Items and statements of the group-commit writers so far, summed over the nodes' /metrics. */
async function writeBatches(urls: string[]): Promise<Record<'messages' | 'receipts', { sum: number; count: number }>> {
  const total = { messages: { sum: 0, count: 0 }, receipts: { sum: 0, count: 0 } };
  for (const url of urls) {
    const text = await (await fetch(`${url}/metrics`)).text();
    for (const match of text.matchAll(/^chat_write_batch_size_(sum|count)\{[^}]*writer="(messages|receipts)"[^}]*\} (\S+)$/gm)) {
      total[match[2] as 'messages' | 'receipts'][match[1] as 'sum' | 'count'] += Number(match[3]);
    }
  }
  return total;
}

function token(userId: string): string {
  return createSigner({ key: secret, expiresIn: 3_600_000 })({ sub: userId });
}

async function main(): Promise<void> {
  mkdirSync(REPORTS, { recursive: true });
  const database = await throwawayDatabase('chat_bench');
  const databaseUrl = database.url;
  const results: { ours?: Run; bare?: Run; oursIdle?: IdleResult; bareIdle?: IdleResult } = {};
  const redisUrl = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
  const redisPrefix = `bench:${stamp}:`;
  try {
    const cluster = await startCluster({
      nodes: 3,
      accessLog: false,
      nodeArgs: (index: number) => [...gcProbe.args, ...(values['cpu-prof'] && index === 0 ? ['--cpu-prof', '--cpu-prof-dir', PROFILES] : [])],
      env: { GC_PROBE_DIR: gcProbe.dir, DATABASE_URL: databaseUrl, REDIS_URL: redisUrl, REDIS_KEY_PREFIX: redisPrefix, JWT_SECRET: secret, RATE_LIMITS: values['rate-limits'] === 'off' ? 'false' : 'true', LOG_LEVEL: 'warn', NODE_ENV: 'production', DEV_TOKENS: 'false' },
    });
    try {
      const nodePids = () => cluster.nodes.map((node) => node.pid);
      // Idle sockets first, on fresh processes, so the load phase's garbage does not blur the RSS delta.
      if (!values['skip-idle']) {
        const idle = await holdIdleSockets(cluster.url, Number(values.idle), nodePids, (i) => token(`idle-${i}`));
        idle.release();
        results.oursIdle = { ...idle };
      }
      // A short unreported run first: JIT, Prisma's query plans and fresh PostgreSQL backends warm up.
      await runLoad('ours', cluster.url, nodePids(), ['--jwt-secret', secret], { warmup: true });
      results.ours = await runLoad('ours', cluster.url, nodePids(), ['--jwt-secret', secret], { metricsUrls: cluster.nodes.map((node) => node.url), databaseUrl });
    } finally {
      await cluster.stop();
    }
  } finally {
    await database.drop();
    await deleteRedisKeys(redisUrl, redisPrefix);
  }

  if (!values['skip-bare']) {
    const port = 3990;
    const relay = spawn(process.execPath, [...gcProbe.args, '--import', 'tsx', join(ROOT, 'apps/server/bench/bare-relay.ts')], { env: { ...process.env, PORT: String(port), GC_PROBE_DIR: gcProbe.dir }, stdio: ['ignore', 'ignore', 'inherit'] });
    try {
      for (let i = 0; !(await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false)); i++) {
        if (i > 100) throw new Error('bare relay did not start');
        await sleep(100);
      }
      if (!values['skip-idle']) {
        const idle = await holdIdleSockets(`http://127.0.0.1:${port}`, Number(values.idle), () => [relay.pid!], (i) => token(`idle-${i}`));
        idle.release();
        results.bareIdle = { ...idle };
      }
      await runLoad('bare', `http://127.0.0.1:${port}`, [relay.pid!], [], { warmup: true });
      results.bare = await runLoad('bare', `http://127.0.0.1:${port}`, [relay.pid!], []);
    } finally {
      relay.kill('SIGTERM');
    }
  }
  report(results);
  if (values['cpu-prof']) {
    // node-1 wrote its profile when the cluster stopped it; it covers set-up, warm-up and the load.
    const newest = newestProfile(PROFILES);
    if (newest) console.log(`\nnode-1 CPU profile: ${newest}\n${summarise(newest)}`);
  }
}

function report(results: { ours?: Run; bare?: Run; oursIdle?: IdleResult; bareIdle?: IdleResult }): void {
  const { ours, bare, oursIdle, bareIdle } = results;
  const m = (run?: Run) => run?.summary.messages;
  // Per message delivered to a recipient's device (the sender's own ack is not a delivery), as in
  // the deliveries/s row.
  const perDelivery = (run: Run | undefined, cpu: number | undefined) => (run && cpu !== undefined && m(run)!.deliveries > 0 ? (cpu / m(run)!.deliveries) * 1e6 : NaN);
  const rows: Array<[string, number | undefined, number | undefined, string]> = [
    ['acked msgs/s', m(ours)?.ackedRate, m(bare)?.ackedRate, ''],
    ['deliveries/s', m(ours)?.deliveryRate, m(bare)?.deliveryRate, ''],
    ['ack p50 (ms)', m(ours)?.ackMs?.p50, m(bare)?.ackMs?.p50, ''],
    ['ack p99 (ms)', m(ours)?.ackMs?.p99, m(bare)?.ackMs?.p99, ''],
    ['end-to-end p50 (ms)', m(ours)?.e2eMs?.p50, m(bare)?.e2eMs?.p50, ''],
    ['end-to-end p99 (ms)', m(ours)?.e2eMs?.p99, m(bare)?.e2eMs?.p99, ''],
    ['lost / duplicated / out of order', (m(ours)?.lost ?? 0) + (m(ours)?.duplicates ?? 0) + (m(ours)?.outOfOrder ?? 0), (m(bare)?.lost ?? 0) + (m(bare)?.duplicates ?? 0) + (m(bare)?.outOfOrder ?? 0), 'sum'],
    ['server CPU µs per delivered message', perDelivery(ours, ours?.serverCpuSeconds), perDelivery(bare, bare?.serverCpuSeconds), 'load phase; nodes only'],
    ['stack CPU µs per delivered message', perDelivery(ours, ours?.stackCpuSeconds), perDelivery(bare, bare?.stackCpuSeconds), 'load phase; + nginx, PostgreSQL, Redis'],
    ...(['PostgreSQL', 'Redis', 'nginx'] as const).map((component): [string, number | undefined, number | undefined, string] => [
      `  of which ${component} µs per delivered message`,
      perDelivery(ours, ours?.cpuByComponent[component]),
      perDelivery(bare, bare?.cpuByComponent[component]),
      'load phase; all its processes',
    ]),
    ['messages per insert statement', ours?.batch?.messages, undefined, 'group commit, mean over the nodes'],
    ['receipt reports per statement', ours?.batch?.receipts, undefined, 'group commit, mean over the nodes'],
    ['PostgreSQL checkpoints during the run', ours?.background?.checkpoints, undefined, 'the whole server; each makes the next write of every page log it whole'],
    ['PostgreSQL autovacuum and autoanalyze runs', ours?.background?.autovacuums, undefined, "during the run, on the benchmark's tables"],
    ['loadgen CPU (% of a core)', ours?.summary.cpu.processCpuPct, bare?.summary.cpu.processCpuPct, ''],
    ['machine CPU busy (% of all cores)', ours?.machineBusyPct, bare?.machineBusyPct, 'load phase; everything, kernel included: near 100 means saturated'],
    ['idle sockets held', oursIdle?.connected, bareIdle?.connected, `target ${values.idle}`],
    ['server KB per idle socket', oursIdle ? oursIdle.rssBytesPerSocket / 1024 : undefined, bareIdle ? bareIdle.rssBytesPerSocket / 1024 : undefined, 'RSS delta after a full GC; nodes only'],
    ['  of which V8 heap in use', oursIdle ? oursIdle.heapBytesPerSocket / 1024 : undefined, bareIdle ? bareIdle.heapBytesPerSocket / 1024 : undefined, 'what the sockets keep alive'],
  ];
  const fmt = (value: number | undefined) => (value === undefined || Number.isNaN(value) ? '—' : value >= 100 ? value.toFixed(0) : value.toFixed(1));
  const ratio = (a?: number, b?: number) => (a === undefined || b === undefined || !b || Number.isNaN(a) || Number.isNaN(b) ? '—' : `${(a / b).toFixed(2)}x`);
  const machine = `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.versions.node}`;
  const lines = [
    `# npm run bench — ${new Date().toISOString()}`,
    '',
    `Machine: ${machine}; everything co-located (3 nodes, nginx, PostgreSQL, Redis, load generator).`,
    `Scenario: ${JSON.stringify(scenario)}`,
    '',
    '| metric | ours (3 nodes + nginx) | bare relay | ours/bare | note |',
    '|---|---|---|---|---|',
    ...rows.map(([name, a, b, note]) => `| ${name} | ${fmt(a)} | ${fmt(b)} | ${ratio(a, b)} | ${note} |`),
    '',
    `Verdicts: ours ${ours?.summary.verdict.ok ? 'ok' : `NOT ok: ${ours?.summary.verdict.reasons.join('; ')}`}; bare ${bare ? (bare.summary.verdict.ok ? 'ok' : `NOT ok: ${bare.summary.verdict.reasons.join('; ')}`) : 'skipped'}.`,
    oursIdle?.stoppedBy ? `Cluster idle connections stopped early: ${oursIdle.stoppedBy}` : '',
    bareIdle?.stoppedBy ? `Relay idle connections stopped early: ${bareIdle.stoppedBy}` : '',
  ];
  const text = lines.join('\n');
  console.log(`\n${text}`);
  writeFileSync(join(REPORTS, `bench-${stamp}.md`), `${text}\n`);
  writeFileSync(join(REPORTS, `bench-${stamp}.json`), JSON.stringify({ scenario, machine, results }, null, 2));
  console.log(`\nreports/bench-${stamp}.{md,json}, load generator reports: reports/bench-${stamp}-{ours,bare}.{json,html}`);
}

await main();
