import type { ClientEventResults, Conversation, Message, Receipt } from '@chat/protocol';
import type { Changes } from './changes.ts';
import type { ClientContext } from './context.ts';
import { ChatError } from './errors.ts';
import type { Timer } from './timers.ts';

const SYNC_SINCE_MAX = 10_000;
const LIST_PAGE = 100;
/** How long a new message waits for a missing earlier one before the gap is fetched. */
export const GAP_WAIT_MS = 500;

/**
 * Catching up with the server: the baseline of a fresh client, the resync after a reconnect, and
 * the history fetch that fills a gap a lost push left. Everything fetched is applied through
 * {@link Changes}, the same dedupe path as pushes.
 */
export class Sync {
  readonly #ctx: ClientContext;
  readonly #changes: Changes;
  #gapTimer: Timer | null = null;

  constructor(ctx: ClientContext, changes: Changes) {
    this.#ctx = ctx;
    this.#changes = changes;
  }

  /** First connect without state: every conversation starts at its current version, history is history. */
  async baseline(): Promise<void> {
    for (const archived of [false, true]) {
      let cursor: string | null = null;
      do {
        const page: ClientEventResults['conversation:list'] = await this.#ctx.request('conversation:list', { ...(cursor !== null && { cursor }), limit: LIST_PAGE, archived });
        for (const conversation of page.conversations) {
          this.#ctx.state.ensure(conversation.id).baseline(conversation.version, conversation.lastSeq);
          this.#changes.applyConversation(conversation, true);
        }
        cursor = page.nextCursor;
      } while (cursor !== null);
    }
  }

  /**
   * Asks for everything changed after the cursors, paging until no conversation has more, then
   * applies it through the same dedupe path as pushes: per conversation, messages in seq order (so new
   * ones are reported in order even when an edit moved one to a later page), then hidden ids, then the
   * cursor moves to what the answer proved complete. On failure, what arrived is still applied.
   */
  async resync(receivedBy: number): Promise<void> {
    const ctx = this.#ctx;
    const since = new Map(ctx.state.since(receivedBy).map((entry) => [entry.conversationId, entry.version]));
    const collected = new Map<string, { conversation: Conversation; messages: Map<string, Message>; hidden: Set<string>; upTo: number }>();
    const removed = new Set<string>();
    let receipts: Receipt[] = [];
    let archived: string[] | null = null;
    let failure: unknown = null;
    try {
      for (let more = true; more; ) {
        more = false;
        const sinceList = [...since].slice(0, SYNC_SINCE_MAX).map(([conversationId, version]) => ({ conversationId, version }));
        const answer = await ctx.request('sync:changes', { since: sinceList });
        receipts = answer.receipts;
        archived = answer.archivedConversationIds;
        for (const id of answer.removedConversationIds) removed.add(id);
        for (const changes of answer.conversations) {
          const id = changes.conversation.id;
          let entry = collected.get(id);
          if (!entry) {
            entry = { conversation: changes.conversation, messages: new Map(), hidden: new Set(), upTo: 0 };
            collected.set(id, entry);
          }
          entry.conversation = changes.conversation;
          let highest = 0;
          for (const message of changes.messages) {
            highest = Math.max(highest, message.version);
            const kept = entry.messages.get(message.id);
            if (!kept || kept.version < message.version) entry.messages.set(message.id, message);
          }
          for (const messageId of changes.hiddenMessageIds) entry.hidden.add(messageId);
          // hasMore: complete up to the highest version of this page (the next page starts there);
          // otherwise complete up to the conversation's version as the server read it.
          entry.upTo = Math.max(entry.upTo, changes.hasMore ? highest : changes.conversation.version);
          since.set(id, entry.upTo);
          if (changes.hasMore) more = true;
        }
      }
    } catch (thrown) {
      failure = thrown;
    }

    for (const [conversationId, entry] of collected) {
      if (removed.has(conversationId)) continue;
      this.#changes.applyConversation(entry.conversation, true);
      const messages = [...entry.messages.values()].sort((a, b) => a.seq - b.seq);
      for (const message of messages) this.#changes.applyMessage(message, 'sync');
      for (const messageId of entry.hidden) this.#changes.applyHidden(conversationId, messageId);
      const state = ctx.state.get(conversationId);
      state?.advance(entry.upTo);
      // Complete up to the conversation's lastSeq: what still waits behind a gap there is released.
      if (state && failure === null) for (const message of state.release(entry.conversation.lastSeq)) this.#changes.reportNew(state, message);
    }
    for (const receipt of receipts) this.#changes.applyReceipt(receipt);
    if (archived !== null) {
      const now = new Set<string>(archived);
      for (const conversationId of [...ctx.archived]) if (!now.has(conversationId)) this.#changes.setArchived(conversationId, false);
      for (const conversationId of now) this.#changes.setArchived(conversationId, true);
    }
    for (const conversationId of removed) this.#changes.removeConversation(conversationId);
    if (failure !== null) throw failure;
  }

  /**
   * A message that overtook another on its way across nodes is normally followed by it within
   * milliseconds. One still missing after GAP_WAIT_MS was lost on the way (a publish during a Redis
   * outage, say): the conversation's history after the last reported seq is fetched, which fills the
   * gap, and what waited is released in order.
   */
  scheduleGapFill(): void {
    if (this.#gapTimer || this.#ctx.closed) return;
    this.#gapTimer = setTimeout(() => {
      this.#gapTimer = null;
      void this.#fillGaps();
    }, GAP_WAIT_MS);
  }

  /** Schedules a gap fill if any conversation has an open gap (after a connection's set-up). */
  fillGapsSoon(): void {
    if (this.#hasGaps()) this.scheduleGapFill();
  }

  close(): void {
    if (this.#gapTimer) clearTimeout(this.#gapTimer);
    this.#gapTimer = null;
  }

  async #fillGaps(): Promise<void> {
    // Offline: the resync after the reconnect fills (and releases) the gaps.
    if (!this.#ctx.connected || this.#changes.holding) return;
    for (const state of this.#ctx.state.conversations.values()) {
      const gap = state.gap();
      if (!gap) continue;
      try {
        let after = gap.after;
        for (let more = true; more && after < gap.upTo; ) {
          const page = await this.#ctx.request('history:fetch', { conversationId: state.id, after, limit: LIST_PAGE });
          for (const message of page.messages) this.#changes.applyMessage(message, 'sync');
          after = Math.max(after, ...page.messages.map((message) => message.seq));
          more = page.hasMore;
        }
        for (const message of state.release(gap.upTo)) this.#changes.reportNew(state, message);
      } catch (thrown) {
        const error = ChatError.from(thrown);
        if (!error.retryable) this.#ctx.emit('error', error);
      }
    }
    this.fillGapsSoon();
  }

  #hasGaps(): boolean {
    for (const state of this.#ctx.state.conversations.values()) if (state.gap()) return true;
    return false;
  }
}
