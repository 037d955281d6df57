import { randomUUID } from 'node:crypto';
import type { Cluster } from 'ioredis';
import { AppError } from '../errors.ts';
import { hashTag, isCluster, type RedisClient } from '../state/redis-client.ts';

/** What one node does with a control request; what it returns is its answer (JSON-serialisable). */
export type ControlHandler = (payload: unknown) => unknown;

/** The answers to one control request. */
export interface ControlOutcome<T> {
  /** One per node that answered, this node included. */
  answers: Array<{ nodeId: string; result: T }>;
  /** Nodes whose handler threw. */
  failed: string[];
  /** How many nodes received the request but did not answer within the timeout. */
  missing: number;
}

/**
 * Requests every node answers: operators' actions that need each node's local state (its sockets) or
 * must reach each node before the next step (a revocation). Rare by nature, so a request goes to
 * every node; never used on the message path.
 */
export interface ClusterControl {
  /** Registers this node's handler for `kind`. */
  handle(kind: string, handler: ControlHandler): void;
  /**
   * Sends `payload` to every node (this one included) and resolves with the answers once all nodes
   * that received it answered, or when `timeoutMs` passed. Rejects `unavailable` when Redis cannot
   * take the request.
   */
  request<T>(kind: string, payload: unknown, timeoutMs?: number): Promise<ControlOutcome<T>>;
  /** Settles once this node receives requests (at once without Redis). */
  readonly subscribed: Promise<void>;
  readonly listening: boolean;
  close(): Promise<void>;
}

const DEFAULT_TIMEOUT_MS = 2000;

/** Single-node mode: this node is the cluster. */
export class LocalControl implements ClusterControl {
  readonly #handlers = new Map<string, ControlHandler>();
  readonly #nodeId: string;
  readonly subscribed = Promise.resolve();
  readonly listening = true;

  constructor(nodeId: string) {
    this.#nodeId = nodeId;
  }

  handle(kind: string, handler: ControlHandler): void {
    this.#handlers.set(kind, handler);
  }

  async request<T>(kind: string, payload: unknown): Promise<ControlOutcome<T>> {
    const handler = this.#handlers.get(kind);
    if (!handler) return { answers: [], failed: [this.#nodeId], missing: 0 };
    try {
      return { answers: [{ nodeId: this.#nodeId, result: (await handler(payload)) as T }], failed: [], missing: 0 };
    } catch {
      return { answers: [], failed: [this.#nodeId], missing: 0 };
    }
  }

  async close(): Promise<void> {}
}

interface Pending {
  answers: Array<{ nodeId: string; result: unknown }>;
  failed: string[];
  expected: number | null;
  done: () => void;
}

/**
 * Over Redis pub/sub: every node subscribes to one control channel and to its own reply channel. A
 * publish answers how many subscribers received it (on a Redis Cluster: sharded pub/sub, where every
 * node subscribes on the one shard owning the channel, so SPUBLISH counts them all), which is how
 * many answers to wait for: a request never waits out its timeout because of a node that left.
 */
export class RedisControl implements ClusterControl {
  readonly #pub: RedisClient;
  readonly #sub: RedisClient;
  readonly #nodeId: string;
  readonly #channel: string;
  readonly #replyPrefix: string;
  readonly #replyChannel: string;
  readonly #handlers = new Map<string, ControlHandler>();
  readonly #pending = new Map<string, Pending>();
  readonly #onError: (error: unknown) => void;
  readonly subscribed: Promise<void>;
  #confirmed = false;

  constructor(pub: RedisClient, sub: RedisClient, options: { channelPrefix: string; nodeId: string; onError: (error: unknown) => void }) {
    this.#pub = pub;
    this.#sub = sub;
    this.#nodeId = options.nodeId;
    this.#channel = `${options.channelPrefix}control:${hashTag('all')}`;
    this.#replyPrefix = `${options.channelPrefix}control-reply:`;
    this.#replyChannel = this.#replyPrefix + hashTag(options.nodeId);
    this.#onError = options.onError;
    const sharded = isCluster(sub);
    sub.on(sharded ? 'smessage' : 'message', (channel: string, text: string) => {
      if (channel === this.#channel) void this.#serve(text);
      else if (channel === this.#replyChannel) this.#collect(text);
    });
    const channels = [this.#channel, this.#replyChannel];
    const subscribing = sharded ? Promise.all(channels.map((channel) => (sub as Cluster).ssubscribe(channel))) : sub.subscribe(...channels);
    this.subscribed = subscribing.then(
      () => {
        this.#confirmed = true;
      },
      (error: unknown) => {
        this.#onError(error);
        // Never settles: callers bound their wait.
        return new Promise<void>(() => {});
      },
    );
  }

  get listening(): boolean {
    return this.#confirmed && this.#sub.status === 'ready';
  }

  handle(kind: string, handler: ControlHandler): void {
    this.#handlers.set(kind, handler);
  }

  async request<T>(kind: string, payload: unknown, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<ControlOutcome<T>> {
    const id = randomUUID();
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    const pending: Pending = { answers: [], failed: [], expected: null, done };
    this.#pending.set(id, pending);
    const timer = setTimeout(done, timeoutMs);
    try {
      const message = JSON.stringify({ id, from: this.#nodeId, kind, payload });
      let receivers: number;
      try {
        receivers = Number(isCluster(this.#pub) ? await this.#pub.spublish(this.#channel, message) : await this.#pub.publish(this.#channel, message));
      } catch (error) {
        throw new AppError('unavailable', `The cluster cannot be reached: ${(error as Error).message}`);
      }
      pending.expected = receivers;
      if (pending.answers.length + pending.failed.length >= receivers) done();
      await finished;
      const answered = pending.answers.length + pending.failed.length;
      return { answers: pending.answers as ControlOutcome<T>['answers'], failed: pending.failed, missing: Math.max(0, receivers - answered) };
    } finally {
      clearTimeout(timer);
      this.#pending.delete(id);
    }
  }

  async #serve(text: string): Promise<void> {
    let request: { id: string; from: string; kind: string; payload: unknown };
    try {
      request = JSON.parse(text) as typeof request;
      if (typeof request.id !== 'string' || typeof request.from !== 'string' || typeof request.kind !== 'string') throw new Error('malformed control request');
    } catch (error) {
      return this.#onError(error);
    }
    const handler = this.#handlers.get(request.kind);
    let reply: { id: string; nodeId: string; result?: unknown; failed?: true };
    try {
      if (!handler) throw new Error(`no handler for ${request.kind}`);
      reply = { id: request.id, nodeId: this.#nodeId, result: (await handler(request.payload)) ?? null };
    } catch (error) {
      this.#onError(error);
      reply = { id: request.id, nodeId: this.#nodeId, failed: true };
    }
    const channel = this.#replyPrefix + hashTag(request.from);
    const message = JSON.stringify(reply);
    await (isCluster(this.#pub) ? this.#pub.spublish(channel, message) : this.#pub.publish(channel, message)).catch(this.#onError);
  }

  #collect(text: string): void {
    let reply: { id: string; nodeId: string; result?: unknown; failed?: true };
    try {
      reply = JSON.parse(text) as typeof reply;
    } catch (error) {
      this.#onError(error);
      return;
    }
    const pending = this.#pending.get(reply.id);
    if (!pending) return;
    if (reply.failed) pending.failed.push(reply.nodeId);
    else pending.answers.push({ nodeId: reply.nodeId, result: reply.result });
    if (pending.expected !== null && pending.answers.length + pending.failed.length >= pending.expected) pending.done();
  }

  async close(): Promise<void> {
    for (const pending of this.#pending.values()) pending.done();
  }
}
