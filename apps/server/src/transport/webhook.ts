import { createHmac, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { backoffDelay } from '@chat/protocol';
import type { PushPublisher } from '../domain/push.ts';

export interface WebhookOptions {
  url: string;
  /** HMAC-SHA256 key; receivers recompute the signature with it. */
  secret: string;
  /** Attempts per delivery, the first included. */
  maxAttempts: number;
  /** Delay before the first retry; doubles with every further one, up to `retryMaxMs` (each with jitter: 50-100%). */
  retryBaseMs: number;
  retryMaxMs: number;
  /** One attempt's deadline, connection and response included. */
  timeoutMs: number;
  /** Deliveries in flight at once. @default 16 */
  concurrency?: number;
  /** Deliveries waiting for a slot; beyond this the oldest waiting one is dropped. @default 10000 */
  maxQueue?: number;
}

export type WebhookOutcome = 'delivered' | 'retried' | 'failed' | 'dropped';

export interface WebhookHooks {
  onOutcome?(outcome: WebhookOutcome): void;
  onError?(error: unknown, context: { deliveryId: string; attempt: number; final: boolean }): void;
}

/** Header names of a delivery. */
export const webhookHeaders = {
  /** Same on every attempt of one delivery: receivers deduplicate on it. */
  id: 'x-chat-webhook-id',
  /** Unix seconds of this attempt; part of the signed text, so a captured request cannot be replayed later. */
  timestamp: 'x-chat-webhook-timestamp',
  /** `v1=` + hex HMAC-SHA256 of `${timestamp}.${body}` with the shared secret. */
  signature: 'x-chat-webhook-signature',
} as const;

/** The signature a receiver must find in {@link webhookHeaders.signature}. */
export function signWebhook(secret: string, timestamp: string, body: string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * The PushPublisher over HTTP: POSTs events (notifications and calls for users with no connected
 * device) to an operator's endpoint, which can turn them into push notifications. Entirely in the
 * background: `send` queues and returns at once, so a slow or failing receiver never delays a
 * request. Each delivery is retried on network errors, timeouts, 429 and 5xx with capped
 * exponential back-off; other 4xx answers are final.
 *
 * At most once per node and best effort: a queue that is full drops its oldest entry, and what is
 * queued when the node stops is dropped (the notifications themselves are in PostgreSQL).
 * Written by hand: a loop around fetch; the retry libraries on npm add little over these lines.
 */
export class WebhookSender implements PushPublisher {
  readonly #options: Required<WebhookOptions>;
  readonly #hooks: WebhookHooks;
  readonly #waiting: Array<{ id: string; body: string }> = [];
  readonly #inFlight = new Set<Promise<void>>();
  readonly #stop = new AbortController();

  constructor(options: WebhookOptions, hooks: WebhookHooks = {}) {
    this.#options = { concurrency: 16, maxQueue: 10_000, ...options };
    this.#hooks = hooks;
  }

  /** Queues one event for delivery. Never throws, never waits. */
  send(event: object): void {
    if (this.#stop.signal.aborted) return;
    this.#waiting.push({ id: randomUUID(), body: JSON.stringify(event) });
    if (this.#waiting.length > this.#options.maxQueue) {
      this.#waiting.shift();
      this.#hooks.onOutcome?.('dropped');
    }
    this.#pump();
  }

  /** Stops retrying and waits for attempts in flight (each bounded by `timeoutMs`). */
  async close(): Promise<void> {
    this.#stop.abort();
    for (let i = 0; i < this.#waiting.length; i++) this.#hooks.onOutcome?.('dropped');
    this.#waiting.length = 0;
    await Promise.allSettled([...this.#inFlight]);
  }

  #pump(): void {
    while (this.#inFlight.size < this.#options.concurrency && this.#waiting.length > 0) {
      const delivery = this.#waiting.shift()!;
      const running: Promise<void> = this.#deliver(delivery.id, delivery.body).finally(() => {
        this.#inFlight.delete(running);
        this.#pump();
      });
      this.#inFlight.add(running);
    }
  }

  async #deliver(id: string, body: string): Promise<void> {
    const { maxAttempts, retryBaseMs, retryMaxMs } = this.#options;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#attempt(id, body);
        return this.#hooks.onOutcome?.('delivered');
      } catch (error) {
        if (this.#stop.signal.aborted) return this.#hooks.onOutcome?.('dropped');
        const final = attempt >= maxAttempts || error instanceof PermanentFailure;
        this.#hooks.onError?.(error, { deliveryId: id, attempt, final });
        if (final) return this.#hooks.onOutcome?.('failed');
      }
      this.#hooks.onOutcome?.('retried');
      const delay = backoffDelay(attempt, { initialMs: retryBaseMs, maxMs: retryMaxMs });
      try {
        await sleep(delay, undefined, { signal: this.#stop.signal });
      } catch {
        return this.#hooks.onOutcome?.('dropped');
      }
    }
  }

  /** Resolves when the receiver answered 2xx; throws otherwise (PermanentFailure for a refusal not worth retrying). */
  async #attempt(id: string, body: string): Promise<void> {
    const timestamp = String(Math.floor(Date.now() / 1000));
    const response = await fetch(this.#options.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        [webhookHeaders.id]: id,
        [webhookHeaders.timestamp]: timestamp,
        [webhookHeaders.signature]: signWebhook(this.#options.secret, timestamp, body),
      },
      body,
      redirect: 'manual',
      signal: AbortSignal.any([AbortSignal.timeout(this.#options.timeoutMs), this.#stop.signal]),
    });
    await response.body?.cancel().catch(() => {});
    if (response.ok) return;
    if (response.status === 429 || response.status >= 500) throw new Error(`webhook answered ${response.status}`);
    throw new PermanentFailure(`webhook answered ${response.status}`);
  }
}

class PermanentFailure extends Error {}
