/**
 * A worker thread: owns a slice of the users and every device of them, each device a real SDK
 * `ChatClient`. It connects, creates, sends and receives as the coordinator's commands say, does all
 * per-delivery accounting locally, and hands the coordinator deltas once a second.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parentPort, workerData } from 'node:worker_threads';
import { ChatClient, ChatError } from '@chat/client';
import { backoffDelay, type Message, type PresenceStatus } from '@chat/protocol';
import { audit, type AuditEntry, SeqWindow } from './accounting.ts';
import { clock, decodeBody, encodeBody } from './body.ts';
import type { PlannedDevice, PlannedUser } from './plan.ts';
import { Random } from './random.ts';
import { Schedule } from './schedule.ts';
import { CpuMeter, Recorder, type Snapshot } from './stats.ts';
import { tokenMinter, TokenError, type Minted } from './tokens.ts';
import type { Command, CreateTask, Registration, Reply, Request, Results, WorkerInit } from './wire.ts';

const init = workerData as WorkerInit;
const { options } = init;
const port = parentPort!;
// Different streams per worker, still repeatable for one seed.
const random = new Random((options.seed ^ Math.imul(init.worker + 1, 0x9e3779b9)) >>> 0);
const recorder = new Recorder();
const cpu = new CpuMeter();
const mint = tokenMinter(options, () => recorder.error('token', 'rate_limited'));
// Own messages whose delivered/read status is still watched (clientMsgId → sending device), bounded
// per worker: every device of the sender reports status, only the sending one counts it.
const OWN_TRACKED = 100_000;
const watched = new Map<string, number>();
const PRESENCE: PresenceStatus[] = ['online', 'away', 'dnd'];

class User {
  readonly planned: PlannedUser;
  readonly devices: Device[] = [];
  readonly conversations: string[] = [];
  #token: Minted | null = null;
  #minting: Promise<Minted> | null = null;

  constructor(planned: PlannedUser) {
    this.planned = planned;
  }

  get id(): string {
    return this.planned.id;
  }

  /** A token valid for at least another minute; concurrent callers share one mint. */
  async token(): Promise<string> {
    if (this.#token && this.#token.expiresAt - Date.now() > 60_000) return this.#token.token;
    this.#minting ??= mint(this.id)
      .then((minted) => {
        recorder.count('tokens');
        this.#token = minted;
        return minted;
      })
      .finally(() => (this.#minting = null));
    return (await this.#minting).token;
  }

  connectedDevice(): Device | null {
    const connected = this.devices.filter((device) => device.usable);
    return connected.length === 0 ? null : random.pick(connected);
  }
}

class Device {
  readonly user: User;
  readonly index: number;
  readonly label: string;
  readonly client: ChatClient;
  state: 'idle' | 'connected' | 'failed' = 'idle';
  /** Disconnected on purpose (churn) and not yet synced again. */
  churning = false;
  /** Between a disconnect and the end of the resync: deliveries then are resync deliveries. */
  syncing = false;
  /** When the last unplanned disconnect happened, until the SDK has resynced by itself. */
  downSince: number | null = null;
  /** The same, until the SDK has reconnected. */
  offSince: number | null = null;
  readonly windows = new Map<string, SeqWindow>();
  readonly pendingRead = new Map<string, number>();

  constructor(user: User, planned: PlannedDevice, slot: number) {
    this.user = user;
    this.index = planned.index;
    this.label = `${user.id}#${slot}`;
    this.client = new ChatClient({
      url: options.url,
      token: () => user.token(),
      transports: [planned.transport],
      ackTimeoutMs: options.ackTimeoutMs,
      autoDeliveredReceipts: options.receipts !== 'none',
    });
    this.#bind();
  }

  /** Given up on (a getter, because phases flip it while another async path is waiting). */
  get failed(): boolean {
    return this.state === 'failed';
  }

  /** Connected, synced and not being churned: fit to act for its user. */
  get usable(): boolean {
    return this.state === 'connected' && this.client.connected && !this.churning;
  }

  #bind(): void {
    const client = this.client;
    client.on('message', (message) => onMessage(this, message));
    client.on('typing', (event) => {
      if (event.typing) recorder.count('typingSeen');
    });
    client.on('receipt', (receipt) => {
      if (receipt.userId !== this.user.id) recorder.count('receiptsSeen');
    });
    client.on('status', (event) => {
      if (watched.get(event.clientMsgId) !== this.index) return;
      if (event.state === 'delivered') recorder.count('statusDelivered');
      if (event.state === 'read') {
        recorder.count('statusRead');
        watched.delete(event.clientMsgId);
      }
    });
    client.on('disconnected', ({ reason }) => {
      this.syncing = true;
      if (this.churning || closing || this.state !== 'connected') return;
      this.downSince ??= clock();
      this.offSince ??= clock();
      recorder.count('unplannedDisconnects');
      recorder.error('disconnect', reason.replace(/\s+/g, '_'));
    });
    client.on('connected', () => {
      if (this.offSince !== null) recorder.record('rejoin', clock() - this.offSince);
      this.offSince = null;
    });
    client.on('synced', () => {
      if (!this.churning) this.syncing = false;
      if (this.downSince !== null) {
        recorder.record('recovery', clock() - this.downSince);
        recorder.count('recoveries');
        this.downSince = null;
      }
    });
    client.on('error', (error) => {
      if (!closing) recorder.error('sdk', error.code);
    });
    client.socket.on('presence:updated', () => recorder.count('presenceSeen'));
    client.socket.on('session:ending', ({ reason }) => recorder.error('ending', reason));
    // Every failed ack on the wire, including those the SDK retries by itself (a rate-limited send is
    // retried after retryAfterMs and would otherwise be invisible). Packet type 3 is socket.io's ACK.
    client.socket.io.on('packet', (packet: { type: number; data?: unknown }) => {
      if (packet.type !== 3 || !Array.isArray(packet.data)) return;
      const ack = packet.data[0] as { ok?: boolean; error?: { code?: string; message?: string } } | undefined;
      if (ack?.ok !== false) return;
      // A refusal names its budget class ("Too many message requests"): kept as `rate_limited:<class>`
      // so the warning can name the limit that was hit.
      const limitClass = ack.error?.code === 'rate_limited' ? /Too many (\w+) requests/.exec(ack.error.message ?? '')?.[1] : undefined;
      recorder.error('ack', limitClass ? `rate_limited:${limitClass}` : (ack.error?.code ?? 'unknown'));
    });
  }
}

const users = init.users.map((planned) => new User(planned));
const devices: Device[] = [];
for (const user of users) {
  user.planned.devices.forEach((planned, slot) => {
    const device = new Device(user, planned, slot);
    user.devices.push(device);
    devices.push(device);
  });
}
const usersByIndex = new Map(users.map((user) => [user.planned.index, user]));

let closing = false;
let lagMs = 0;
let pendingSends = 0;
const maxAcked = new Map<string, number>();
const acked: Results['load']['acked'] = [];
/** Set by `finish`: the load phase ends now, the drain at this deadline. */
let finish: { drainDeadline: number } | null = null;
const readPending = new Set<Device>();
const duplicateSamples: Results['audit']['duplicateSamples'] = [];
const lateSamples: Results['audit']['lateSamples'] = [];
const offlineTimers = new Map<Device, NodeJS.Timeout>();
const reconnecting = new Set<Promise<void>>();

// ---------------------------------------------------------------------------------------------
// Receiving
// ---------------------------------------------------------------------------------------------

function onMessage(device: Device, message: Message): void {
  const header = decodeBody(message.body);
  const window = header === null ? undefined : device.windows.get(message.conversationId);
  if (header === null || window === undefined) {
    recorder.count('untracked');
    return;
  }
  const own = header.d === device.index;
  const result = window.add(message.seq, own);
  if (result === 'history') {
    recorder.count('untracked');
    return;
  }
  if (result === 'duplicate') {
    recorder.count('duplicates');
    if (duplicateSamples.length < 20) duplicateSamples.push({ device: device.label, conversationId: message.conversationId, seq: message.seq });
    return;
  }
  if (own) return;
  recorder.count('deliveries');
  if (result === 'late') {
    recorder.count('lateDeliveries');
    if (device.syncing) recorder.count('lateResyncDeliveries');
    if (lateSamples.length < 20) lateSamples.push({ device: device.label, conversationId: message.conversationId, seq: message.seq, after: window.highDelivered, resync: device.syncing });
  }
  const latency = clock() - header.t;
  if (device.syncing) {
    recorder.count('resyncDeliveries');
    recorder.record('resync', latency);
  } else {
    recorder.record('e2e', latency);
  }
  if (options.receipts === 'read' && random.next() < options.readRatio) {
    device.pendingRead.set(message.conversationId, Math.max(device.pendingRead.get(message.conversationId) ?? 0, message.seq));
    readPending.add(device);
  }
}

/** Read receipts, coalesced: at most one per device and conversation per second, like a person scrolling. */
function flushReads(): void {
  for (const device of readPending) {
    if (!device.usable) continue;
    for (const [conversationId, seq] of device.pendingRead) {
      device.client.markRead(conversationId, seq).then(
        () => recorder.count('readMarks'),
        (error: unknown) => failure('read', error, device),
      );
    }
    device.pendingRead.clear();
    readPending.delete(device);
  }
}

function failure(operation: string, error: unknown, device?: Device): void {
  if (closing) return;
  const code = error instanceof ChatError || error instanceof TokenError ? error.code : 'internal';
  // A request cut off by our own churn is the load generator's doing, not the server's.
  if (code === 'disconnected' && device?.churning) return;
  recorder.error(operation, code);
}

// ---------------------------------------------------------------------------------------------
// Phases
// ---------------------------------------------------------------------------------------------

async function sleepUntil(at: number): Promise<void> {
  const wait = at - clock();
  if (wait > 0) await sleep(wait);
}

async function connectPhase({ startAt, rate, deadline }: Extract<Command, { cmd: 'connect' }>): Promise<Results['connect']> {
  await sleepUntil(startAt);
  const started = clock();
  const attempts: Array<Promise<void>> = [];
  // Evenly spaced connections; a worker that falls behind catches up at once (and shows lag).
  for (let i = 0; i < devices.length; i++) {
    const at = started + (i * 1000) / rate;
    const wait = at - clock();
    if (wait > 1) await sleep(wait);
    else lagMs = Math.max(lagMs, -wait);
    attempts.push(connectDevice(devices[i]!, deadline));
  }
  await Promise.race([Promise.all(attempts), sleepUntil(deadline)]);
  let connected = 0;
  for (const device of devices) {
    if (device.state === 'connected') connected += 1;
    else giveUp(device, 'setup_timeout');
  }
  return { connected, failed: devices.length - connected };
}

async function connectDevice(device: Device, deadline: number): Promise<void> {
  try {
    await device.user.token();
  } catch (error) {
    failure('token', error);
    giveUp(device);
    return;
  }
  for (let attempt = 1; !device.failed; attempt++) {
    const started = clock();
    try {
      await device.client.connect();
      if (device.failed) return;
      recorder.record('connect', clock() - started);
      recorder.count('connects');
      device.state = 'connected';
      return;
    } catch (error) {
      failure('connect', error);
      const retryable = error instanceof ChatError && error.retryable;
      if (!retryable || attempt >= 3 || clock() + 1000 * attempt > deadline || device.failed) break;
      await sleep(1000 * attempt);
    }
  }
  giveUp(device);
}

/** Out of the run: it never connected, so nothing is expected of it. */
function giveUp(device: Device, code?: string): void {
  if (device.failed) return;
  device.state = 'failed';
  recorder.count('connectFailures');
  if (code !== undefined) recorder.error('connect', code);
  device.client.close();
}

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
  const user = usersByIndex.get(task.creator)!;
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
      failure('create', error);
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
      const user = usersByIndex.get(index)!;
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

const senders = () => users.filter((user) => user.conversations.length > 0);

/** A user with conversations and a usable device, found in a few tries; any device if none is usable. */
function pickActor(pool: User[]): { user: User; device: Device; conversationId: string } | null {
  if (pool.length === 0) return null;
  for (let attempt = 0; attempt < 4; attempt++) {
    const user = random.pick(pool);
    const device = user.connectedDevice();
    if (device) return { user, device, conversationId: random.pick(user.conversations) };
  }
  const user = random.pick(pool);
  const device = user.devices.filter((candidate) => candidate.state === 'connected');
  if (device.length === 0) return null;
  return { user, device: random.pick(device), conversationId: random.pick(user.conversations) };
}

function sendOne(pool: User[]): void {
  const actor = pickActor(pool);
  if (!actor) return;
  const { device, conversationId } = actor;
  const sentAt = clock();
  const outgoing = device.client.send({ conversationId, body: encodeBody({ t: sentAt, d: device.index }, options.bodySize) });
  recorder.count('sent');
  pendingSends += 1;
  watched.set(outgoing.clientMsgId, device.index);
  if (watched.size > OWN_TRACKED) watched.delete(watched.keys().next().value!);
  outgoing.acked
    .then(
      (message) => {
        recorder.record('ack', clock() - sentAt);
        recorder.count('acked');
        if (outgoing.attempts > 1) recorder.count('sendRetries', outgoing.attempts - 1);
        maxAcked.set(message.conversationId, Math.max(maxAcked.get(message.conversationId) ?? 0, message.seq));
        if (options.recordAcked) acked.push([message.conversationId, message.seq, message.id]);
      },
      (error: unknown) => {
        recorder.count('sendFailed');
        recorder.error('send', error instanceof ChatError ? error.code : 'internal');
      },
    )
    .finally(() => (pendingSends -= 1));
}

/** A few keystrokes over a second or so; the SDK turns them into typing:set true (and false when idle). */
function typingBurst(pool: User[]): void {
  const actor = pickActor(pool);
  if (!actor) return;
  recorder.count('typingBursts');
  const strokes = random.int(2, 5);
  for (let i = 0; i < strokes; i++) {
    setTimeout(() => {
      if (!closing && actor.device.usable) actor.device.client.typing(actor.conversationId);
    }, i * 250).unref();
  }
}

function presenceChange(): void {
  const device = random.pick(devices);
  if (!device.usable) return;
  device.client.request('presence:set-status', { status: random.pick(PRESENCE) }).then(
    () => recorder.count('presenceSets'),
    (error: unknown) => failure('presence', error, device),
  );
}

function churnOne(): void {
  for (let attempt = 0; attempt < 8; attempt++) {
    const device = random.pick(devices);
    if (!device.usable) continue;
    device.churning = true;
    device.syncing = true;
    device.client.disconnect();
    recorder.count('churnDisconnects');
    const offline = random.int(options.offlineMs.min, options.offlineMs.max);
    offlineTimers.set(
      device,
      setTimeout(() => reconnect(device), offline),
    );
    return;
  }
}

function reconnect(device: Device): void {
  offlineTimers.delete(device);
  const task = (async () => {
    for (let attempt = 1; attempt <= 5; attempt++) {
      const started = clock();
      try {
        await device.client.connect();
        recorder.record('reconnect', clock() - started);
        recorder.count('reconnects');
        break;
      } catch (error) {
        failure('reconnect', error);
        if (closing) break;
        await sleep(1000 * attempt);
      }
    }
    device.churning = false;
    device.syncing = false;
  })();
  reconnecting.add(task);
  void task.finally(() => reconnecting.delete(task));
}

async function loadPhase(command: Extract<Command, { cmd: 'load' }>): Promise<Results['load']> {
  await sleepUntil(command.startAt);
  const pool = senders();
  const start = performance.now();
  // Each arrival process draws from its own stream, so how many events a seed yields does not depend
  // on how the other activities' random draws interleave with timer jitter.
  const stream = (n: number) => new Random((options.seed ^ Math.imul(init.worker * 8 + n + 1, 0x85ebca6b)) >>> 0);
  const schedules: Array<[Schedule, () => void]> = [
    [new Schedule(command.rate, options.arrival, stream(1), start), () => sendOne(pool)],
    [new Schedule(command.typing, 'poisson', stream(2), start), () => typingBurst(pool)],
    [new Schedule(command.presence, 'poisson', stream(3), start), presenceChange],
    [new Schedule(command.churn, 'poisson', stream(4), start), churnOne],
  ];
  let end = start + command.durationMs;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      if (finish) end = Math.min(end, performance.now());
      const now = Math.min(performance.now(), end);
      for (const [schedule, fire] of schedules) lagMs = Math.max(lagMs, schedule.due(now, fire));
      if (now >= end) {
        clearInterval(timer);
        resolve();
      }
    }, 5);
  });

  // Drain: everyone offline comes back now (resync must bring what they missed), every send settles.
  for (const [device, timer] of offlineTimers) {
    clearTimeout(timer);
    reconnect(device);
  }
  const drainDeadline = finish?.drainDeadline ?? command.drainDeadline;
  while (clock() < drainDeadline && (pendingSends > 0 || reconnecting.size > 0)) await sleep(50);
  const live = devices.filter((device) => device.state === 'connected');
  const offline = live.filter((device) => !device.client.connected).length;
  const unrecovered = live.filter((device) => device.downSince !== null).length;
  return { maxAcked: [...maxAcked], unacked: pendingSends, offline, unrecovered, acked };
}

async function auditPhase({ maxAcked: acked, deadline }: Extract<Command, { cmd: 'audit' }>): Promise<Results['audit']> {
  const expected = new Map(acked);
  const entries = (): AuditEntry[] => {
    const list: AuditEntry[] = [];
    for (const device of devices) {
      if (device.state === 'failed') continue;
      for (const [conversationId, window] of device.windows) list.push({ device: device.label, conversationId, window });
    }
    return list;
  };
  const started = clock();
  // The grace period ends early once every device has everything.
  while (clock() < deadline && audit(entries(), expected, 0).lost > 0) await sleep(100);
  return { ...audit(entries(), expected), waitedMs: Math.round(clock() - started), duplicateSamples, lateSamples };
}

function closePhase(): Results['close'] {
  closing = true;
  clearInterval(readTimer);
  for (const timer of offlineTimers.values()) clearTimeout(timer);
  for (const device of devices) device.client.close();
  return {};
}

function tick(): Snapshot {
  let connected = 0;
  let live = 0;
  for (const device of devices) {
    if (device.state === 'failed') continue;
    live += 1;
    if (device.client.connected) connected += 1;
  }
  const snapshot: Snapshot = { worker: init.worker, ...recorder.take(), gauges: { connected, devices: live, pendingSends, lagMs: Math.round(lagMs) }, cpu: cpu.sample() };
  lagMs = 0;
  return snapshot;
}

const readTimer = setInterval(flushReads, 1000);

async function handle(request: Request): Promise<unknown> {
  switch (request.cmd) {
    case 'tick':
      return tick();
    case 'connect':
      return connectPhase(request);
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
