import type { Receipt } from '@chat/protocol';
import type { ClientContext } from './context.ts';
import { ChatError } from './errors.ts';
import type { ConversationState } from './state.ts';
import type { Timer } from './timers.ts';
import { TypingTracker } from './typing.ts';

/**
 * This device's signals to the other members: automatic delivered receipts, coalesced per
 * conversation, and typing indicators (both directions, in {@link typing}).
 */
export class Receipts {
  readonly typing: TypingTracker;
  readonly #ctx: ClientContext;
  // conversationId → the highest seq to report delivered with the next flush.
  readonly #pending = new Map<string, number>();
  #flushTimer: Timer | null = null;

  constructor(ctx: ClientContext) {
    this.#ctx = ctx;
    this.typing = new TypingTracker(
      ctx.config.typing,
      (conversationId, typing) => this.#sendTyping(conversationId, typing),
      (event) => ctx.emit('typing', event),
    );
  }

  /** Current watermarks of the known members of a conversation. */
  watermarks(conversationId: string): Receipt[] {
    const state = this.#ctx.state.get(conversationId);
    if (!state) return [];
    return [...state.watermarks].map(([userId, marks]) => ({ conversationId, userId, lastDeliveredSeq: marks.delivered, lastReadSeq: marks.read }));
  }

  /** A message from another member arrived: report it delivered with the next batch, unless already covered. */
  queueDelivered(state: ConversationState, seq: number): void {
    const userId = this.#ctx.userId;
    const mine = userId === null ? undefined : state.watermarks.get(userId);
    if ((mine?.delivered ?? 0) >= seq || (this.#pending.get(state.id) ?? 0) >= seq) return;
    this.#pending.set(state.id, seq);
    this.#scheduleFlush(this.#ctx.config.receiptDelayMs);
  }

  /** A read mark up to `seq` is being sent: it implies delivered, so a pending delivered one at or below it is dropped. */
  markingRead(conversationId: string, seq: number): void {
    const pending = this.#pending.get(conversationId);
    if (pending !== undefined && pending <= seq) this.#pending.delete(conversationId);
  }

  /** Sends what queued while offline; called once a connection is set up. */
  flushPending(): void {
    if (this.#pending.size > 0) this.#scheduleFlush(0);
  }

  forget(conversationId: string): void {
    this.#pending.delete(conversationId);
  }

  close(): void {
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    this.#flushTimer = null;
    this.typing.close();
    this.#pending.clear();
  }

  #scheduleFlush(delayMs: number): void {
    if (this.#flushTimer || this.#ctx.closed) return;
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = null;
      this.#flush();
    }, delayMs);
  }

  /** One `receipt:mark` per conversation with the highest seq seen; failed marks go back into the batch. */
  #flush(): void {
    // Offline: kept until the connect setup flushes.
    if (!this.#ctx.connected) return;
    const batch = [...this.#pending];
    this.#pending.clear();
    for (const [conversationId, seq] of batch) {
      this.#ctx.request('receipt:mark', { conversationId, delivered: seq }).catch((thrown: unknown) => {
        const error = ChatError.from(thrown);
        if (!error.retryable || this.#ctx.closed) return;
        if ((this.#pending.get(conversationId) ?? 0) < seq) this.#pending.set(conversationId, seq);
        this.#scheduleFlush(Math.max(this.#ctx.config.receiptDelayMs, error.retryAfterMs ?? 0));
      });
    }
  }

  #sendTyping(conversationId: string, typing: boolean): void {
    // Typing is ephemeral: offline keystrokes are not worth replaying after a reconnect.
    if (!this.#ctx.connected) return;
    this.#ctx.request('typing:set', { conversationId, typing }).catch((thrown: unknown) => {
      const error = ChatError.from(thrown);
      if (!error.retryable) this.#ctx.emit('error', error);
    });
  }
}
