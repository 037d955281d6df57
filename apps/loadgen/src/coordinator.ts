/**
 * The coordinator (main thread): plans the run, starts the workers, walks them through the phases
 * (connect → create → load → drain → grace/audit → close) with synchronized start times, and merges
 * their counters and histograms once a second into the live progress line and the timeline.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { mergeAudits } from './accounting.ts';
import { clock } from './body.ts';
import type { Options } from './options.ts';
import { buildPlan } from './plan.ts';
import { buildSummary, type Phase, type PhaseSpan, type Point, type Summary, type WorkerCpu } from './summary.ts';
import { addCounters, addErrors, CpuMeter, HISTOGRAMS, Latency, sumErrors, zeroCounters, type CpuSample, type HistogramName, type Snapshot } from './stats.ts';
import type { Command, CreateTask, Registration, Reply, Request, Results, WorkerInit } from './wire.ts';

export interface Io {
  /** A line for the person watching (progress, warnings). */
  log(line: string): void;
  /** The live progress line; overwritten in place on a terminal. */
  progress(line: string): void;
}

export class RunError extends Error {
  override name = 'RunError';
}

const BUSY_ELU = 0.8;

class WorkerHandle {
  readonly index: number;
  readonly thread: Worker;
  readonly #pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  #next = 0;
  #failure: Error | null = null;

  constructor(index: number, init: WorkerInit, onFailure: (error: Error) => void) {
    this.index = index;
    this.thread = new Worker(new URL('./worker.ts', import.meta.url), { workerData: init });
    this.thread.on('message', (reply: Reply) => {
      const pending = this.#pending.get(reply.id);
      if (!pending) return;
      this.#pending.delete(reply.id);
      if (reply.ok) pending.resolve(reply.result);
      else pending.reject(new RunError(`worker ${index}: ${reply.error}`));
    });
    const fail = (error: Error) => {
      if (this.#failure) return;
      this.#failure = error;
      for (const pending of this.#pending.values()) pending.reject(error);
      this.#pending.clear();
      onFailure(error);
    };
    this.thread.on('error', (error) => fail(new RunError(`worker ${index} crashed: ${error.stack ?? error.message}`)));
    this.thread.on('exit', (code) => fail(new RunError(`worker ${index} exited with code ${code}`)));
  }

  call<C extends Command['cmd']>(command: Extract<Command, { cmd: C }>): Promise<Results[C]> {
    if (this.#failure) return Promise.reject(this.#failure);
    const id = ++this.#next;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.thread.postMessage({ ...command, id } satisfies Request);
    });
  }

  async stop(): Promise<void> {
    this.#failure ??= new RunError(`worker ${this.index} stopped`);
    await this.thread.terminate();
  }
}

/** Everything merged from the workers so far. */
class Aggregate {
  readonly counters = zeroCounters();
  readonly errors: Record<string, number> = {};
  readonly totals = Object.fromEntries(HISTOGRAMS.map((name) => [name, new Latency()])) as Record<HistogramName, Latency>;
  readonly gauges = new Map<number, Snapshot['gauges']>();
  readonly workerCpu: WorkerCpu[];
  // The point being filled: snapshots that arrive late simply land in the next one.
  open = this.#fresh();

  constructor(workers: number) {
    this.workerCpu = Array.from({ length: workers }, (_, worker) => ({ worker, cpuUs: 0, wallMs: 0, eluWeighted: 0, eluMax: 0, busySeconds: 0, maxLagMs: 0 }));
  }

  #fresh() {
    return {
      counters: zeroCounters(),
      errors: {} as Record<string, number>,
      ack: new Latency(),
      e2e: new Latency(),
      cpu: new Map<number, CpuSample>(),
      lagMs: 0,
    };
  }

  merge(snapshot: Snapshot): void {
    addCounters(this.counters, snapshot.counters);
    addCounters(this.open.counters, snapshot.counters);
    addErrors(this.errors, snapshot.errors);
    addErrors(this.open.errors, snapshot.errors);
    for (const name of HISTOGRAMS) {
      const encoded = snapshot.histograms[name];
      if (encoded === undefined) continue;
      const histogram = Latency.decode(encoded);
      this.totals[name].add(histogram);
      if (name === 'ack') this.open.ack.add(histogram);
      if (name === 'e2e') this.open.e2e.add(histogram);
    }
    this.gauges.set(snapshot.worker, snapshot.gauges);
    this.open.cpu.set(snapshot.worker, snapshot.cpu);
    this.open.lagMs = Math.max(this.open.lagMs, snapshot.gauges.lagMs);
    const cpu = this.workerCpu[snapshot.worker]!;
    cpu.cpuUs += snapshot.cpu.userUs + snapshot.cpu.systemUs;
    cpu.wallMs += snapshot.cpu.wallMs;
    cpu.eluWeighted += snapshot.cpu.elu * snapshot.cpu.wallMs;
    cpu.eluMax = Math.max(cpu.eluMax, snapshot.cpu.elu);
    cpu.maxLagMs = Math.max(cpu.maxLagMs, snapshot.gauges.lagMs);
    if (snapshot.cpu.elu > BUSY_ELU) cpu.busySeconds += snapshot.cpu.wallMs / 1000;
  }

  take() {
    const point = this.open;
    this.open = this.#fresh();
    return point;
  }
}

export interface RunResult {
  summary: Summary;
  exitCode: number;
  /** [conversationId, seq, messageId] of every acked message; empty unless `options.recordAcked`. */
  acked: Array<[string, number, string]>;
}

export interface RunHooks {
  /**
   * Runs alongside the load phase, from its first send (the chaos harness breaks things here). The
   * load phase then ends when it settles, `durationMs` being only the longest it may last; a rejection
   * fails the run after the drain.
   */
  duringLoad?: () => Promise<void>;
}

export async function runLoadtest(options: Options, io: Io, hooks: RunHooks = {}): Promise<RunResult> {
  const plan = buildPlan(options);
  const startedAt = new Date();
  const t0 = clock();
  const seconds = () => (clock() - t0) / 1000;
  const aggregate = new Aggregate(options.workers);
  const timeline: Point[] = [];
  const phases: PhaseSpan[] = [];
  const warnings = new Set<string>();
  const coordinatorMeter = new CpuMeter();
  const coordinatorCpu: WorkerCpu = { worker: -1, cpuUs: 0, wallMs: 0, eluWeighted: 0, eluMax: 0, busySeconds: 0, maxLagMs: 0 };
  const processCpuStart = process.cpuUsage();
  let phase: Phase = 'connect';
  let crashed: Error | null = null;

  // Each kind of warning is printed once, when first seen.
  const warned = new Set<string>();
  const warn = (key: string, message: string) => {
    if (warned.has(key)) return;
    warned.add(key);
    warnings.add(message);
    io.log(`WARNING: ${message}`);
  };

  const workers = Array.from({ length: options.workers }, (_, index) => {
    const init: WorkerInit = { options, worker: index, users: plan.users.filter((user) => user.worker === index) };
    return new WorkerHandle(index, init, (error) => {
      crashed ??= error;
    });
  });

  const enter = (next: Phase) => {
    const now = seconds();
    phases.at(-1)!.endS = now;
    phases.push({ name: next, startS: now, endS: now });
    phase = next;
  };
  phases.push({ name: 'connect', startS: 0, endS: 0 });

  // Once a second the coordinator asks every worker for its deltas (a round), and closes the point
  // that holds the answers to the previous round: so a point is labelled with the moment its deltas
  // were taken, not the moment they arrived.
  let round: { at: number; previousAt: number; phase: Phase } = { at: t0, previousAt: t0, phase };
  const requestTicks = (final = false): Promise<unknown> => {
    // The final round follows a ticker round that was never closed: its point spans both.
    round = { at: clock(), previousAt: final ? round.previousAt : round.at, phase };
    return Promise.all(
      workers.map((worker) =>
        worker.call({ cmd: 'tick' }).then(
          (snapshot) => aggregate.merge(snapshot),
          () => {},
        ),
      ),
    );
  };
  const closePoint = () => {
    const taken = aggregate.take();
    const own = coordinatorMeter.sample();
    coordinatorCpu.cpuUs += own.userUs + own.systemUs;
    coordinatorCpu.wallMs += own.wallMs;
    coordinatorCpu.eluWeighted += own.elu * own.wallMs;
    coordinatorCpu.eluMax = Math.max(coordinatorCpu.eluMax, own.elu);
    if (round.at === round.previousAt) return;
    let connected = 0;
    let devices = 0;
    for (const gauges of aggregate.gauges.values()) {
      connected += gauges.connected;
      devices += gauges.devices;
    }
    const ack = taken.ack.summary();
    const e2e = taken.e2e.summary();
    const pct = (sample: CpuSample | undefined) => (sample && sample.wallMs > 0 ? Math.round(((sample.userUs + sample.systemUs) / 1000 / sample.wallMs) * 1000) / 10 : null);
    const point: Point = {
      t: Math.round(round.at - t0) / 1000,
      dt: Math.round(round.at - round.previousAt) / 1000,
      phase: round.phase,
      connected,
      devices,
      ...taken.counters,
      errors: sumErrors(taken.errors, (operation) => operation !== 'ack'),
      nacks: sumErrors(taken.errors, (operation) => operation === 'ack'),
      errorsByCode: taken.errors,
      ack: ack && { p50: ack.p50, p95: ack.p95, p99: ack.p99 },
      e2e: e2e && { p50: e2e.p50, p95: e2e.p95, p99: e2e.p99 },
      cpu: { coordinator: pct(own), workers: workers.map((worker) => pct(taken.cpu.get(worker.index))) },
      elu: { coordinator: round2(own.elu), workers: workers.map((worker) => (taken.cpu.has(worker.index) ? round2(taken.cpu.get(worker.index)!.elu) : null)) },
      lagMs: taken.lagMs,
    };
    timeline.push(point);
    if (!options.quiet) io.progress(progressLine(point, aggregate, plan.devices));
    // Samples of a few ms (a worker answering right after start-up) say nothing about load.
    for (const [index, sample] of taken.cpu) {
      if (sample.wallMs >= 500 && sample.elu > BUSY_ELU)
        warn(
          `busy-${index}`,
          `worker ${index}'s event loop was ${Math.round(sample.elu * 100)}% busy at ${Math.round(point.t)} s: the load generator itself may be the bottleneck (more --workers, fewer --clients per machine)`,
        );
    }
    if (own.wallMs >= 500 && own.elu > BUSY_ELU) warn('busy-coordinator', `the coordinator's event loop was ${Math.round(own.elu * 100)}% busy at ${Math.round(point.t)} s`);
    for (const [key, count] of Object.entries(taken.errors)) {
      const [operation, code] = key.split('/') as [string, string];
      if (count === 0 || !code.startsWith('rate_limited')) continue;
      const limitClass = code.split(':')[1];
      const limit = limitClass ? LIMIT_OF_CLASS[limitClass] : LIMIT_OF[operation];
      warn(
        `rate-limited-${key}`,
        `the server answers rate_limited (${operation}${limitClass ? `, ${limitClass} events` : ''}): ${limit ?? 'a server budget refused it; see the rate-limit variables in the README'}`,
      );
    }
  };
  const ticker = setInterval(() => {
    closePoint();
    void requestTicks();
  }, 1000);

  const all = async <C extends Command['cmd']>(make: (worker: WorkerHandle) => Extract<Command, { cmd: C }> | null): Promise<Array<Results[C] | null>> =>
    Promise.all(
      workers.map((worker) => {
        const command = make(worker);
        return command === null ? null : worker.call(command);
      }),
    );

  let audit: Results['audit'] | null = null;
  let load: Array<Results['load'] | null> = [];
  let created: Results['create']['created'] = [];
  let failure: string | null = null;
  try {
    // --- connect: each worker ramps its share of devices at its share of --ramp.
    const perWorker = workers.map((worker) => plan.users.filter((user) => user.worker === worker.index).reduce((sum, user) => sum + user.devices.length, 0));
    const connectStart = clock() + 200;
    const connect = await all<'connect'>((worker) => ({
      cmd: 'connect',
      startAt: connectStart,
      rate: Math.max(0.001, (options.ramp * perWorker[worker.index]!) / plan.devices),
      deadline: connectStart + options.setupTimeoutMs,
    }));
    const connected = connect.reduce((sum, result) => sum + (result?.connected ?? 0), 0);
    io.log(`connected ${connected} of ${plan.devices} devices (${plan.users.length} users) in ${(seconds()).toFixed(1)} s`);
    if (connected === 0) throw new RunError(`no device could connect to ${options.url}; see errors`);

    // --- create: by the worker of each conversation's first member.
    enter('create');
    const tasks = workers.map(() => [] as CreateTask[]);
    for (const conversation of plan.conversations) {
      const creator = plan.users[conversation.members[0]!]!;
      tasks[creator.worker]!.push({ index: conversation.index, kind: conversation.kind, creator: creator.index, others: conversation.members.slice(1).map((member) => plan.users[member]!.id) });
    }
    const createDeadline = clock() + options.setupTimeoutMs;
    const creations = await all<'create'>((worker) => ({ cmd: 'create', tasks: tasks[worker.index]!, deadline: createDeadline }));
    created = creations.flatMap((result) => result?.created ?? []);
    io.log(`created ${created.length} of ${plan.conversations.length} conversations in ${(seconds() - phases.at(-1)!.startS).toFixed(1)} s`);
    if (created.length === 0) throw new RunError('no conversation could be created; see errors');

    // --- register: every worker learns the conversations its users are in, and their base seq.
    const registrations = workers.map(() => [] as Registration[]);
    const sendersPerWorker = workers.map(() => new Set<number>());
    for (const { index, conversationId, base } of created) {
      const byWorker = new Map<number, number[]>();
      for (const member of plan.conversations[index]!.members) {
        const user = plan.users[member]!;
        if (!byWorker.has(user.worker)) byWorker.set(user.worker, []);
        byWorker.get(user.worker)!.push(user.index);
        sendersPerWorker[user.worker]!.add(user.index);
      }
      for (const [worker, localMembers] of byWorker) registrations[worker]!.push({ conversationId, base, localMembers });
    }
    await all<'register'>((worker) => ({ cmd: 'register', registrations: registrations[worker.index]! }));

    // --- load: rates split by the senders (users in a conversation) and devices each worker owns.
    enter('load');
    const totalSenders = sendersPerWorker.reduce((sum, set) => sum + set.size, 0);
    const share = (worker: WorkerHandle) => sendersPerWorker[worker.index]!.size / Math.max(1, totalSenders);
    const deviceShare = (worker: WorkerHandle) => (connect[worker.index]?.connected ?? 0) / connected;
    const loadStart = clock() + 200;
    const loadEnd = loadStart + options.durationMs;
    const drainDeadline = loadEnd + Math.max(15_000, 2 * options.ackTimeoutMs) + options.offlineMs.max;
    const loading = all<'load'>((worker) => ({
      cmd: 'load',
      startAt: loadStart,
      durationMs: options.durationMs,
      rate: options.rate * share(worker),
      typing: options.rate * options.typing * share(worker),
      churn: options.churn * deviceShare(worker),
      presence: options.presence * deviceShare(worker),
      drainDeadline,
    }));
    const drainTimer = setTimeout(() => enter('drain'), Math.max(0, loadEnd - clock()));
    const during = hooks.duringLoad;
    // Settles with the hook's error (or null), never rejects: it is awaited only after the load.
    const hooked = during
      ? (async () => {
          await sleep(Math.max(0, loadStart - clock()));
          try {
            await during();
            return null;
          } catch (error) {
            return error instanceof Error ? error : new Error(String(error));
          } finally {
            clearTimeout(drainTimer);
            if ((phase as Phase) === 'load') enter('drain');
            const deadline = clock() + Math.max(15_000, 2 * options.ackTimeoutMs) + options.offlineMs.max;
            await all<'finish'>(() => ({ cmd: 'finish', drainDeadline: deadline })).catch(() => {});
          }
        })()
      : Promise.resolve(null);
    load = await loading;
    clearTimeout(drainTimer);
    const hookError = await hooked;
    if (hookError) throw new RunError(`during the load: ${hookError.message}`);
    // `phase` moves inside the drain timer's callback, which narrowing cannot see.
    if ((phase as Phase) !== 'drain') enter('drain');

    // --- audit: every device must hold every seq up to the highest acked one of its conversations.
    enter('grace');
    const maxAcked = new Map<string, number>();
    for (const result of load) for (const [conversationId, seq] of result?.maxAcked ?? []) maxAcked.set(conversationId, Math.max(maxAcked.get(conversationId) ?? 0, seq));
    const auditDeadline = clock() + options.graceMs;
    const audits = (await all<'audit'>(() => ({ cmd: 'audit', maxAcked: [...maxAcked], deadline: auditDeadline }))).filter((result) => result !== null);
    audit = {
      ...mergeAudits(audits),
      waitedMs: Math.max(...audits.map((result) => result.waitedMs)),
      duplicateSamples: audits.flatMap((result) => result.duplicateSamples).slice(0, 20),
      lateSamples: audits.flatMap((result) => result.lateSamples).slice(0, 20),
    };
    enter('close');
    await all<'close'>(() => ({ cmd: 'close' }));
  } catch (error) {
    failure = (crashed ?? error) instanceof Error ? ((crashed ?? error) as Error).message : String(error);
    io.log(`RUN FAILED: ${failure}`);
  } finally {
    // One last round so the deltas of the final second (the errors of a failed run too) are counted.
    clearInterval(ticker);
    await Promise.race([requestTicks(true), sleep(2000)]);
    closePoint();
    phases.at(-1)!.endS = seconds();
    await Promise.all(workers.map((worker) => worker.stop().catch(() => {})));
  }

  const processCpu = process.cpuUsage(processCpuStart);
  const summary = buildSummary({
    options,
    plan,
    startedAt,
    wallS: seconds(),
    counters: aggregate.counters,
    errors: aggregate.errors,
    histograms: aggregate.totals,
    timeline,
    phases,
    created: created.length,
    load: load.filter((result) => result !== null),
    audit,
    warnings: [...warnings],
    failure,
    cpu: { coordinator: coordinatorCpu, workers: aggregate.workerCpu, processCpuUs: processCpu.user + processCpu.system },
  });
  return { summary, exitCode: summary.verdict.exitCode, acked: load.flatMap((result) => result?.acked ?? []) };
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}

function progressLine(point: Point, aggregate: Aggregate, devices: number): string {
  const rate = (count: number) => `${Math.round(count / Math.max(0.001, point.dt))}/s`;
  const ms = (value: number | undefined) => (value === undefined ? '-' : value < 10 ? `${value.toFixed(1)}ms` : `${Math.round(value)}ms`);
  const total = aggregate.totals;
  const errors = sumErrors(aggregate.errors, (operation) => operation !== 'ack');
  const nacks = sumErrors(aggregate.errors, (operation) => operation === 'ack');
  const cpu = point.cpu.workers.filter((value) => value !== null) as number[];
  const elu = point.elu.workers.filter((value) => value !== null) as number[];
  return [
    `[${String(Math.round(point.t)).padStart(4)}s] ${point.phase.padEnd(7)}`,
    `conn ${point.connected}/${devices}`,
    `sent ${rate(point.sent)} acked ${rate(point.acked)} deliv ${rate(point.deliveries)}`,
    `ack p99 ${total.ack.count ? ms(total.ack.percentile(99)) : '-'} e2e p99 ${total.e2e.count ? ms(total.e2e.percentile(99)) : '-'}`,
    `err ${errors}${nacks ? ` nack ${nacks}` : ''} dup ${aggregate.counters.duplicates} reconn ${aggregate.counters.reconnects}`,
    `cpu ${cpu.length ? Math.max(...cpu) : '-'}% elu ${elu.length ? Math.max(...elu).toFixed(2) : '-'}${point.lagMs > 50 ? ` lag ${point.lagMs}ms` : ''}`,
  ].join(' | ');
}

/**
 * Which server budget refuses each of our operations when it answers rate_limited, and what to do
 * about it: the warning names the limit that was actually hit.
 */
const LIMIT_OF: Record<string, string> = {
  token: 'REST_RATE_LIMIT_PER_MINUTE (per client address) refused minting tokens through POST /v1/dev/tokens; raise it, or pass --jwt-secret to sign tokens here',
  connect: 'RATE_LIMIT_SOCKET_CONNECT (new sockets per client address) is below this ramp; raise it or lower --ramp',
  reconnect: 'RATE_LIMIT_SOCKET_CONNECT (new sockets per client address) is below this churn; raise it or lower --churn',
  send: 'RATE_LIMIT_MESSAGE (per user, all devices) is below the per-user send rate; raise it, lower --rate, or add --clients',
  read: 'RATE_LIMIT_RECEIPT (per user) is below the receipt rate; raise it or use --receipts delivered|none',
  create: 'RATE_LIMIT_CONVERSATION (per user) is below the conversations each user creates; raise it or lower --conversations',
  presence: 'RATE_LIMIT_TYPING (per user; presence:set-status draws on it) is below --presence; raise it or lower --presence',
};

/** The per-user budget of each event class a refusal names (transport/budgets.ts on the server). */
const LIMIT_OF_CLASS: Record<string, string> = {
  message: LIMIT_OF['send']!,
  receipt: LIMIT_OF['read']!,
  conversation: LIMIT_OF['create']!,
  typing: 'RATE_LIMIT_TYPING (per user; typing:set and presence:set-status draw on it) is below --typing + --presence per user; raise it or lower them',
  read: 'RATE_LIMIT_READ (per user: history, sync, lists) is below what resyncs ask; raise it or lower --churn',
  call: 'RATE_LIMIT_CALL (per user)',
};
