import { availableParallelism } from 'node:os';
import type { AuditResult } from './accounting.ts';
import type { Options } from './options.ts';
import type { Plan } from './plan.ts';
import type { Counters, ErrorCounts, HistogramName, Latency, LatencySummary } from './stats.ts';
import type { Results } from './wire.ts';

export type Phase = 'connect' | 'create' | 'load' | 'drain' | 'grace' | 'close';

export interface PhaseSpan {
  name: Phase;
  startS: number;
  endS: number;
}

interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
}

/** One second of the run: counter deltas over `dt` seconds, gauges at its end, percentiles of that second. */
export type Point = Counters & {
  /** Seconds since the start of the run. */
  t: number;
  dt: number;
  phase: Phase;
  connected: number;
  devices: number;
  /** Operations that failed for good (connect, send, create, typing, presence, read, …). */
  errors: number;
  /** Failed acks seen on the wire, retried ones included. */
  nacks: number;
  errorsByCode: ErrorCounts;
  ack: Percentiles | null;
  e2e: Percentiles | null;
  /** % of one core, per thread. */
  cpu: { coordinator: number | null; workers: Array<number | null> };
  elu: { coordinator: number | null; workers: Array<number | null> };
  lagMs: number;
};

export interface WorkerCpu {
  worker: number;
  cpuUs: number;
  wallMs: number;
  eluWeighted: number;
  eluMax: number;
  busySeconds: number;
  maxLagMs: number;
}

export interface ThreadCpuSummary {
  /** Mean CPU over the run, % of one core. */
  cpuPct: number;
  eluMean: number;
  eluMax: number;
}

export interface Summary {
  tool: 'chat-loadgen';
  version: 1;
  run: {
    id: string;
    url: string;
    startedAt: string;
    wallSeconds: number;
    seed: number;
    workers: number;
    options: Record<string, unknown>;
    plan: { users: number; devices: number; conversations: number; created: number; direct: number; group: number; members: number };
  };
  verdict: { ok: boolean; exitCode: number; reasons: string[] };
  warnings: string[];
  connections: {
    devices: number;
    connected: number;
    failed: number;
    connectMs: LatencySummary | null;
    churnDisconnects: number;
    reconnects: number;
    reconnectMs: LatencySummary | null;
    unplannedDisconnects: number;
    /** Unplanned disconnects the SDK recovered from by itself (reconnected and resynced), and how long that took. */
    recoveries: number;
    /** Unplanned disconnect to connected again (before the resync). */
    rejoinMs: LatencySummary | null;
    recoveryMs: LatencySummary | null;
    /** Devices still not resynced after their last unplanned disconnect when the load had drained. */
    unrecovered: number;
  };
  messages: {
    targetRate: number;
    /** Over the load phase, per second. */
    sentRate: number;
    ackedRate: number;
    deliveryRate: number;
    sent: number;
    acked: number;
    failed: number;
    unackedAtEnd: number;
    retries: number;
    ackMs: LatencySummary | null;
    e2eMs: LatencySummary | null;
    resyncMs: LatencySummary | null;
    deliveries: number;
    resyncDeliveries: number;
    /** Device × message pairs expected (every device of every member, every acked seq) and received. */
    expected: number;
    received: number;
    lost: number;
    duplicates: number;
    outOfOrder: number;
    /** Of those, deliveries that came out of order while their device was resyncing. */
    outOfOrderResync: number;
    incompleteWindows: number;
    graceWaitedMs: number | null;
    lostSamples: AuditResult['samples'];
    duplicateSamples: Results['audit']['duplicateSamples'];
    lateSamples: Results['audit']['lateSamples'];
    untracked: number;
  };
  receipts: { readMarks: number; receiptsSeen: number; statusDelivered: number; statusRead: number };
  typing: { bursts: number; seen: number };
  presence: { sets: number; seen: number };
  errors: { total: number; byCode: Record<string, number>; byOperation: ErrorCounts; nacks: Record<string, number> };
  cpu: { cores: number; processCpuPct: number; coordinator: ThreadCpuSummary; workers: Array<ThreadCpuSummary & { worker: number; busySeconds: number; maxLagMs: number }> };
  phases: PhaseSpan[];
  timeline: Point[];
}

export interface SummaryInput {
  options: Options;
  plan: Plan;
  startedAt: Date;
  wallS: number;
  counters: Counters;
  errors: ErrorCounts;
  histograms: Record<HistogramName, Latency>;
  timeline: Point[];
  phases: PhaseSpan[];
  created: number;
  load: Array<Results['load']>;
  audit: Results['audit'] | null;
  warnings: string[];
  failure: string | null;
  cpu: { coordinator: WorkerCpu; workers: WorkerCpu[]; processCpuUs: number };
}

const sumErrorsOf = (errors: ErrorCounts, operation: string) => Object.entries(errors).reduce((sum, [key, count]) => sum + (key.startsWith(`${operation}/`) ? count : 0), 0);
const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

function threadCpu(cpu: WorkerCpu): ThreadCpuSummary {
  return {
    cpuPct: cpu.wallMs > 0 ? round((cpu.cpuUs / 1000 / cpu.wallMs) * 100) : 0,
    eluMean: cpu.wallMs > 0 ? round(cpu.eluWeighted / cpu.wallMs, 2) : 0,
    eluMax: round(cpu.eluMax, 2),
  };
}

export function buildSummary(input: SummaryInput): Summary {
  const { options, plan, counters, errors, audit } = input;
  // Every send happens in the load phase; its acks and deliveries trail it by a latency at most.
  const loadSpan = input.phases.find((span) => span.name === 'load');
  const loadSeconds = audit === null ? 0 : loadSpan && loadSpan.endS > loadSpan.startS ? loadSpan.endS - loadSpan.startS : options.durationMs / 1000;
  const perSecond = (count: number) => (loadSeconds > 0 ? round(count / loadSeconds) : 0);

  const byCode: Record<string, number> = {};
  const nacks: Record<string, number> = {};
  for (const [key, count] of Object.entries(errors)) {
    const [operation = '', code = ''] = key.split('/');
    const into = operation === 'ack' ? nacks : byCode;
    into[code] = (into[code] ?? 0) + count;
  }
  const errorTotal = Object.values(byCode).reduce((sum, count) => sum + count, 0);

  const warnings = [...input.warnings];
  const connected = counters.connects;
  const connectFailures = plan.devices - connected;
  if (connectFailures > 0) warnings.push(`${connectFailures} of ${plan.devices} devices never connected; they are left out of the delivery accounting`);
  if (input.created < plan.conversations.length) warnings.push(`${plan.conversations.length - input.created} of ${plan.conversations.length} conversations could not be created`);
  const unacked = input.load.reduce((sum, result) => sum + result.unacked, 0);
  if (unacked > 0) warnings.push(`${unacked} sends were still unacked when the drain deadline passed`);
  const sentRate = perSecond(counters.sent);
  if (options.rate > 0 && loadSeconds > 0 && sentRate < options.rate * 0.9)
    warnings.push(`sent ${sentRate} msgs/s of the ${round(options.rate)} asked for: the generator could not keep up, or too few devices were connected`);
  if (counters.sendRetries > 0) warnings.push(`${counters.sendRetries} message sends were retried by the SDK (ack timeouts, disconnects or rate_limited): ack latencies include the retries`);
  if (counters.unplannedDisconnects > 0) warnings.push(`${counters.unplannedDisconnects} disconnects the load generator did not cause`);
  for (const worker of input.cpu.workers) {
    if (worker.busySeconds >= 1) warnings.push(`worker ${worker.worker} was more than 80% busy for ${round(worker.busySeconds)} s: latencies measured then include the generator's own queueing`);
  }

  const background = sumErrorsOf(errors, 'sdk');
  if (background > 0)
    warnings.push(
      `${background} background SDK failures (a refused reconnect, or a resync or gap fetch that failed or timed out; the SDK retries a failed resync while the connection lasts and fetches gaps again)`,
    );
  if (audit !== null && audit.lost > 0) {
    const p99 = input.histograms.e2e.summary()?.p99 ?? 0;
    const stillArriving = input.timeline.filter((point) => point.phase === 'grace').some((point) => point.deliveries > 0);
    if (p99 > options.graceMs || stillArriving) {
      warnings.push(
        `deliveries were still arriving late (end-to-end p99 ${round(p99 / 1000)} s, grace ${options.graceMs / 1000} s${stillArriving ? ', deliveries during the grace period' : ''}): the server is overloaded and some of the lost may only be late; a longer --grace tells the two apart`,
      );
    }
  }

  const reasons: string[] = [];
  let exitCode = 0;
  if (input.failure !== null || audit === null) {
    exitCode = 3;
    reasons.push(input.failure ?? 'the run ended before the delivery audit');
  } else if (audit.lost > 0 || audit.duplicates > 0) {
    exitCode = 1;
    if (audit.lost > 0) reasons.push(`${audit.lost} deliveries lost (device × message pairs never received, over ${audit.incomplete} device × conversation windows)`);
    if (audit.duplicates > 0) reasons.push(`${audit.duplicates} duplicate deliveries (the same message reported as new twice at one device)`);
  } else if (options.rate > 0 && counters.acked === 0) {
    exitCode = 3;
    reasons.push('no message was acked, so nothing was checked');
  }

  const { jwtSecret, ...shown } = options;
  return {
    tool: 'chat-loadgen',
    version: 1,
    run: {
      id: options.runId,
      url: options.url,
      startedAt: input.startedAt.toISOString(),
      wallSeconds: round(input.wallS),
      seed: options.seed,
      workers: options.workers,
      options: { ...shown, jwtSecret: jwtSecret === null ? null : '(set)' },
      plan: {
        users: plan.users.length,
        devices: plan.devices,
        conversations: plan.conversations.length,
        created: input.created,
        direct: plan.conversations.filter((conversation) => conversation.kind === 'direct').length,
        group: plan.conversations.filter((conversation) => conversation.kind === 'group').length,
        members: plan.conversations.reduce((sum, conversation) => sum + conversation.members.length, 0),
      },
    },
    verdict: { ok: exitCode === 0, exitCode, reasons },
    warnings,
    connections: {
      devices: plan.devices,
      connected,
      failed: connectFailures,
      connectMs: input.histograms.connect.summary(),
      churnDisconnects: counters.churnDisconnects,
      reconnects: counters.reconnects,
      reconnectMs: input.histograms.reconnect.summary(),
      unplannedDisconnects: counters.unplannedDisconnects,
      recoveries: counters.recoveries,
      rejoinMs: input.histograms.rejoin.summary(),
      recoveryMs: input.histograms.recovery.summary(),
      unrecovered: input.load.reduce((sum, result) => sum + result.unrecovered, 0),
    },
    messages: {
      targetRate: round(options.rate),
      sentRate,
      ackedRate: perSecond(counters.acked),
      deliveryRate: perSecond(counters.deliveries),
      sent: counters.sent,
      acked: counters.acked,
      failed: counters.sendFailed,
      unackedAtEnd: unacked,
      retries: counters.sendRetries,
      ackMs: input.histograms.ack.summary(),
      e2eMs: input.histograms.e2e.summary(),
      resyncMs: input.histograms.resync.summary(),
      deliveries: counters.deliveries,
      resyncDeliveries: counters.resyncDeliveries,
      expected: audit?.expected ?? 0,
      received: audit?.received ?? 0,
      lost: audit?.lost ?? 0,
      duplicates: Math.max(audit?.duplicates ?? 0, counters.duplicates),
      outOfOrder: audit?.outOfOrder ?? counters.lateDeliveries,
      outOfOrderResync: counters.lateResyncDeliveries,
      incompleteWindows: audit?.incomplete ?? 0,
      graceWaitedMs: audit?.waitedMs ?? null,
      lostSamples: audit?.samples ?? [],
      duplicateSamples: audit?.duplicateSamples ?? [],
      lateSamples: audit?.lateSamples ?? [],
      untracked: counters.untracked,
    },
    receipts: { readMarks: counters.readMarks, receiptsSeen: counters.receiptsSeen, statusDelivered: counters.statusDelivered, statusRead: counters.statusRead },
    typing: { bursts: counters.typingBursts, seen: counters.typingSeen },
    presence: { sets: counters.presenceSets, seen: counters.presenceSeen },
    errors: { total: errorTotal, byCode, byOperation: errors, nacks },
    cpu: {
      cores: availableParallelism(),
      processCpuPct: input.wallS > 0 ? round((input.cpu.processCpuUs / 1000 / (input.wallS * 1000)) * 100) : 0,
      coordinator: threadCpu(input.cpu.coordinator),
      workers: input.cpu.workers.map((worker) => ({ worker: worker.worker, ...threadCpu(worker), busySeconds: round(worker.busySeconds), maxLagMs: worker.maxLagMs })),
    },
    phases: input.phases.map((span) => ({ name: span.name, startS: round(span.startS), endS: round(span.endS) })),
    timeline: input.timeline,
  };
}

const ms = (summary: LatencySummary | null) => (summary === null ? 'none' : `p50 ${summary.p50} ms  p95 ${summary.p95} ms  p99 ${summary.p99} ms  max ${summary.max} ms  (n=${summary.count})`);
const codes = (counts: Record<string, number>) => {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  return entries.length === 0 ? 'none' : entries.map(([code, count]) => `${code} ${count}`).join(', ');
};

/** The summary as a person reads it at the end of a run. */
export function formatSummary(summary: Summary, files: { json: string; html: string } | null): string {
  const { run, connections: c, messages: m, cpu } = summary;
  const lines = [
    '',
    `loadgen ${run.id} → ${run.url}  (${run.plan.devices} devices, ${run.plan.users} users, ${run.plan.created}/${run.plan.conversations} conversations: ${run.plan.direct} direct, ${run.plan.group} groups; ${run.workers} workers; seed ${run.seed}; ${run.wallSeconds} s)`,
    `  connections   ${c.connected}/${c.devices} connected, connect ${ms(c.connectMs)}`,
    `  churn         ${c.churnDisconnects} planned disconnects, ${c.reconnects} reconnects (${ms(c.reconnectMs)}), ${c.unplannedDisconnects} unplanned`,
    ...(c.unplannedDisconnects > 0
      ? [
          `  recovered     ${c.recoveries} of ${c.unplannedDisconnects} unplanned disconnects by the SDK alone: reconnected ${ms(c.rejoinMs)}; resynced ${ms(c.recoveryMs)}, ${c.unrecovered} devices not resynced at the end`,
        ]
      : []),
    `  messages      sent ${m.sent} (${m.sentRate}/s of ${m.targetRate}/s), acked ${m.acked} (${m.ackedRate}/s), failed ${m.failed}, unacked at end ${m.unackedAtEnd}, retries ${m.retries}`,
    `  ack latency   ${ms(m.ackMs)}`,
    `  end-to-end    ${ms(m.e2eMs)}  [${m.deliveries - m.resyncDeliveries} live deliveries, ${m.deliveryRate}/s]`,
    `  via resync    ${ms(m.resyncMs)}`,
    `  delivery      expected ${m.expected}, received ${m.received}, LOST ${m.lost}, DUPLICATES ${m.duplicates}, out of order ${m.outOfOrder}${m.graceWaitedMs !== null ? ` (grace used ${m.graceWaitedMs} ms)` : ''}`,
    `  receipts      ${summary.receipts.readMarks} read marks sent, ${summary.receipts.receiptsSeen} receipt updates seen, own messages → delivered ${summary.receipts.statusDelivered}, read ${summary.receipts.statusRead}`,
    `  typing        ${summary.typing.bursts} bursts, ${summary.typing.seen} indicators seen;  presence ${summary.presence.sets} changes, ${summary.presence.seen} updates seen`,
    `  errors        ${summary.errors.total}: ${codes(summary.errors.byCode)};  failed acks on the wire: ${codes(summary.errors.nacks)}`,
    `  loadgen cpu   process ${cpu.processCpuPct}% of one core; coordinator ${cpu.coordinator.cpuPct}% (elu ${cpu.coordinator.eluMean}); ${cpu.workers.map((w) => `worker ${w.worker} ${w.cpuPct}% (elu mean ${w.eluMean}, max ${w.eluMax}, max lag ${w.maxLagMs} ms)`).join('; ')}`,
  ];
  for (const sample of m.lostSamples.slice(0, 5)) lines.push(`  lost e.g.     ${sample.device} in ${sample.conversationId}: ${sample.lost} missing, seqs ${sample.missing.join(', ')}`);
  for (const sample of m.duplicateSamples.slice(0, 5)) lines.push(`  duplicate e.g. ${sample.device} in ${sample.conversationId}: seq ${sample.seq}`);
  for (const sample of m.lateSamples.slice(0, 3))
    lines.push(`  late e.g.     ${sample.device} in ${sample.conversationId}: seq ${sample.seq} after ${sample.after}${sample.resync ? ' (during resync)' : ''}`);
  for (const warning of summary.warnings) lines.push(`  warning       ${warning}`);
  if (files) lines.push(`  report        ${files.json}  ${files.html}`);
  lines.push(
    summary.verdict.ok ? '  verdict       OK: every acked message reached every device exactly once' : `  verdict       FAIL (exit ${summary.verdict.exitCode}): ${summary.verdict.reasons.join('; ')}`,
  );
  return lines.join('\n');
}
