/**
 * A worker's fleet: its users and every device of them, each device a real SDK `ChatClient`. It
 * connects them (paced, with retries, giving up on those that cannot), takes them offline and back
 * (churn), watches their connections (unplanned disconnects, rejoin and recovery times, failed acks),
 * and closes them.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ChatClient, ChatError } from '@chat/client';
import { type BackoffPolicy, backoffDelay } from '@chat/protocol';
import type { SeqWindow } from './accounting.ts';
import { clock } from './body.ts';
import type { Options } from './options.ts';
import type { PlannedDevice, PlannedUser } from './plan.ts';
import type { Random } from './random.ts';
import type { Recorder } from './stats.ts';
import { TokenError, type Mint, type Minted } from './tokens.ts';
import type { Command } from './wire.ts';

/** Back-off between a device's connect attempts, at set-up and after churn (ceilings 1 s, 2 s, 4 s, then 5 s). */
const CONNECT_RETRY: BackoffPolicy = { initialMs: 1000, maxMs: 5000 };

/** What the parts of one worker thread share. */
export interface WorkerContext {
  readonly options: Options;
  /** The worker's own stream, still repeatable for one seed. */
  readonly random: Random;
  readonly recorder: Recorder;
  /** Set once the coordinator closes the run: what fails from then on is the shutdown's doing, not the server's. */
  closing: boolean;
}

export class User {
  readonly planned: PlannedUser;
  readonly devices: Device[] = [];
  readonly conversations: string[] = [];
  readonly #context: WorkerContext;
  readonly #mint: Mint;
  #token: Minted | null = null;
  #minting: Promise<Minted> | null = null;

  constructor(context: WorkerContext, mint: Mint, planned: PlannedUser) {
    this.#context = context;
    this.#mint = mint;
    this.planned = planned;
  }

  get id(): string {
    return this.planned.id;
  }

  /** A token valid for at least another minute; concurrent callers share one mint. */
  async token(): Promise<string> {
    if (this.#token && this.#token.expiresAt - Date.now() > 60_000) return this.#token.token;
    this.#minting ??= this.#mint(this.id)
      .then((minted) => {
        this.#context.recorder.count('tokens');
        this.#token = minted;
        return minted;
      })
      .finally(() => (this.#minting = null));
    return (await this.#minting).token;
  }

  connectedDevice(): Device | null {
    const connected = this.devices.filter((device) => device.usable);
    return connected.length === 0 ? null : this.#context.random.pick(connected);
  }
}

export class Device {
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

  constructor(context: WorkerContext, user: User, planned: PlannedDevice, slot: number) {
    const { options } = context;
    this.user = user;
    this.index = planned.index;
    this.label = `${user.id}#${slot}`;
    this.client = new ChatClient({
      url: options.url,
      token: () => user.token(),
      transports: [planned.transport],
      ...(user.planned.sticky && { sticky: user.planned.sticky }),
      ackTimeoutMs: options.ackTimeoutMs,
      autoDeliveredReceipts: options.receipts !== 'none',
    });
    this.#watchConnection(context);
  }

  /** Given up on (a getter, because phases flip it while another async path is waiting). */
  get failed(): boolean {
    return this.state === 'failed';
  }

  /** Connected, synced and not being churned: fit to act for its user. */
  get usable(): boolean {
    return this.state === 'connected' && this.client.connected && !this.churning;
  }

  #watchConnection(context: WorkerContext): void {
    const { recorder } = context;
    const client = this.client;
    client.on('disconnected', ({ reason }) => {
      this.syncing = true;
      if (this.churning || context.closing || this.state !== 'connected') return;
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
      if (!context.closing) recorder.error('sdk', error.code);
    });
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

export class Fleet {
  readonly users: User[];
  readonly devices: Device[] = [];
  readonly usersByIndex: Map<number, User>;
  readonly #context: WorkerContext;
  readonly #offlineTimers = new Map<Device, NodeJS.Timeout>();
  readonly #reconnecting = new Set<Promise<void>>();

  constructor(context: WorkerContext, mint: Mint, planned: PlannedUser[]) {
    this.#context = context;
    this.users = planned.map((user) => new User(context, mint, user));
    for (const user of this.users) {
      user.planned.devices.forEach((device, slot) => {
        const created = new Device(context, user, device, slot);
        user.devices.push(created);
        this.devices.push(created);
      });
    }
    this.usersByIndex = new Map(this.users.map((user) => [user.planned.index, user]));
  }

  /** Reconnections under way (churned devices coming back). */
  get reconnecting(): number {
    return this.#reconnecting.size;
  }

  /**
   * Connects every device, evenly spaced at `rate` from `startAt`; a fleet that falls behind catches up
   * at once and reports how late it was through `lateBy`. Whatever is not connected by `deadline` is
   * given up on.
   */
  async connect({ startAt, rate, deadline }: Extract<Command, { cmd: 'connect' }>, lateBy: (ms: number) => void): Promise<{ connected: number; failed: number }> {
    await sleepUntil(startAt);
    const started = clock();
    const attempts: Array<Promise<void>> = [];
    for (let i = 0; i < this.devices.length; i++) {
      const at = started + (i * 1000) / rate;
      const wait = at - clock();
      if (wait > 1) await sleep(wait);
      else lateBy(-wait);
      attempts.push(this.#connectDevice(this.devices[i]!, deadline));
    }
    await Promise.race([Promise.all(attempts), sleepUntil(deadline)]);
    let connected = 0;
    for (const device of this.devices) {
      if (device.state === 'connected') connected += 1;
      else this.#giveUp(device, 'setup_timeout');
    }
    return { connected, failed: this.devices.length - connected };
  }

  async #connectDevice(device: Device, deadline: number): Promise<void> {
    const { recorder } = this.#context;
    try {
      await device.user.token();
    } catch (error) {
      this.failure('token', error);
      this.#giveUp(device);
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
        this.failure('connect', error);
        const retryable = error instanceof ChatError && error.retryable;
        if (!retryable || attempt >= 3 || device.failed) break;
        const delay = backoffDelay(attempt, CONNECT_RETRY, error.retryAfterMs);
        if (clock() + delay > deadline) break;
        await sleep(delay);
      }
    }
    this.#giveUp(device);
  }

  /** Out of the run: it never connected, so nothing is expected of it. */
  #giveUp(device: Device, code?: string): void {
    if (device.failed) return;
    device.state = 'failed';
    this.#context.recorder.count('connectFailures');
    if (code !== undefined) this.#context.recorder.error('connect', code);
    device.client.close();
  }

  /** Takes a random usable device offline on purpose; it comes back after the run's `offlineMs`. */
  churnOne(): void {
    const { options, random, recorder } = this.#context;
    for (let attempt = 0; attempt < 8; attempt++) {
      const device = random.pick(this.devices);
      if (!device.usable) continue;
      device.churning = true;
      device.syncing = true;
      device.client.disconnect();
      recorder.count('churnDisconnects');
      const offline = random.int(options.offlineMs.min, options.offlineMs.max);
      this.#offlineTimers.set(
        device,
        setTimeout(() => this.#reconnect(device), offline),
      );
      return;
    }
  }

  /** Every churned device comes back now (the drain: resync must bring what they missed). */
  reconnectAll(): void {
    for (const [device, timer] of this.#offlineTimers) {
      clearTimeout(timer);
      this.#reconnect(device);
    }
  }

  #reconnect(device: Device): void {
    const { recorder } = this.#context;
    this.#offlineTimers.delete(device);
    const task = (async () => {
      for (let attempt = 1; attempt <= 5; attempt++) {
        const started = clock();
        try {
          await device.client.connect();
          recorder.record('reconnect', clock() - started);
          recorder.count('reconnects');
          break;
        } catch (error) {
          this.failure('reconnect', error);
          if (this.#context.closing) break;
          await sleep(backoffDelay(attempt, CONNECT_RETRY, error instanceof ChatError ? error.retryAfterMs : 0));
        }
      }
      device.churning = false;
      device.syncing = false;
    })();
    this.#reconnecting.add(task);
    void task.finally(() => this.#reconnecting.delete(task));
  }

  /** Counts a failed request by its code, unless the run is closing or `device` was being churned (a request cut off by our own churn is the load generator's doing, not the server's). */
  failure(operation: string, error: unknown, device?: Device): void {
    if (this.#context.closing) return;
    const code = error instanceof ChatError || error instanceof TokenError ? error.code : 'internal';
    if (code === 'disconnected' && device?.churning) return;
    this.#context.recorder.error(operation, code);
  }

  /** Cancels pending comebacks and closes every client. */
  close(): void {
    for (const timer of this.#offlineTimers.values()) clearTimeout(timer);
    for (const device of this.devices) device.client.close();
  }
}

export async function sleepUntil(at: number): Promise<void> {
  const wait = at - clock();
  if (wait > 0) await sleep(wait);
}
