import { backoffDelay, type ClientPayload, type Message } from '@chat/protocol';
import { v7 as uuidv7 } from 'uuid';
import { type ClientContext, closedError } from './context.ts';
import { ChatError } from './errors.ts';
import { Outgoing, type OutgoingMessage, type SendInput } from './outgoing.ts';
import type { ConversationState, MessageState, MessageStatus } from './state.ts';
import type { Timer } from './timers.ts';
import type { TypingTracker } from './typing.ts';

/**
 * Own messages: sending with retries until acked, then watching each one's delivered/read progress.
 * Every attempt of a message carries the same payload and `clientMsgId`, so the server stores it once.
 */
export class Outbox {
  readonly #ctx: ClientContext;
  readonly #typing: TypingTracker;
  // Messages sending, and failed ones kept for retry(), by clientMsgId.
  readonly #entries = new Map<string, Outgoing>();
  // One queue per conversation: sends go one at a time so seqs follow the order of send() calls.
  readonly #queues = new Map<string, Outgoing[]>();
  readonly #sleeps = new Set<{ timer: Timer; resolve: () => void }>();
  readonly #loadingMembers = new Set<string>();

  constructor(ctx: ClientContext, typing: TypingTracker) {
    this.#ctx = ctx;
    this.#typing = typing;
  }

  /** See `ChatClient.send`. */
  send(input: SendInput): OutgoingMessage {
    const existing = input.clientMsgId === undefined ? undefined : this.#entries.get(input.clientMsgId);
    if (existing) return existing;
    const payload: ClientPayload<'message:send'> = {
      conversationId: input.conversationId,
      clientMsgId: input.clientMsgId ?? uuidv7(),
      body: input.body,
      ...(input.kind !== undefined && { kind: input.kind }),
      ...(input.attachments !== undefined && { attachments: input.attachments }),
      ...(input.replyToId !== undefined && { replyToId: input.replyToId }),
      ...(input.threadRootId !== undefined && { threadRootId: input.threadRootId }),
    };
    const entry = new Outgoing(payload);
    this.#entries.set(entry.clientMsgId, entry);
    this.#typing.stop(entry.conversationId, { notify: false });
    this.#emitStatus(entry, 'sending');
    const invalid = this.#ctx.closed ? closedError() : this.#invalid(payload);
    if (invalid) this.#fail(entry, invalid);
    else this.#enqueue(entry);
    return entry;
  }

  /** See `ChatClient.retry`. */
  retry(clientMsgId: string): OutgoingMessage | undefined {
    const entry = this.#entries.get(clientMsgId);
    if (entry?.state !== 'failed' || this.#ctx.closed) return entry;
    entry.restart();
    this.#emitStatus(entry, 'sending');
    this.#enqueue(entry);
    return entry;
  }

  /** See `ChatClient.discard`. */
  discard(clientMsgId: string): boolean {
    const entry = this.#entries.get(clientMsgId);
    if (entry?.state !== 'failed') return false;
    return this.#entries.delete(clientMsgId);
  }

  /** Whether a message is still this outbox's (sending, or failed and kept): its `sent` is reported from its ack. */
  has(clientMsgId: string): boolean {
    return this.#entries.has(clientMsgId);
  }

  /** See `ChatClient.statusOf`. */
  statusOf(target: OutgoingMessage | Pick<Message, 'conversationId' | 'seq' | 'senderId'>): MessageStatus {
    let message: Pick<Message, 'conversationId' | 'seq' | 'senderId'>;
    if ('acked' in target) {
      if (target.message === null) return { state: target.state === 'failed' ? 'failed' : 'sending', deliveredCount: 0, readCount: 0, of: 0 };
      message = target.message;
    } else {
      message = target;
    }
    const state = this.#ctx.state.get(message.conversationId);
    return state ? state.status(message.seq, message.senderId) : { state: 'sent', deliveredCount: 0, readCount: 0, of: 0 };
  }

  /** Starts watching a stored own message (sent here or on another device of mine) for delivered/read. */
  trackOwn(state: ConversationState, message: Message, clientMsgId: string): void {
    state.trackOwn({ id: message.id, clientMsgId, seq: message.seq, state: 'sent' });
    if (state.membersKnown) this.progressOwn(state);
    else this.#loadMembers(state.id);
  }

  /** Reports the own messages of a conversation whose state moved with its watermarks. */
  progressOwn(state: ConversationState): void {
    const userId = this.#ctx.userId;
    if (userId === null) return;
    for (const { message, state: next } of state.progressOwn(userId)) {
      this.#ctx.emit('status', { conversationId: state.id, clientMsgId: message.clientMsgId, state: next, messageId: message.id, seq: message.seq, error: null });
    }
  }

  /** Wakes every back-off and fails what is still sending with `closed`. */
  close(): void {
    for (const sleep of this.#sleeps) {
      clearTimeout(sleep.timer);
      sleep.resolve();
    }
    this.#sleeps.clear();
    for (const entry of this.#entries.values()) if (entry.state === 'sending') this.#fail(entry, closedError());
  }

  #enqueue(entry: Outgoing): void {
    const queue = this.#queues.get(entry.conversationId);
    if (queue) {
      queue.push(entry);
      return;
    }
    const fresh = [entry];
    this.#queues.set(entry.conversationId, fresh);
    this.#drain(entry.conversationId, fresh).catch((thrown: unknown) => this.#ctx.emit('error', ChatError.from(thrown)));
  }

  async #drain(conversationId: string, queue: Outgoing[]): Promise<void> {
    try {
      while (queue.length > 0) {
        await this.#deliver(queue[0]!);
        queue.shift();
      }
    } finally {
      this.#queues.delete(conversationId);
    }
  }

  async #deliver(entry: Outgoing): Promise<void> {
    const ctx = this.#ctx;
    let failures = 0;
    while (entry.state === 'sending') {
      if (ctx.closed) return this.#fail(entry, closedError());
      if (!ctx.connected) {
        await ctx.whenConnected();
        continue;
      }
      entry.attempts += 1;
      try {
        const { message } = await ctx.request('message:send', entry.payload);
        return this.#markSent(entry, message);
      } catch (thrown) {
        const error = ChatError.from(thrown);
        if (ctx.closed) return this.#fail(entry, closedError());
        if (!error.retryable) return this.#fail(entry, error);
        failures += 1;
        // A dropped connection is waited out above; everything else backs off before the next try.
        if (error.code !== 'disconnected') await this.#sleep(backoffDelay(failures, ctx.config.retry, error.retryAfterMs));
      }
    }
  }

  #markSent(entry: Outgoing, message: Message): void {
    if (entry.state !== 'sending') return;
    entry.sent(message);
    this.#entries.delete(entry.clientMsgId);
    this.#emitStatus(entry, 'sent');
    this.trackOwn(this.#ctx.state.ensure(message.conversationId), message, entry.clientMsgId);
  }

  #fail(entry: Outgoing, error: ChatError): void {
    if (entry.state !== 'sending') return;
    entry.fail(error);
    this.#emitStatus(entry, 'failed');
  }

  /** Delivered/read need the full member list; fetched once for a conversation known only from messages. */
  #loadMembers(conversationId: string): void {
    if (this.#loadingMembers.has(conversationId)) return;
    this.#loadingMembers.add(conversationId);
    this.#ctx
      .request('conversation:get', { conversationId })
      .catch(() => {})
      .finally(() => this.#loadingMembers.delete(conversationId));
  }

  #emitStatus(entry: Outgoing, state: MessageState): void {
    this.#ctx.emit('status', {
      conversationId: entry.conversationId,
      clientMsgId: entry.clientMsgId,
      state,
      messageId: entry.message?.id ?? null,
      seq: entry.message?.seq ?? null,
      error: entry.error,
    });
  }

  #invalid(payload: ClientPayload<'message:send'>): ChatError | null {
    const issues = this.#ctx.config.validate?.(payload) ?? null;
    return issues === null ? null : new ChatError('validation', issues);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const sleep = {
        timer: setTimeout(() => {
          this.#sleeps.delete(sleep);
          resolve();
        }, ms),
        resolve,
      };
      this.#sleeps.add(sleep);
    });
  }
}
