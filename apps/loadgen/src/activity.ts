/**
 * What a worker's users do and what they see: sends (acks timed, the highest acked seq per
 * conversation kept), typing bursts, presence changes, read receipts; and on the receiving side every
 * delivery checked against the device's window of its conversation (duplicates, late deliveries, end
 * to end latency), plus the typing, receipt, status and presence events counted.
 */
import { ChatError } from '@chat/client';
import type { Message, PresenceStatus } from '@chat/protocol';
import { clock, decodeBody, encodeBody } from './body.ts';
import type { Device, Fleet, User, WorkerContext } from './fleet.ts';
import type { Results } from './wire.ts';

// Own messages whose delivered/read status is still watched (clientMsgId → sending device), bounded
// per worker: every device of the sender reports status, only the sending one counts it.
const OWN_TRACKED = 100_000;
const PRESENCE: PresenceStatus[] = ['online', 'away', 'dnd'];

export class Activity {
  /** Sends not yet acked or failed. */
  pendingSends = 0;
  /** The highest acked seq per conversation. */
  readonly maxAcked = new Map<string, number>();
  /** [conversationId, seq, messageId] of every acked message, with `recordAcked` only. */
  readonly acked: Results['load']['acked'] = [];
  readonly duplicateSamples: Results['audit']['duplicateSamples'] = [];
  readonly lateSamples: Results['audit']['lateSamples'] = [];
  readonly #context: WorkerContext;
  readonly #fleet: Fleet;
  readonly #watched = new Map<string, number>();
  readonly #readPending = new Set<Device>();

  constructor(context: WorkerContext, fleet: Fleet) {
    this.#context = context;
    this.#fleet = fleet;
    for (const device of fleet.devices) this.#observe(device);
  }

  #observe(device: Device): void {
    const { recorder } = this.#context;
    const client = device.client;
    client.on('message', (message) => this.#onMessage(device, message));
    client.on('typing', (event) => {
      if (event.typing) recorder.count('typingSeen');
    });
    client.on('receipt', (receipt) => {
      if (receipt.userId !== device.user.id) recorder.count('receiptsSeen');
    });
    client.on('status', (event) => {
      if (this.#watched.get(event.clientMsgId) !== device.index) return;
      if (event.state === 'delivered') recorder.count('statusDelivered');
      if (event.state === 'read') {
        recorder.count('statusRead');
        this.#watched.delete(event.clientMsgId);
      }
    });
    client.socket.on('presence:updated', () => recorder.count('presenceSeen'));
  }

  #onMessage(device: Device, message: Message): void {
    const { options, random, recorder } = this.#context;
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
      if (this.duplicateSamples.length < 20) this.duplicateSamples.push({ device: device.label, conversationId: message.conversationId, seq: message.seq });
      return;
    }
    if (own) return;
    recorder.count('deliveries');
    if (result === 'late') {
      recorder.count('lateDeliveries');
      if (device.syncing) recorder.count('lateResyncDeliveries');
      if (this.lateSamples.length < 20) this.lateSamples.push({ device: device.label, conversationId: message.conversationId, seq: message.seq, after: window.highDelivered, resync: device.syncing });
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
      this.#readPending.add(device);
    }
  }

  /** Read receipts, coalesced: at most one per device and conversation per call (the worker calls it once a second, like a person scrolling). */
  flushReads(): void {
    for (const device of this.#readPending) {
      if (!device.usable) continue;
      for (const [conversationId, seq] of device.pendingRead) {
        device.client.markRead(conversationId, seq).then(
          () => this.#context.recorder.count('readMarks'),
          (error: unknown) => this.#fleet.failure('read', error, device),
        );
      }
      device.pendingRead.clear();
      this.#readPending.delete(device);
    }
  }

  /** A user with conversations and a usable device, found in a few tries; any device if none is usable. */
  #pickActor(pool: User[]): { user: User; device: Device; conversationId: string } | null {
    const { random } = this.#context;
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

  /** One message from a random member of `pool` into one of their conversations. */
  sendOne(pool: User[]): void {
    const { options, recorder } = this.#context;
    const actor = this.#pickActor(pool);
    if (!actor) return;
    const { device, conversationId } = actor;
    const sentAt = clock();
    const outgoing = device.client.send({ conversationId, body: encodeBody({ t: sentAt, d: device.index }, options.bodySize) });
    recorder.count('sent');
    this.pendingSends += 1;
    this.#watched.set(outgoing.clientMsgId, device.index);
    if (this.#watched.size > OWN_TRACKED) this.#watched.delete(this.#watched.keys().next().value!);
    outgoing.acked
      .then(
        (message) => {
          recorder.record('ack', clock() - sentAt);
          recorder.count('acked');
          if (outgoing.attempts > 1) recorder.count('sendRetries', outgoing.attempts - 1);
          this.maxAcked.set(message.conversationId, Math.max(this.maxAcked.get(message.conversationId) ?? 0, message.seq));
          if (options.recordAcked) this.acked.push([message.conversationId, message.seq, message.id]);
        },
        (error: unknown) => {
          recorder.count('sendFailed');
          recorder.error('send', error instanceof ChatError ? error.code : 'internal');
        },
      )
      .finally(() => (this.pendingSends -= 1));
  }

  /** A few keystrokes over a second or so; the SDK turns them into typing:set true (and false when idle). */
  typingBurst(pool: User[]): void {
    const { random, recorder } = this.#context;
    const actor = this.#pickActor(pool);
    if (!actor) return;
    recorder.count('typingBursts');
    const strokes = random.int(2, 5);
    for (let i = 0; i < strokes; i++) {
      setTimeout(() => {
        if (!this.#context.closing && actor.device.usable) actor.device.client.typing(actor.conversationId);
      }, i * 250).unref();
    }
  }

  /** A random usable device sets a random presence status. */
  presenceChange(): void {
    const { random, recorder } = this.#context;
    const device = random.pick(this.#fleet.devices);
    if (!device.usable) return;
    device.client.request('presence:set-status', { status: random.pick(PRESENCE) }).then(
      () => recorder.count('presenceSets'),
      (error: unknown) => this.#fleet.failure('presence', error, device),
    );
  }
}
