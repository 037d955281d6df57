/**
 * What a chaos run reports: the faults as they went, the measurements, and every check against its
 * bound, with the bounds themselves and the table printed at the end of a run.
 */
import type { Summary } from '@chat/loadgen/summary';
import type { ChaosOptions, PhaseName } from './options.ts';
import type { ProbeReport } from './probe.ts';
import type { DatabaseReport } from './verify.ts';

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

/** The longest a private Redis Cluster may take to promote a replica, or to take the old master back. */
export const FAILOVER_TIMEOUT_MS = 30_000;
/** Typing entries expire after TYPING_TTL_MS (the nodes' default). */
export const TYPING_TTL_MS = 6000;
/** The nodes' SHUTDOWN_TIMEOUT_MS: a SIGTERM drain must end within it. */
export const SHUTDOWN_TIMEOUT_MS = 10_000;

/** How soon after a Redis restart or failover presence must be the live sockets again: the reconnect bound, at least the presence bound. */
export function reregisterBoundMs(options: ChaosOptions): number {
  return Math.max(presenceBoundMs(options), options.reconnectBoundMs);
}

/** The presence bound: the node TTL, one reaping interval (TTL / 4), and 2 s of scheduling slack. */
export function presenceBoundMs(options: ChaosOptions): number {
  return options.presenceTtlMs + Math.floor(options.presenceTtlMs / 4) + 2000;
}

/** A presence mismatch as measured: how far off, or -1 when a node or Redis did not answer. */
export function offText(off: number): string {
  return off === -1 ? 'no answer from a node or Redis' : `≠ live sockets by ${off}`;
}

/** A presence or key count polled until it was zero: after how long, or null with the last value. */
export type Settled = { ms: number | null; last: number };

/** What the run measured besides the load summary and the report's own fields. */
export interface Measured {
  /** Users still online after the run. */
  ghosts: Settled;
  /** Presence against the live sockets after the `kill` fault. */
  ghostAfterKill: Settled | null;
  /** The same after the Redis restart or failover, which `label` names. */
  ghostAfterRedis: (Settled & { label: string }) | null;
  /** Conversations still showing typing after the run. */
  typing: Settled;
  presenceBound: number;
  typingBound: number;
  /** The `drain` fault: the node's exit code and how long its SIGTERM drain took. */
  drainExit: { code: number | null; ms: number } | null;
}

/** Every check of the run, each measured against its bound. */
export function buildChecks(options: ChaosOptions, report: ChaosReport, load: Summary, measured: Measured): Check[] {
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
