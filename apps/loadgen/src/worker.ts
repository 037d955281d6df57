/**
 * A worker thread: owns a slice of the users and every device of them (its {@link Fleet}), makes them
 * act ({@link Activity}) as the coordinator's commands say, does all per-delivery accounting locally,
 * and hands the coordinator deltas once a second. Every command is answered once, with its id.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parentPort, workerData } from 'node:worker_threads';
import { ChatError } from '@chat/client';
import { backoffDelay } from '@chat/protocol';
import { audit, type AuditEntry, SeqWindow } from './accounting.ts';
import { Activity } from './activity.ts';
import { clock } from './body.ts';
import { Fleet, sleepUntil, type WorkerContext } from './fleet.ts';
import { Random } from './random.ts';
import { Schedule } from './schedule.ts';
import { CpuMeter, Recorder, type Snapshot } from './stats.ts';
import { tokenMinter } from './tokens.ts';
import type { Command, CreateTask, Registration, Reply, Request, Results, WorkerInit } from './wire.ts';

const init = workerData as WorkerInit;
const { options } = init;
const port = parentPort!;
const recorder = new Recorder();
const context: WorkerContext = {
  options,
  // Different streams per worker, still repeatable for one seed.
  random: new Random((options.seed ^ Math.imul(init.worker + 1, 0x9e3779b9)) >>> 0),
  recorder,
  closing: false,
};
const cpu = new CpuMeter();
const mint = tokenMinter(options, () => recorder.error('token', 'rate_limited'));
const fleet = new Fleet(context, mint, init.users);
const activity = new Activity(context, fleet);

let lagMs = 0;
const lateBy = (ms: number) => (lagMs = Math.max(lagMs, ms));
/** Set by `finish`: the load phase ends now, the drain at this deadline. */
let finish: { drainDeadline: number } | null = null;

async function createPhase({ tasks, deadline }: Extract<Command, { cmd: 'create' }>): Promise<Results['create']> {
  const created: Results['create']['created'] = [];
  let failed = 0;
  let next = 0;
  // A few in flight per worker: creation is set-up, not the load being measured.
  const lane = async () => {
    while (next < tasks.length) {
      const task = tasks[next++]!;
      const result = await createOne(task, deadline);
      if (result) created.push(result);
      else failed += 1;
    }
  };
  await Promise.all(Array.from({ length: Math.min(16, tasks.length) }, lane));
  return { created, failed };
}

async function createOne(task: CreateTask, deadline: number): Promise<Results['create']['created'][number] | null> {
  const user = fleet.usersByIndex.get(task.creator)!;
  for (let attempt = 1; clock() < deadline; attempt++) {
    const device = user.connectedDevice();
    if (!device) {
      await sleep(500);
      continue;
    }
    try {
      const { conversation } =
        task.kind === 'direct'
          ? await device.client.request('conversation:open-direct', { userId: task.others[0]! })
          : await device.client.request('conversation:create-group', { title: `loadgen ${options.runId} #${task.index}`, memberIds: task.others });
      recorder.count('conversationsCreated');
      return { index: task.index, conversationId: conversation.id, base: conversation.lastSeq };
    } catch (error) {
      fleet.failure('create', error);
      if (!(error instanceof ChatError) || !error.retryable) return null;
      await sleep(backoffDelay(attempt + 1, { initialMs: 250, maxMs: 5000 }, error.retryAfterMs));
    }
  }
  return null;
}

function registerPhase({ registrations }: { registrations: Registration[] }): Results['register'] {
  let windows = 0;
  for (const { conversationId, base, localMembers } of registrations) {
    for (const index of localMembers) {
      const user = fleet.usersByIndex.get(index)!;
      user.conversations.push(conversationId);
      for (const device of user.devices) {
        if (device.state === 'failed') continue;
        device.windows.set(conversationId, new SeqWindow(base));
        windows += 1;
      }
    }
  }
  return { windows };
}

async function loadPhase(command: Extract<Command, { cmd: 'load' }>): Promise<Results['load']> {
  await sleepUntil(command.startAt);
  const pool = fleet.users.filter((user) => user.conversations.length > 0);
  const start = performance.now();
  // Each arrival process draws from its own stream, so how many events a seed yields does not depend
  // on how the other activities' random draws interleave with timer jitter.
  const stream = (n: number) => new Random((options.seed ^ Math.imul(init.worker * 8 + n + 1, 0x85ebca6b)) >>> 0);
  const schedules: Array<[Schedule, () => void]> = [
    [new Schedule(command.rate, options.arrival, stream(1), start), () => activity.sendOne(pool)],
    [new Schedule(command.typing, 'poisson', stream(2), start), () => activity.typingBurst(pool)],
    [new Schedule(command.presence, 'poisson', stream(3), start), () => activity.presenceChange()],
    [new Schedule(command.churn, 'poisson', stream(4), start), () => fleet.churnOne()],
  ];
  let end = start + command.durationMs;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      if (finish) end = Math.min(end, performance.now());
      const now = Math.min(performance.now(), end);
      for (const [schedule, fire] of schedules) lateBy(schedule.due(now, fire));
      if (now >= end) {
        clearInterval(timer);
        resolve();
      }
    }, 5);
  });

  // Drain: everyone offline comes back now (resync must bring what they missed), every send settles.
  fleet.reconnectAll();
  const drainDeadline = finish?.drainDeadline ?? command.drainDeadline;
  while (clock() < drainDeadline && (activity.pendingSends > 0 || fleet.reconnecting > 0)) await sleep(50);
  const live = fleet.devices.filter((device) => device.state === 'connected');
  const offline = live.filter((device) => !device.client.connected).length;
  const unrecovered = live.filter((device) => device.downSince !== null).length;
  return { maxAcked: [...activity.maxAcked], unacked: activity.pendingSends, offline, unrecovered, acked: activity.acked };
}

async function auditPhase({ maxAcked: acked, deadline }: Extract<Command, { cmd: 'audit' }>): Promise<Results['audit']> {
  const expected = new Map(acked);
  const entries = (): AuditEntry[] => {
    const list: AuditEntry[] = [];
    for (const device of fleet.devices) {
      if (device.state === 'failed') continue;
      for (const [conversationId, window] of device.windows) list.push({ device: device.label, conversationId, window });
    }
    return list;
  };
  const started = clock();
  // The grace period ends early once every device has everything.
  while (clock() < deadline && audit(entries(), expected, 0).lost > 0) await sleep(100);
  return { ...audit(entries(), expected), waitedMs: Math.round(clock() - started), duplicateSamples: activity.duplicateSamples, lateSamples: activity.lateSamples };
}

function closePhase(): Results['close'] {
  context.closing = true;
  clearInterval(readTimer);
  fleet.close();
  return {};
}

function tick(): Snapshot {
  let connected = 0;
  let live = 0;
  for (const device of fleet.devices) {
    if (device.state === 'failed') continue;
    live += 1;
    if (device.client.connected) connected += 1;
  }
  const snapshot: Snapshot = { worker: init.worker, ...recorder.take(), gauges: { connected, devices: live, pendingSends: activity.pendingSends, lagMs: Math.round(lagMs) }, cpu: cpu.sample() };
  lagMs = 0;
  return snapshot;
}

const readTimer = setInterval(() => activity.flushReads(), 1000);

async function handle(request: Request): Promise<unknown> {
  switch (request.cmd) {
    case 'tick':
      return tick();
    case 'connect':
      return fleet.connect(request, lateBy);
    case 'create':
      return createPhase(request);
    case 'register':
      return registerPhase(request);
    case 'load':
      return loadPhase(request);
    case 'finish':
      finish = { drainDeadline: request.drainDeadline };
      return {};
    case 'audit':
      return auditPhase(request);
    case 'close':
      return closePhase();
  }
}

port.on('message', (request: Request) => {
  handle(request).then(
    (result) => port.postMessage({ id: request.id, ok: true, result } satisfies Reply),
    (error: unknown) => port.postMessage({ id: request.id, ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) } satisfies Reply),
  );
});
