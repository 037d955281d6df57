/**
 * One chaos run: private PostgreSQL and Redis (or Redis Cluster), 3 nodes behind nginx
 * (@chat/testkit), the load generator's SDK clients sending continuously (apps/loadgen), and the
 * faults in turn inside its load phase. Afterwards every check is measured against its bound. Everything started here is stopped in
 * a `finally`, and by the launchers' exit hooks if the process dies first.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism, cpus } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, startCluster, type Cluster } from '@chat/testkit/cluster';
import { Redis } from 'ioredis';
import { startPrivatePostgres, startPrivateRedis, startPrivateRedisCluster, waitUntil, type PrivatePostgres, type PrivateRedis, type PrivateRedisCluster } from '@chat/testkit/services';
import { adminQuery } from '@chat/server/db/admin';
import { applyMigrations } from '@chat/server/db/migrations';
import { runLoadtest, type Io } from '@chat/loadgen/coordinator';
import { resolveOptions } from '@chat/loadgen/options';
import type { Summary } from '@chat/loadgen/summary';
import { tokenMinter } from '@chat/loadgen/tokens';
import type { ChaosOptions, PhaseName } from './options.ts';
import { OutageProbe, type ProbeReport } from './probe.ts';
import { checkDatabase, countKeys, heapAfterGc, keysPerMaster, pickFailoverVictim, presenceMismatch, sampleHashes, stateKeys, timeUntilZero, type DatabaseReport, type RedisTarget } from './verify.ts';

export interface Check {
  name: string;
  measured: string;
  bound: string;
  pass: boolean;
}

export interface PhaseRecord {
  name: PhaseName;
  /** What the fault was, for a reader: the name, or `redis failover` on a Redis Cluster. */
  label: string;
  /** Seconds since the load started. */
  atS: number;
  tookMs: number;
  detail: string;
  /** Whether the fault itself went as planned (the node exited, the service came back). */
  ok: boolean;
}

export interface ChaosReport {
  tool: 'chat-chaos';
  startedAt: string;
  machine: string;
  options: ChaosOptions;
  phases: PhaseRecord[];
  checks: Check[];
  ok: boolean;
  probe: ProbeReport | null;
  database: DatabaseReport | null;
  heap: Array<{ node: string; beforeMiB: number | null; afterMiB: number | null; restarted: boolean }>;
  /** The `redis` phase on a Redis Cluster (`--redis cluster`); null otherwise. */
  redisFailover: FailoverRecord | null;
  load: Summary | null;
  failure: string | null;
}

export interface FailoverRecord {
  /** The master SIGKILLed: the one holding the most presence keys. */
  master: number;
  /** Presence keys per master (by port) just before the kill. */
  presenceKeys: Record<string, number>;
  /** The replica promoted in its place (null: none took over). */
  promoted: number | null;
  /** From the SIGKILL until every slot was served by a running master again. */
  failoverMs: number;
  /** From the SIGKILL until it was started again. */
  downMs: number;
  /** From its start until it was a replica of the new master, in sync. */
  rejoinMs: number;
}

const KEY_PREFIX = 'chaos:';
const KEYS = stateKeys(KEY_PREFIX);
/** The longest a private Redis Cluster may take to promote a replica, or to take the old master back. */
const FAILOVER_TIMEOUT_MS = 30_000;
/** Typing entries expire after TYPING_TTL_MS (the nodes' default). */
const TYPING_TTL_MS = 6000;
const SHUTDOWN_TIMEOUT_MS = 10_000;
const mib = (bytes: number | null) => (bytes === null ? null : Math.round((bytes / 2 ** 20) * 10) / 10);

export async function runChaos(options: ChaosOptions, io: Io): Promise<ChaosReport> {
  const startedAt = new Date();
  const runId = randomBytes(3).toString('hex');
  const secret = randomBytes(24).toString('hex');
  const phases: PhaseRecord[] = [];
  const report: ChaosReport = {
    tool: 'chat-chaos',
    startedAt: startedAt.toISOString(),
    machine: `${availableParallelism()} × ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, Node ${process.version}`,
    options,
    phases,
    checks: [],
    ok: false,
    probe: null,
    database: null,
    heap: [],
    redisFailover: null,
    load: null,
    failure: null,
  };

  let postgres: PrivatePostgres | undefined;
  let redis: PrivateRedis | undefined;
  let redisCluster: PrivateRedisCluster | undefined;
  let cluster: Cluster | undefined;
  let probe: OutageProbe | undefined;
  try {
    io.log(`chaos: starting a private PostgreSQL and ${options.redis === 'cluster' ? 'Redis Cluster (3 masters + 3 replicas)' : 'Redis'}`);
    const startRedis = options.redis === 'cluster' ? startPrivateRedisCluster().then((started) => (redisCluster = started)) : startPrivateRedis().then((started) => (redis = started));
    const started = await Promise.allSettled([startPrivatePostgres().then((started) => (postgres = started)), startRedis]);
    for (const result of started) if (result.status === 'rejected') throw result.reason;
    if (!postgres) throw new Error('PostgreSQL did not start');
    const target: RedisTarget = redisCluster ? { kind: 'cluster', nodes: redisCluster.nodes } : { kind: 'single', url: redis!.url };
    const databaseUrl = Object.assign(new URL(postgres.url), { pathname: '/chat' }).toString();
    await adminQuery(postgres.url, 'CREATE DATABASE chat');
    await applyMigrations({ kind: 'postgres', connectionString: databaseUrl });

    io.log('chaos: starting 3 nodes behind nginx');
    // Each node's inspector, on loopback, only for the forced-GC heap measurement.
    const inspectors = await Promise.all([0, 1, 2].map(() => freePort()));
    cluster = await startCluster({
      nodeArgs: (index) => [`--inspect=127.0.0.1:${inspectors[index]}`],
      nodes: 3,
      verbose: options.verbose,
      accessLog: false,
      env: {
        NODE_ENV: 'production',
        DATABASE_URL: databaseUrl,
        ...(target.kind === 'single' ? { REDIS_URL: target.url, REDIS_CLUSTER_NODES: undefined } : { REDIS_URL: undefined, REDIS_CLUSTER_NODES: target.nodes }),
        REDIS_KEY_PREFIX: KEY_PREFIX,
        JWT_SECRET: secret,
        DEV_TOKENS: 'false',
        LOG_LEVEL: options.verbose ? 'info' : 'warn',
        PRESENCE_NODE_TTL_MS: String(options.presenceTtlMs),
        TYPING_TTL_MS: String(TYPING_TTL_MS),
        SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
        // Per-user budgets would answer the probe's 10 sends/s and the retry bursts after an outage
        // with rate_limited; they have their own tests (cluster-state.test.ts).
        RATE_LIMITS: 'false',
      },
    });
    const nodes = cluster.nodes;
    const heapBefore = await Promise.all(inspectors.map((port) => heapAfterGc(port)));
    const restarted = new Set<number>();

    const loadOptions = resolveOptions({
      url: cluster.url,
      clients: options.clients,
      rate: options.rate,
      'group-size': options.groupSize,
      'devices-per-user': options.devicesPerUser,
      // The longest the load may last; it ends when the last fault has settled.
      duration: `${Math.ceil(((options.phases.length + 2) * (options.settleMs + options.downMs + 60_000)) / 1000)}s`,
      grace: '30s',
      'jwt-secret': secret,
      'run-id': `chaos-${runId}`,
      quiet: options.quiet,
      ...(options.workers !== null && { workers: options.workers }),
      ...(options.seed !== null && { seed: options.seed }),
    });
    loadOptions.recordAcked = true;
    const mint = tokenMinter(loadOptions);
    probe = await OutageProbe.start(cluster.url, mint, runId);

    let loadStart = 0;
    const atS = () => Math.round((performance.now() - loadStart) / 100) / 10;
    const labelOf = (name: PhaseName) => (name === 'redis' && redisCluster ? 'redis failover' : name);
    const phase = async (name: PhaseName, run: () => Promise<{ detail: string; ok: boolean }>) => {
      const at = atS();
      const started = performance.now();
      const label = labelOf(name);
      io.log(`chaos: [${at} s] ${label}…`);
      const { detail, ok } = await run();
      phases.push({ name, label, atS: at, tookMs: Math.round(performance.now() - started), detail, ok });
      io.log(`chaos: [${atS()} s] ${label}: ${detail}`);
    };
    const c = cluster;
    const pgInstance = postgres;
    const redisInstance = redis;
    const clusterInstance = redisCluster;
    const outageProbe = probe;
    let ghostAfterKill: { ms: number | null; last: number } | null = null;
    let ghostAfterRedis: { ms: number | null; last: number; label: string } | null = null;
    // Presence in Redis is exactly the nodes' live sockets: each node's index, and all users'
    // connections (no ghost left by a dead process or a lost disconnect, no socket forgotten).
    // A look a busy node or Redis does not answer in time is -1: not settled yet, and not a failed run.
    const presenceSettles = async (after: string, boundMs: number) => {
      const look = async () => {
        try {
          return await presenceMismatch(target, KEYS, await Promise.all(nodes.map(async (node) => ({ id: node.id, sockets: await connectedSockets(node.url) }))));
        } catch (error) {
          return { off: -1, detail: `no answer: ${error instanceof Error ? error.message : String(error)}` };
        }
      };
      const result = await timeUntilZero(async () => (await look()).off, boundMs);
      if (result.ms === null) io.log(`presence check after the ${after} failed: ${(await look()).detail}`);
      return result;
    };
    const presenceText = (result: { ms: number | null; last: number }) =>
      result.ms === null ? `presence NOT = live sockets within the bound (${offText(result.last)})` : `presence = live sockets after ${result.ms} ms`;
    // After a Redis restart or failover each node registers all its sockets again (one by one), and
    // after a failover replays its recent disconnects. Bound: as long as a client may take to
    // reconnect, at least the presence bound.
    const checkPresenceAfterRedis = async (label: string) => {
      const result = await presenceSettles(label, reregisterBoundMs(options));
      ghostAfterRedis = { ...result, label };
      return presenceText(result);
    };
    let drainExit: { code: number | null; ms: number } | null = null;
    const faults: Record<PhaseName, () => Promise<{ detail: string; ok: boolean }>> = {
      kill: async () => {
        const exit = await c.killNode(0, 'SIGKILL');
        await sleep(options.downMs);
        await c.restartNode(0);
        restarted.add(0);
        // No ghosts: within the presence bound, the restarted node's presence entries are exactly
        // its live sockets (the killed process's connections reaped, not adopted), and so are every
        // other node's and all users' connections (its users who reconnected elsewhere included).
        const ghosts = await presenceSettles(`SIGKILL of ${nodes[0]!.id}`, presenceBoundMs(options));
        ghostAfterKill = ghosts;
        if (ghosts.ms === null) io.log(`${nodes[0]!.id}'s last lines:\n${c.logs(0).slice(-20).join('\n')}`);
        return { detail: `${nodes[0]!.id} ${exit.signal ?? exit.code}, restarted after ${options.downMs} ms; ${presenceText(ghosts)}`, ok: exit.signal === 'SIGKILL' };
      },
      redis: async () => {
        if (clusterInstance) return failover(clusterInstance);
        await redisInstance!.stop();
        await redisInstance!.start();
        return { detail: `stopped and started again (every key gone); ${await checkPresenceAfterRedis('Redis restart')}`, ok: true };
      },
      postgres: async () => {
        await outageProbe.ready(options.reconnectBoundMs);
        await pgInstance.stop();
        const stoppedAt = performance.now();
        // Probes start after the stop has completed and end a little before the restart, so every
        // one of them meets a database that is down.
        await outageProbe.during(Math.max(200, options.downMs - 500), 100, options.unavailableBoundMs);
        await sleep(Math.max(0, options.downMs - (performance.now() - stoppedAt)));
        await pgInstance.start();
        const downMs = Math.round(performance.now() - stoppedAt);
        await outageProbe.retryRefused(30_000);
        return { detail: `down for ${downMs} ms`, ok: true };
      },
      drain: async () => {
        const started = performance.now();
        const exit = await c.killNode(1, 'SIGTERM');
        const drainMs = Math.round(performance.now() - started);
        drainExit = { code: exit.code, ms: drainMs };
        await c.restartNode(1);
        restarted.add(1);
        return { detail: `${nodes[1]!.id} exited with code ${exit.code ?? exit.signal} after ${drainMs} ms, restarted`, ok: exit.code === 0 };
      },
    };

    // The master holding the most presence keys is SIGKILLed; its replica must take over (every slot
    // served again), and the old master, started again after --down, must rejoin as the new one's replica.
    const failover = async (rc: PrivateRedisCluster) => {
      const masters = await rc.masters();
      const counts = await keysPerMaster(
        masters.map((master) => master.port),
        KEYS.presence,
      );
      const victim = pickFailoverVictim(counts);
      const replicas = await rc.replicasOf(victim);
      const killedAt = performance.now();
      await rc.kill(victim);
      await rc.waitHealthy(FAILOVER_TIMEOUT_MS);
      const failoverMs = Math.round(performance.now() - killedAt);
      const promoted = (await rc.masters()).find((master) => replicas.includes(master.port))?.port ?? null;
      await sleep(options.downMs);
      const downMs = Math.round(performance.now() - killedAt);
      const startedAt = performance.now();
      await rc.start(victim);
      await rc.waitHealthy(FAILOVER_TIMEOUT_MS);
      let rejoined = true;
      await waitUntil(() => isSyncedReplicaOf(victim, promoted), FAILOVER_TIMEOUT_MS, `the old master :${victim} as a replica`).catch(() => (rejoined = false));
      const rejoinMs = Math.round(performance.now() - startedAt);
      report.redisFailover = { master: victim, presenceKeys: Object.fromEntries(counts), promoted, failoverMs, downMs, rejoinMs };
      const spread = [...counts].map(([port, n]) => `:${port} ${n}`).join(', ');
      const presence = await checkPresenceAfterRedis('Redis failover');
      return {
        detail: `SIGKILL master :${victim} (presence keys ${spread}), replica ${promoted === null ? 'NONE' : `:${promoted}`} promoted in ${failoverMs} ms; down ${downMs} ms, started again: ${rejoined ? `a synced replica after ${rejoinMs} ms` : 'NOT a replica'}; ${presence}`,
        ok: promoted !== null && rejoined,
      };
    };

    const result = await runLoadtest(loadOptions, io, {
      duringLoad: async () => {
        loadStart = performance.now();
        await sleep(options.settleMs);
        for (const name of options.phases) {
          await phase(name, faults[name]);
          await sleep(options.settleMs);
        }
      },
    });
    report.load = result.summary;
    report.probe = options.phases.includes('postgres') ? probe.report() : null;
    probe.close();
    probe = undefined;

    // After the run every client has closed: nobody may still look online, nobody still typing.
    const presenceBound = presenceBoundMs(options);
    const ghosts = await timeUntilZero(() => countKeys(target, KEYS.conns), presenceBound);
    if (ghosts.ms === null) io.log(`presence check after the run failed: ${ghosts.last} users still online, e.g.\n${(await sampleHashes(target, KEYS.conns)).join('\n')}`);
    const typingBound = TYPING_TTL_MS + 2000;
    const typing = await timeUntilZero(() => countKeys(target, KEYS.typing), typingBound);
    const heapAfter = await Promise.all(inspectors.map((port) => heapAfterGc(port)));
    report.heap = nodes.map((node, i) => ({ node: node.id, beforeMiB: mib(heapBefore[i]!), afterMiB: mib(heapAfter[i]!), restarted: restarted.has(i) }));

    report.database = await checkDatabase(databaseUrl, [...result.acked, ...(report.probe?.acked ?? [])]);
    report.checks = buildChecks(options, report, result.summary, { ghosts, ghostAfterKill, ghostAfterRedis, typing, presenceBound, typingBound, drainExit });
    report.ok = report.checks.every((check) => check.pass);
  } catch (error) {
    report.failure = error instanceof Error ? (error.stack ?? error.message) : String(error);
    report.ok = false;
    if (cluster) for (const i of [0, 1, 2]) io.log(`--- last lines of node ${i + 1}:\n${cluster.logs(i).slice(-15).join('\n')}`);
  } finally {
    probe?.close();
    await cluster?.stop().catch(() => {});
    await redis?.destroy().catch(() => {});
    await redisCluster?.destroy().catch(() => {});
    await postgres?.destroy().catch(() => {});
  }
  return report;
}

/** How soon after a Redis restart or failover presence must be the live sockets again: the reconnect bound, at least the presence bound. */
function reregisterBoundMs(options: ChaosOptions): number {
  return Math.max(presenceBoundMs(options), options.reconnectBoundMs);
}

/** The presence bound: the node TTL, one reaping interval (TTL / 4), and 2 s of scheduling slack. */
function presenceBoundMs(options: ChaosOptions): number {
  return options.presenceTtlMs + Math.floor(options.presenceTtlMs / 4) + 2000;
}

/** Whether the Redis at `port` is a replica of the one at `masterPort`, its link up and its initial sync done. */
async function isSyncedReplicaOf(port: number, masterPort: number | null): Promise<boolean> {
  const redis = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => {});
  try {
    await redis.connect();
    const info = await redis.info('replication');
    return /^role:slave\r?$/m.test(info) && /^master_link_status:up\r?$/m.test(info) && (masterPort === null || new RegExp(`^master_port:${masterPort}\\r?$`, 'm').test(info));
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

/** A presence mismatch as measured: how far off, or -1 when a node or Redis did not answer. */
function offText(off: number): string {
  return off === -1 ? 'no answer from a node or Redis' : `≠ live sockets by ${off}`;
}

async function connectedSockets(nodeUrl: string): Promise<number> {
  const text = await fetch(`${nodeUrl}/metrics`, { signal: AbortSignal.timeout(5000) }).then((response) => response.text());
  const match = /^chat_connected_sockets(?:\{[^}]*\})? ([0-9.e+]+)$/m.exec(text);
  if (!match) throw new Error(`${nodeUrl}/metrics has no chat_connected_sockets`);
  return Number(match[1]);
}

interface Measured {
  ghosts: { ms: number | null; last: number };
  ghostAfterKill: { ms: number | null; last: number } | null;
  ghostAfterRedis: { ms: number | null; last: number; label: string } | null;
  typing: { ms: number | null; last: number };
  presenceBound: number;
  typingBound: number;
  drainExit: { code: number | null; ms: number } | null;
}

function buildChecks(options: ChaosOptions, report: ChaosReport, load: Summary, measured: Measured): Check[] {
  const checks: Check[] = [];
  const add = (name: string, measuredText: string, bound: string, pass: boolean) => checks.push({ name, measured: measuredText, bound, pass });
  const m = load.messages;
  const c = load.connections;
  const db = report.database!;

  const planned = options.phases.map((name) => (name === 'redis' && options.redis === 'cluster' ? 'redis failover' : name));
  add(
    'faults carried out',
    report.phases.map((p) => `${p.label}${p.ok ? '' : ' FAILED'}`).join(', ') || 'none',
    planned.join(', '),
    report.phases.length === options.phases.length && report.phases.every((p) => p.ok),
  );
  add(
    'load ran and was checked',
    `${m.sent} sent, ${m.acked} acked (${m.ackedRate}/s), ${load.run.plan.direct} direct + ${load.run.plan.group} group conversations, ${c.connected}/${c.devices} devices`,
    'acked > 0, every device connected',
    load.verdict.exitCode !== 3 && m.acked > 0 && c.failed === 0,
  );
  add(
    'acked messages in PostgreSQL exactly once',
    `${db.acked} acked: ${db.missing} missing, ${db.mismatched} at another seq, ${db.duplicateRows} stored twice`,
    '0, 0, 0',
    db.acked > 0 && db.missing === 0 && db.mismatched === 0 && db.duplicateRows === 0,
  );
  add('gap-free seqs per conversation', `${db.conversations - db.gappy}/${db.conversations} conversations are 1..last_seq, each once`, 'all', db.gappy === 0 && db.conversations > 0);
  add('every device got every message exactly once', `${m.expected} device×message pairs: ${m.lost} lost, ${m.duplicates} duplicated`, '0, 0', m.expected > 0 && m.lost === 0 && m.duplicates === 0);
  // The SDK reports a conversation's messages in seq order: live fan-outs of two
  // nodes that cross, and holes it fetched, included.
  add('in seq order, resyncs included', `${m.outOfOrder} of ${m.deliveries} deliveries out of order (${m.outOfOrderResync} while resyncing)`, '0', m.outOfOrder === 0);
  add(
    'SDK sends all acked in the end',
    `${m.failed} failed, ${m.unackedAtEnd} unacked, ${m.retries} retries (${load.errors.nacks['unavailable'] ?? 0} unavailable answers)`,
    '0 failed, 0 unacked',
    m.failed === 0 && m.unackedAtEnd === 0,
  );

  const probe = report.probe;
  if (options.phases.includes('postgres')) {
    if (probe === null) add('PostgreSQL down: prompt unavailable', 'no probe ran', '', false);
    else {
      const other =
        Object.entries(probe.otherErrors)
          .map(([code, n]) => `${code} ${n}`)
          .join(', ') || 'none other';
      add(
        'PostgreSQL down: prompt unavailable',
        `${probe.unavailable}/${probe.sent} unavailable (${other}), ${probe.ok} ok; p50 ${probe.p50Ms} ms, max ${probe.maxMs} ms`,
        `all unavailable, max ≤ ${options.unavailableBoundMs} ms`,
        probe.sent > 0 && probe.unavailable === probe.sent && probe.maxMs <= options.unavailableBoundMs,
      );
      add('PostgreSQL back: refused sends retried ok', `${probe.retriedAcked}/${probe.retried} acked with the same clientMsgId`, 'all', probe.retried > 0 && probe.retriedAcked === probe.retried);
    }
  }
  const rejoin = c.rejoinMs;
  const recovery = c.recoveryMs;
  const ms = (value: number | undefined) => `${Math.round(value ?? 0)} ms`;
  add(
    'every client reconnected',
    `${rejoin?.count ?? 0}/${c.unplannedDisconnects} unplanned disconnects reconnected, p50 ${ms(rejoin?.p50)}, max ${ms(rejoin?.max)}`,
    `all, each ≤ ${options.reconnectBoundMs} ms`,
    c.unrecovered === 0 && (rejoin?.max ?? 0) <= options.reconnectBoundMs,
  );
  add(
    '…and resynced by itself',
    `${c.recoveries}/${c.unplannedDisconnects} resynced, p50 ${ms(recovery?.p50)}, max ${ms(recovery?.max)}; ${c.unrecovered} not resynced at the end`,
    'all (time reported: it grows with load)',
    c.unrecovered === 0,
  );
  if (measured.ghostAfterKill) {
    const g = measured.ghostAfterKill;
    add(
      'no ghost presence after SIGKILL + restart',
      g.ms === null ? `index and conns: ${offText(g.last)}` : `every node's index and all conns = live sockets after ${g.ms} ms`,
      `≤ ${measured.presenceBound} ms`,
      g.ms !== null,
    );
  }
  const f = report.redisFailover;
  if (options.phases.includes('redis') && options.redis === 'cluster') {
    if (f === null) add('Redis master failover', 'not carried out', '', false);
    else {
      add(
        'Redis master failover',
        `SIGKILL master :${f.master} (${f.presenceKeys[f.master]} presence keys), replica ${f.promoted === null ? 'NONE' : `:${f.promoted}`} promoted in ${f.failoverMs} ms; back as a replica ${f.rejoinMs} ms after its start`,
        `promoted and rejoined, each ≤ ${FAILOVER_TIMEOUT_MS} ms`,
        f.promoted !== null && f.failoverMs <= FAILOVER_TIMEOUT_MS && report.phases.some((p) => p.name === 'redis' && p.ok),
      );
    }
  }
  if (measured.ghostAfterRedis) {
    const r = measured.ghostAfterRedis;
    add(
      `no ghost presence after the ${r.label}`,
      r.ms === null ? `index and conns: ${offText(r.last)}` : `every node's index and all conns = live sockets after ${r.ms} ms`,
      `≤ ${reregisterBoundMs(options)} ms`,
      r.ms !== null,
    );
  }
  const g = measured.ghosts;
  add('no ghost presence after the run', g.ms === null ? `${g.last} users still online` : `nobody online ${g.ms} ms after the last client closed`, `≤ ${measured.presenceBound} ms`, g.ms !== null);
  const t = measured.typing;
  add('typing state cleared', t.ms === null ? `${t.last} conversations still show typing` : `no typing entry left after ${t.ms} ms`, `≤ ${measured.typingBound} ms`, t.ms !== null);
  if (measured.drainExit)
    add(
      'SIGTERM drains gracefully',
      `exit code ${measured.drainExit.code} after ${measured.drainExit.ms} ms`,
      `code 0, ≤ ${SHUTDOWN_TIMEOUT_MS} ms`,
      measured.drainExit.code === 0 && measured.drainExit.ms <= SHUTDOWN_TIMEOUT_MS + 1000,
    );
  for (const heap of report.heap) {
    const grown = heap.beforeMiB === null || heap.afterMiB === null ? null : Math.round((heap.afterMiB - heap.beforeMiB) * 10) / 10;
    add(
      `heap of ${heap.node}${heap.restarted ? ' (restarted)' : ''}`,
      grown === null ? 'no /metrics answer' : `${heap.beforeMiB} → ${heap.afterMiB} MiB (${grown >= 0 ? '+' : ''}${grown})`,
      `growth ≤ ${options.heapBoundMiB} MiB`,
      grown !== null && grown <= options.heapBoundMiB,
    );
  }
  return checks;
}

/** The table, as printed at the end of a run and pasted into the README. */
export function formatChecks(checks: Check[]): string {
  const widths = [Math.max(5, ...checks.map((c) => c.name.length)), Math.max(8, ...checks.map((c) => c.measured.length)), Math.max(5, ...checks.map((c) => c.bound.length))];
  const row = (cells: string[]) => `| ${cells.map((cell, i) => cell.padEnd(widths[i] ?? 4)).join(' | ')} |`;
  return [
    row(['check', 'measured', 'bound', 'result']),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|--------|`,
    ...checks.map((c) => row([c.name, c.measured, c.bound, c.pass ? 'PASS' : 'FAIL'])),
  ].join('\n');
}
