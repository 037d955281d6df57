/**
 * One chaos run: private PostgreSQL and Redis, 3 nodes behind nginx (infra/cluster), the load
 * generator's SDK clients sending continuously (apps/loadgen), and the faults in turn inside its load
 * phase. Afterwards every check is measured against its bound. Everything started here is stopped in
 * a `finally`, and by the launchers' exit hooks if the process dies first.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism, cpus } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, startCluster, type Cluster } from '../../../infra/cluster/cluster.ts';
import { startPrivatePostgres, startPrivateRedis, type PrivatePostgres, type PrivateRedis } from '../../../infra/cluster/services.ts';
import { adminQuery } from '../../server/src/db/admin.ts';
import { applyMigrations } from '../../server/src/db/migrations.ts';
import { runLoadtest, type Io } from '../../loadgen/src/coordinator.ts';
import { resolveOptions } from '../../loadgen/src/options.ts';
import type { Summary } from '../../loadgen/src/summary.ts';
import { tokenMinter } from '../../loadgen/src/tokens.ts';
import type { ChaosOptions, PhaseName } from './options.ts';
import { OutageProbe, type ProbeReport } from './probe.ts';
import { checkDatabase, countKeys, hashLength, heapAfterGc, timeUntilZero, type DatabaseReport } from './verify.ts';

export interface Check {
  name: string;
  measured: string;
  bound: string;
  pass: boolean;
}

export interface PhaseRecord {
  name: PhaseName;
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
  load: Summary | null;
  failure: string | null;
}

const KEY_PREFIX = 'chaos:';
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
    load: null,
    failure: null,
  };

  let postgres: PrivatePostgres | undefined;
  let redis: PrivateRedis | undefined;
  let cluster: Cluster | undefined;
  let probe: OutageProbe | undefined;
  try {
    io.log('chaos: starting a private PostgreSQL and Redis');
    [postgres, redis] = await Promise.all([startPrivatePostgres(), startPrivateRedis()]);
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
        REDIS_URL: redis.url,
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
      duration: `${Math.ceil((options.phases.length + 2) * (options.settleMs + options.downMs + 60_000) / 1000)}s`,
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
    const phase = async (name: PhaseName, run: () => Promise<{ detail: string; ok: boolean }>) => {
      const at = atS();
      const started = performance.now();
      io.log(`chaos: [${at} s] ${name}…`);
      const { detail, ok } = await run();
      phases.push({ name, atS: at, tookMs: Math.round(performance.now() - started), detail, ok });
      io.log(`chaos: [${atS()} s] ${name}: ${detail}`);
    };
    const c = cluster;
    const pgInstance = postgres;
    const redisInstance = redis;
    const outageProbe = probe;
    let ghostAfterKill: { ms: number | null; last: number } | null = null;
    let drainExit: { code: number | null; ms: number } | null = null;
    const faults: Record<PhaseName, () => Promise<{ detail: string; ok: boolean }>> = {
      kill: async () => {
        const exit = await c.killNode(0, 'SIGKILL');
        await sleep(options.downMs);
        await c.restartNode(0);
        restarted.add(0);
        // No ghosts: once the presence bound has passed, the restarted node's presence entries are
        // exactly its live sockets (the killed process's connections reaped, not adopted).
        const ghosts = await timeUntilZero(async () => Math.abs((await hashLength(redisInstance.url, `${KEY_PREFIX}presence:node:${nodes[0]!.id}`)) - (await connectedSockets(nodes[0]!.url))), presenceBoundMs(options));
        ghostAfterKill = ghosts;
        if (ghosts.ms === null) {
          // What a reader needs to tell a ghost (an entry with no socket) from a missing entry.
          const entries = await hashLength(redisInstance.url, `${KEY_PREFIX}presence:node:${nodes[0]!.id}`);
          io.log(`presence check failed: ${entries} entries under ${nodes[0]!.id}, ${await connectedSockets(nodes[0]!.url)} live sockets; its last lines:\n${c.logs(0).slice(-20).join('\n')}`);
        }
        return { detail: `${nodes[0]!.id} ${exit.signal ?? exit.code}, restarted after ${options.downMs} ms; presence entries = live sockets ${ghosts.ms === null ? `NOT within the bound (off by ${ghosts.last})` : `after ${ghosts.ms} ms`}`, ok: exit.signal === 'SIGKILL' };
      },
      redis: async () => {
        await redisInstance.stop();
        await redisInstance.start();
        return { detail: 'stopped and started again (every key gone)', ok: true };
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
    const ghosts = await timeUntilZero(() => countKeys(redis!.url, `${KEY_PREFIX}presence:conns:*`), presenceBound);
    const typingBound = TYPING_TTL_MS + 2000;
    const typing = await timeUntilZero(() => countKeys(redis!.url, `${KEY_PREFIX}typing:*`), typingBound);
    const heapAfter = await Promise.all(inspectors.map((port) => heapAfterGc(port)));
    report.heap = nodes.map((node, i) => ({ node: node.id, beforeMiB: mib(heapBefore[i]!), afterMiB: mib(heapAfter[i]!), restarted: restarted.has(i) }));

    report.database = await checkDatabase(databaseUrl, [...result.acked, ...(report.probe?.acked ?? [])]);
    report.checks = buildChecks(options, report, result.summary, { ghosts, ghostAfterKill, typing, presenceBound, typingBound, drainExit });
    report.ok = report.checks.every((check) => check.pass);
  } catch (error) {
    report.failure = error instanceof Error ? (error.stack ?? error.message) : String(error);
    report.ok = false;
    if (cluster) for (const i of [0, 1, 2]) io.log(`--- last lines of node ${i + 1}:\n${cluster.logs(i).slice(-15).join('\n')}`);
  } finally {
    probe?.close();
    await cluster?.stop().catch(() => {});
    await redis?.destroy().catch(() => {});
    await postgres?.destroy().catch(() => {});
  }
  return report;
}

/** The presence bound: the node TTL, one reaping interval (TTL / 4), and 2 s of scheduling slack. */
function presenceBoundMs(options: ChaosOptions): number {
  return options.presenceTtlMs + Math.floor(options.presenceTtlMs / 4) + 2000;
}

async function connectedSockets(nodeUrl: string): Promise<number> {
  const text = await fetch(`${nodeUrl}/metrics`, { signal: AbortSignal.timeout(2000) }).then((response) => response.text());
  const match = /^chat_connected_sockets(?:\{[^}]*\})? ([0-9.e+]+)$/m.exec(text);
  if (!match) throw new Error(`${nodeUrl}/metrics has no chat_connected_sockets`);
  return Number(match[1]);
}


interface Measured {
  ghosts: { ms: number | null; last: number };
  ghostAfterKill: { ms: number | null; last: number } | null;
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

  add('faults carried out', report.phases.map((p) => `${p.name}${p.ok ? '' : ' FAILED'}`).join(', ') || 'none', options.phases.join(', '), report.phases.length === options.phases.length && report.phases.every((p) => p.ok));
  add('load ran and was checked', `${m.sent} sent, ${m.acked} acked (${m.ackedRate}/s), ${load.run.plan.direct} direct + ${load.run.plan.group} group conversations, ${c.connected}/${c.devices} devices`, 'acked > 0, every device connected', load.verdict.exitCode !== 3 && m.acked > 0 && c.failed === 0);
  add('acked messages in PostgreSQL exactly once', `${db.acked} acked: ${db.missing} missing, ${db.mismatched} at another seq, ${db.duplicateRows} stored twice`, '0, 0, 0', db.acked > 0 && db.missing === 0 && db.mismatched === 0 && db.duplicateRows === 0);
  add('gap-free seqs per conversation', `${db.conversations - db.gappy}/${db.conversations} conversations are 1..last_seq, each once`, 'all', db.gappy === 0 && db.conversations > 0);
  add('every device got every message exactly once', `${m.expected} device×message pairs: ${m.lost} lost, ${m.duplicates} duplicated`, '0, 0', m.expected > 0 && m.lost === 0 && m.duplicates === 0);
  // The SDK reports a conversation's messages in seq order: live fan-outs of two
  // nodes that cross, and holes it fetched, included.
  add('in seq order, resyncs included', `${m.outOfOrder} of ${m.deliveries} deliveries out of order (${m.outOfOrderResync} while resyncing)`, '0', m.outOfOrder === 0);
  add('SDK sends all acked in the end', `${m.failed} failed, ${m.unackedAtEnd} unacked, ${m.retries} retries (${load.errors.nacks['unavailable'] ?? 0} unavailable answers)`, '0 failed, 0 unacked', m.failed === 0 && m.unackedAtEnd === 0);

  const probe = report.probe;
  if (options.phases.includes('postgres')) {
    if (probe === null) add('PostgreSQL down: prompt unavailable', 'no probe ran', '', false);
    else {
      const other = Object.entries(probe.otherErrors).map(([code, n]) => `${code} ${n}`).join(', ') || 'none other';
      add('PostgreSQL down: prompt unavailable', `${probe.unavailable}/${probe.sent} unavailable (${other}), ${probe.ok} ok; p50 ${probe.p50Ms} ms, max ${probe.maxMs} ms`, `all unavailable, max ≤ ${options.unavailableBoundMs} ms`, probe.sent > 0 && probe.unavailable === probe.sent && probe.maxMs <= options.unavailableBoundMs);
      add('PostgreSQL back: refused sends retried ok', `${probe.retriedAcked}/${probe.retried} acked with the same clientMsgId`, 'all', probe.retried > 0 && probe.retriedAcked === probe.retried);
    }
  }
  const rejoin = c.rejoinMs;
  const recovery = c.recoveryMs;
  const ms = (value: number | undefined) => `${Math.round(value ?? 0)} ms`;
  add('every client reconnected', `${rejoin?.count ?? 0}/${c.unplannedDisconnects} unplanned disconnects reconnected, p50 ${ms(rejoin?.p50)}, max ${ms(rejoin?.max)}`, `all, each ≤ ${options.reconnectBoundMs} ms`, c.unrecovered === 0 && (rejoin?.max ?? 0) <= options.reconnectBoundMs);
  add('…and resynced by itself', `${c.recoveries}/${c.unplannedDisconnects} resynced, p50 ${ms(recovery?.p50)}, max ${ms(recovery?.max)}; ${c.unrecovered} not resynced at the end`, 'all (time reported: it grows with load)', c.unrecovered === 0);
  if (measured.ghostAfterKill) {
    const g = measured.ghostAfterKill;
    add('no ghost presence after SIGKILL + restart', g.ms === null ? `entries ≠ live sockets by ${g.last}` : `entries = live sockets after ${g.ms} ms`, `≤ ${measured.presenceBound} ms`, g.ms !== null);
  }
  const g = measured.ghosts;
  add('no ghost presence after the run', g.ms === null ? `${g.last} users still online` : `nobody online ${g.ms} ms after the last client closed`, `≤ ${measured.presenceBound} ms`, g.ms !== null);
  const t = measured.typing;
  add('typing state cleared', t.ms === null ? `${t.last} conversations still show typing` : `no typing entry left after ${t.ms} ms`, `≤ ${measured.typingBound} ms`, t.ms !== null);
  if (measured.drainExit) add('SIGTERM drains gracefully', `exit code ${measured.drainExit.code} after ${measured.drainExit.ms} ms`, `code 0, ≤ ${SHUTDOWN_TIMEOUT_MS} ms`, measured.drainExit.code === 0 && measured.drainExit.ms <= SHUTDOWN_TIMEOUT_MS + 1000);
  for (const heap of report.heap) {
    const grown = heap.beforeMiB === null || heap.afterMiB === null ? null : Math.round((heap.afterMiB - heap.beforeMiB) * 10) / 10;
    add(`heap of ${heap.node}${heap.restarted ? ' (restarted)' : ''}`, grown === null ? 'no /metrics answer' : `${heap.beforeMiB} → ${heap.afterMiB} MiB (${grown >= 0 ? '+' : ''}${grown})`, `growth ≤ ${options.heapBoundMiB} MiB`, grown !== null && grown <= options.heapBoundMiB);
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
