/**
 * What `npm run bench` and `npm run bench:scaling` share: one load-generator run against our cluster
 * (N nodes behind nginx on PostgreSQL and Redis) or against the bare relay, with the CPU of every
 * process of the stack measured over the load phase only, split by component.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { createSigner } from 'fast-jwt';
import pg from 'pg';
import type { Summary } from '@chat/loadgen/summary';
import { startCluster, type Cluster } from '@chat/testkit/cluster';
import { deleteRedisKeys, startPrivateRedisCluster } from '@chat/testkit/services';
import { throwawayDatabase } from './database.ts';
import { cpuSeconds, gcProbe, machineTicks, wakeups } from './process-stats.ts';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const REPORTS = resolve(ROOT, 'reports');
export const PROFILES = join(REPORTS, 'profiles');

/** The load generator's flags, as `--key value` pairs. */
export type Scenario = Record<string, string>;

/** The stack's processes beyond our nodes, by what they are: what "the whole stack" costs. */
const INFRA = { postgres: 'PostgreSQL', 'redis-server': 'Redis', nginx: 'nginx' } as const;
export type Component = 'nodes' | (typeof INFRA)[keyof typeof INFRA];
export const COMPONENTS: readonly Component[] = ['nodes', 'PostgreSQL', 'Redis', 'nginx'];

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

interface Usage {
  component: Component;
  seconds: number;
  wakeups: number;
}

/** CPU seconds and wake-ups so far of each process that still exists, with its component. */
function usageByPid(pids: Array<[number, Component]>): Map<number, Usage> {
  const used = new Map<number, Usage>();
  for (const [pid, component] of pids) {
    try {
      used.set(pid, { component, seconds: cpuSeconds(pid), wakeups: wakeups(pid) });
    } catch {
      // exited
    }
  }
  return used;
}

/**
 * CPU seconds (or wake-ups) used between two samples, per component. PostgreSQL starts a backend per pool connection
 * whenever a pool grows, so the processes are listed anew at every sample; one that appeared in
 * between counts whole.
 */
function usageBetween(from: Map<number, Usage>, to: Map<number, Usage>, measure: 'seconds' | 'wakeups' = 'seconds'): Record<Component, number> {
  const used: Record<Component, number> = { nodes: 0, PostgreSQL: 0, Redis: 0, nginx: 0 };
  for (const [pid, usage] of to) used[usage.component] += usage[measure] - (from.get(pid)?.[measure] ?? 0);
  return used;
}

export interface Run {
  summary: Summary;
  stackCpuSeconds: number;
  /** CPU seconds of the load phase per component of the stack. */
  cpuByComponent: Record<Component, number>;
  /** Wake-ups (voluntary context switches, every thread) of the load phase per component. */
  wakeupsByComponent: Record<Component, number>;
  /** Mean items per group-commit statement over the run, from the nodes' /metrics (ours only). */
  batch?: { messages: number; receipts: number };
  /** PostgreSQL's background work during the run (ours only): what makes one run's tail unlike another's. */
  background?: Background;
  /** Share of the whole machine's CPU (every core, every process, the kernel) busy during the load phase. */
  machineBusyPct: number;
}

interface Background {
  /** Checkpoints of the whole server (a checkpoint makes the next write of every page log it whole). */
  checkpoints: number;
  /** Autovacuum and autoanalyze runs on the benchmark's tables. */
  autovacuums: number;
  /** WAL bytes PostgreSQL wrote (the whole server). */
  walBytes: number;
}

interface LoadOptions {
  warmup?: boolean;
  /** The nodes' own addresses, to read their group-commit metrics (ours only). */
  metricsUrls?: string[];
  databaseUrl?: string;
  /** Added to the report file names, e.g. `ours-3n`. */
  name: string;
  stamp: string;
}

/**
 * Runs the load generator once and measures the servers' CPU over its load phase only (connecting
 * and creating conversations are set-up, not the steady state): /proc is sampled every 250 ms and
 * the samples nearest to the phase's start and end, from the load generator's own timeline, are used.
 */
export async function runLoad(url: string, serverPids: number[], scenario: Scenario, extra: string[], options: LoadOptions): Promise<Run> {
  const batchesBefore = options.metricsUrls && (await writeBatches(options.metricsUrls));
  const backgroundBefore = options.databaseUrl && (await background(options.databaseUrl));
  const out = join(REPORTS, `bench-${options.stamp}-${options.name}${options.warmup ? '-warmup' : ''}.json`);
  const flags = { ...scenario, ...(options.warmup && { duration: '8s' }) };
  const args = [
    '--conditions=@chat/source',
    '--import',
    'tsx',
    join(ROOT, 'apps/loadgen/src/cli.ts'),
    '--url',
    url,
    '--out',
    out,
    '--quiet',
    ...Object.entries(flags).flatMap(([key, value]) => [`--${key}`, value]),
    ...extra,
  ];
  const samples: Array<{ at: number; cpu: Map<number, Usage>; machine: { busy: number; total: number } }> = [];
  const sample = () => samples.push({ at: Date.now(), cpu: usageByPid([...serverPids.map((pid): [number, Component] => [pid, 'nodes']), ...infraPids()]), machine: machineTicks() });
  sample();
  const timer = setInterval(sample, 250);
  const code = await new Promise<number | null>((done) => spawn(process.execPath, args, { stdio: options.warmup ? 'ignore' : 'inherit' }).once('exit', done));
  clearInterval(timer);
  sample();
  console.log(`loadgen against ${options.name}${options.warmup ? ' (warm-up)' : ''} exited with ${code}`);
  const summary = JSON.parse(readFileSync(out, 'utf8')) as Summary;
  const started = Date.parse(summary.run.startedAt);
  const load = summary.phases.find((phase) => phase.name === 'load');
  const nearest = (at: number) => samples.reduce((best, s) => (Math.abs(s.at - at) < Math.abs(best.at - at) ? s : best));
  const from = nearest(started + (load?.startS ?? 0) * 1000);
  const to = nearest(started + (load?.endS ?? summary.run.wallSeconds) * 1000);
  const machine = to.machine.total > from.machine.total ? (100 * (to.machine.busy - from.machine.busy)) / (to.machine.total - from.machine.total) : NaN;
  const cpuByComponent = usageBetween(from.cpu, to.cpu);
  const wakeupsByComponent = usageBetween(from.cpu, to.cpu, 'wakeups');
  const stackCpuSeconds = Object.values(cpuByComponent).reduce((a, b) => a + b, 0);
  const batchesAfter = options.metricsUrls && (await writeBatches(options.metricsUrls));
  const backgroundAfter = options.databaseUrl && (await background(options.databaseUrl));
  const mean = (writer: 'messages' | 'receipts') => {
    const count = batchesAfter![writer].count - batchesBefore![writer].count;
    return count > 0 ? (batchesAfter![writer].sum - batchesBefore![writer].sum) / count : NaN;
  };
  return {
    summary,
    stackCpuSeconds,
    cpuByComponent,
    wakeupsByComponent,
    machineBusyPct: machine,
    ...(batchesAfter && { batch: { messages: mean('messages'), receipts: mean('receipts') } }),
    ...(backgroundBefore &&
      backgroundAfter && {
        background: {
          checkpoints: backgroundAfter.checkpoints - backgroundBefore.checkpoints,
          autovacuums: backgroundAfter.autovacuums - backgroundBefore.autovacuums,
          walBytes: backgroundAfter.walBytes - backgroundBefore.walBytes,
        },
      }),
  };
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
      .then(
        (result) => Number(result.rows[0]?.n ?? -1),
        () => -1,
      );
    const vacuums = await client.query<{ n: string }>('SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) AS n FROM pg_stat_user_tables');
    const wal = await client.query<{ n: string }>("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn AS n");
    return { checkpoints, autovacuums: Number(vacuums.rows[0]?.n ?? -1), walBytes: Number(wal.rows[0]?.n ?? NaN) };
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

/** HS256 tokens the benchmark's nodes accept: the load generator signs its own with `--jwt-secret`. */
export function benchSecret(): { secret: string; token(userId: string): string } {
  const secret = `bench-${randomBytes(16).toString('hex')}`;
  const sign = createSigner({ key: secret, expiresIn: 3_600_000 });
  return { secret, token: (userId) => sign({ sub: userId }) };
}

export interface OursOptions {
  nodes: number;
  secret: string;
  stamp: string;
  rateLimits: boolean;
  /** node-1 runs with --cpu-prof into {@link PROFILES}. */
  cpuProf?: boolean;
  /** Extra Node.js flags for every node, e.g. `--perf-basic-prof-only-functions` for `perf record`. */
  nodeFlags?: string[];
  /** Extra environment for every node (e.g. REDIS_ADAPTER). */
  env?: Record<string, string>;
  /** The machine's Redis (REDIS_URL), or a private Redis Cluster of 3 masters + 3 replicas. @default 'single' */
  redis?: 'single' | 'cluster';
}

/**
 * Our cluster on a throwaway database and a Redis key prefix of its own, both removed afterwards;
 * `use` gets the running cluster and the database URL.
 */
export async function withOurCluster<T>(options: OursOptions, use: (cluster: Cluster, databaseUrl: string) => Promise<T>): Promise<T> {
  const database = await throwawayDatabase('chat_bench');
  const redisUrl = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
  const redisPrefix = `bench:${options.stamp}:${options.nodes}n:`;
  const redisCluster = options.redis === 'cluster' ? await startPrivateRedisCluster() : null;
  // An empty REDIS_URL counts as unset for the nodes.
  const redisEnv = redisCluster ? { REDIS_URL: '', REDIS_CLUSTER_NODES: redisCluster.nodes } : { REDIS_URL: redisUrl };
  try {
    const cluster = await startCluster({
      nodes: options.nodes,
      accessLog: false,
      nodeArgs: (index: number) => [...gcProbe.args, ...(options.nodeFlags ?? []), ...(options.cpuProf && index === 0 ? ['--cpu-prof', '--cpu-prof-dir', PROFILES] : [])],
      env: {
        GC_PROBE_DIR: gcProbe.dir,
        DATABASE_URL: database.url,
        ...redisEnv,
        REDIS_KEY_PREFIX: redisPrefix,
        JWT_SECRET: options.secret,
        RATE_LIMITS: options.rateLimits ? 'true' : 'false',
        LOG_LEVEL: 'warn',
        NODE_ENV: 'production',
        DEV_TOKENS: 'false',
        ...options.env,
      },
    });
    try {
      return await use(cluster, database.url);
    } finally {
      await cluster.stop();
    }
  } finally {
    await database.drop();
    if (redisCluster) await redisCluster.destroy();
    else await deleteRedisKeys(redisUrl, redisPrefix);
  }
}

/** Our cluster under one scenario: an unreported warm-up, then the measured run. */
export async function runOurs(options: OursOptions, scenario: Scenario): Promise<Run> {
  return withOurCluster(options, async (cluster, databaseUrl) => {
    const pids = cluster.nodes.map((node) => node.pid);
    const name = `ours-${options.nodes}n`;
    // A short unreported run first: JIT, query plans and fresh PostgreSQL backends warm up.
    await runLoad(cluster.url, pids, scenario, ['--jwt-secret', options.secret], { warmup: true, name, stamp: options.stamp });
    return runLoad(cluster.url, pids, scenario, ['--jwt-secret', options.secret], { name, stamp: options.stamp, metricsUrls: cluster.nodes.map((node) => node.url), databaseUrl });
  });
}

/** The bare relay (bare-relay.ts) on `port`, started with the GC probe; stopped after `use`. */
export async function withBareRelay<T>(use: (url: string, pid: number) => Promise<T>, port = 3990): Promise<T> {
  const relay = spawn(process.execPath, [...gcProbe.args, '--conditions=@chat/source', '--import', 'tsx', join(ROOT, 'apps/server/bench/bare-relay.ts')], {
    env: { ...process.env, PORT: String(port), GC_PROBE_DIR: gcProbe.dir },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  try {
    for (
      let i = 0;
      !(await fetch(`http://127.0.0.1:${port}/healthz`).then(
        (r) => r.ok,
        () => false,
      ));
      i++
    ) {
      if (i > 100) throw new Error('bare relay did not start');
      await sleep(100);
    }
    return await use(`http://127.0.0.1:${port}`, relay.pid!);
  } finally {
    relay.kill('SIGTERM');
  }
}

/** The bare relay under one scenario: an unreported warm-up, then the measured run. */
export async function runBare(scenario: Scenario, stamp: string): Promise<Run> {
  return withBareRelay(async (url, pid) => {
    await runLoad(url, [pid], scenario, [], { warmup: true, name: 'bare', stamp });
    return runLoad(url, [pid], scenario, [], { name: 'bare', stamp });
  });
}

/**
 * The bare relay as a cluster (bare-relay.ts with REDIS_URL): `nodes` processes behind the same nginx
 * as ours, on the machine's Redis under a key prefix of its own (removed afterwards). The control
 * for our node counts: what the same number of Socket.IO processes costs on the same machine.
 */
export async function runBareCluster(nodes: number, scenario: Scenario, stamp: string): Promise<Run> {
  const redisUrl = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
  const redisPrefix = `bench:${stamp}:bare-${nodes}n:`;
  const cluster = await startCluster({
    nodes,
    accessLog: false,
    program: join(ROOT, 'apps/server/bench/bare-relay.ts'),
    nodeArgs: () => gcProbe.args,
    env: { GC_PROBE_DIR: gcProbe.dir, REDIS_URL: redisUrl, REDIS_KEY_PREFIX: redisPrefix },
  });
  try {
    const pids = cluster.nodes.map((node) => node.pid);
    const name = `bare-${nodes}n`;
    await runLoad(cluster.url, pids, scenario, [], { warmup: true, name, stamp });
    return await runLoad(cluster.url, pids, scenario, [], { name, stamp });
  } finally {
    await cluster.stop();
    await deleteRedisKeys(redisUrl, redisPrefix);
  }
}

/** CPU µs per message delivered to a recipient's device (the sender's own ack is not a delivery). */
export function perDelivery(run: Run | undefined, cpuSeconds: number | undefined): number {
  const deliveries = run?.summary.messages.deliveries ?? 0;
  return run && cpuSeconds !== undefined && deliveries > 0 ? (cpuSeconds / deliveries) * 1e6 : NaN;
}

export function lostDupOrder(run: Run | undefined): number | undefined {
  const m = run?.summary.messages;
  return m && m.lost + m.duplicates + m.outOfOrder;
}

export const fmt = (value: number | undefined): string => (value === undefined || Number.isNaN(value) ? '—' : value >= 100 ? value.toFixed(0) : value.toFixed(1));
export const ratio = (a?: number, b?: number): string => (a === undefined || b === undefined || !b || Number.isNaN(a) || Number.isNaN(b) ? '—' : `${(a / b).toFixed(2)}x`);
export const machineLine = (): string => `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.versions.node}`;
export const verdict = (run?: Run): string => (!run ? 'skipped' : run.summary.verdict.ok ? 'ok' : `NOT ok: ${run.summary.verdict.reasons.join('; ')}`);

/** CPU seconds per component used by `serverPids` (as nodes) and the infra processes over `ms` of wall time. */
export async function cpuOver(serverPids: number[], ms: number): Promise<Record<Component, number>> {
  const all = () => usageByPid([...serverPids.map((pid): [number, Component] => [pid, 'nodes']), ...infraPids()]);
  const from = all();
  await sleep(ms);
  return usageBetween(from, all());
}

/** The nodes' REDIS_ADAPTER from a benchmark's --adapter flag; unset keeps the server's default. */
export const adapterEnv = (adapter: string | undefined): Record<string, string> => (adapter ? { REDIS_ADAPTER: adapter } : {});
