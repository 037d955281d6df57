/**
 * The PostgreSQL-outage probe: one SDK client of its own (through nginx, in a direct conversation with
 * a second probe user) that sends single `message:send` requests, without the SDK's retries, while
 * PostgreSQL is down, and times every answer. Afterwards it retries each refused send with the same
 * clientMsgId, as the SDK would, until it is acked.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ChatClient, ChatError } from '@chat/client';
import type { Mint } from '@chat/loadgen/tokens';

export interface ProbeReport {
  /** Sends issued while PostgreSQL was down. */
  sent: number;
  unavailable: number;
  /** ok answers: only right for a send the database had already committed; checked against PostgreSQL. */
  ok: number;
  /** Other error codes, and `timeout` for no answer within twice the bound. */
  otherErrors: Record<string, number>;
  /** Slowest answer of any kind, ms. */
  maxMs: number;
  p50Ms: number;
  /** Refused sends retried after the outage with the same clientMsgId, and how many were acked. */
  retried: number;
  retriedAcked: number;
  /** [conversationId, seq, messageId] of every probe message acked (ok during the outage, or its retry). */
  acked: Array<[string, number, string]>;
}

export class OutageProbe {
  readonly conversationId: string;
  readonly #sender: ChatClient;
  readonly #peer: ChatClient;
  readonly #runId: string;
  #counter = 0;
  readonly #refused: Array<{ clientMsgId: string; body: string }> = [];
  readonly #acked: Array<[string, number, string]> = [];
  readonly #latencies: number[] = [];
  readonly #report = { sent: 0, unavailable: 0, ok: 0, otherErrors: {} as Record<string, number> };

  private constructor(sender: ChatClient, peer: ChatClient, conversationId: string, runId: string) {
    this.#sender = sender;
    this.#peer = peer;
    this.conversationId = conversationId;
    this.#runId = runId;
  }

  static async start(url: string, mint: Mint, runId: string): Promise<OutageProbe> {
    const client = (userId: string) => new ChatClient({ url, token: async () => (await mint(userId)).token, transports: ['websocket'], retry: { initialDelayMs: 100, maxDelayMs: 1000 } });
    const sender = client(`chaos-${runId}-probe`);
    const peer = client(`chaos-${runId}-probe-peer`);
    // The SDK reports background failures as 'error' events; the probe judges its own requests instead.
    sender.on('error', () => {});
    peer.on('error', () => {});
    await Promise.all([sender.connect(), peer.connect()]);
    const { conversation } = await sender.request('conversation:open-direct', { userId: `chaos-${runId}-probe-peer` });
    return new OutageProbe(sender, peer, conversation.id, runId);
  }

  /** Waits (bounded) until the probe's own connection is up, e.g. after a node it was on was killed. */
  async ready(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#sender.connected) {
      if (Date.now() > deadline) throw new Error(`the outage probe could not reconnect within ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  /** Sends one request every `intervalMs` for `forMs`; resolves when every one has been answered or timed out. */
  async during(forMs: number, intervalMs: number, boundMs: number): Promise<void> {
    const until = Date.now() + forMs;
    const inFlight: Array<Promise<void>> = [];
    while (Date.now() < until) {
      inFlight.push(this.#one(boundMs * 2));
      await sleep(intervalMs);
    }
    await Promise.all(inFlight);
  }

  async #one(timeoutMs: number): Promise<void> {
    const clientMsgId = `chaos-${this.#runId}-probe-${++this.#counter}`;
    const body = `probe ${this.#counter} while PostgreSQL is down`;
    this.#report.sent += 1;
    const started = performance.now();
    try {
      const { message } = await this.#sender.request('message:send', { conversationId: this.conversationId, clientMsgId, body }, { timeoutMs });
      this.#report.ok += 1;
      this.#acked.push([message.conversationId, message.seq, message.id]);
    } catch (error) {
      const code = error instanceof ChatError ? error.code : 'internal';
      if (code === 'unavailable') this.#report.unavailable += 1;
      else this.#report.otherErrors[code] = (this.#report.otherErrors[code] ?? 0) + 1;
      this.#refused.push({ clientMsgId, body });
    } finally {
      this.#latencies.push(performance.now() - started);
    }
  }

  /** Every refused send again, same clientMsgId, until acked or `timeoutMs` has passed. */
  async retryRefused(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    await Promise.all(
      this.#refused.map(async ({ clientMsgId, body }) => {
        while (Date.now() < deadline) {
          try {
            const { message } = await this.#sender.request('message:send', { conversationId: this.conversationId, clientMsgId, body });
            this.#acked.push([message.conversationId, message.seq, message.id]);
            this.#retriedAcked += 1;
            return;
          } catch {
            await sleep(250);
          }
        }
      }),
    );
  }

  #retriedAcked = 0;

  report(): ProbeReport {
    const sorted = [...this.#latencies].sort((a, b) => a - b);
    return {
      ...this.#report,
      maxMs: Math.round(sorted.at(-1) ?? 0),
      p50Ms: Math.round(sorted[Math.floor(sorted.length / 2)] ?? 0),
      retried: this.#refused.length,
      retriedAcked: this.#retriedAcked,
      acked: [...this.#acked],
    };
  }

  close(): void {
    this.#sender.close();
    this.#peer.close();
  }
}
