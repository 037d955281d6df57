import type { Conversation, Message, Receipt } from '@chat/protocol';

/**
 * How long a live event is trusted to have arrived in order. Fan-out from different nodes crosses
 * Redis, so version 5 (written on this node) can reach us before version 4 (written on another). A
 * version only becomes the resync cursor once it has been held this long before the connection
 * dropped; anything newer is asked for again and deduplicated.
 */
export const SETTLE_MS = 2000;
// Past this many unsettled live versions in one conversation the oldest settle early, to stay bounded.
const MAX_UNSETTLED = 256;
// Most new messages held behind a missing seq in one conversation.
const MAX_WAITING = 1000;

/** A message's delivery state as seen from its sender's side. */
export type MessageState = 'sending' | 'sent' | 'delivered' | 'read' | 'failed';

/** Delivered/read progress of one message over the other members of its conversation. */
export interface MessageStatus {
  state: MessageState;
  /** Members other than the sender whose delivered watermark reached the message. */
  deliveredCount: number;
  readCount: number;
  /** Members other than the sender (0 while the member list is unknown). */
  of: number;
}

/** How an incoming message relates to what the client already held. */
export type Applied = 'new' | 'updated' | 'stale';

/** Where a message came from: a `message:new` push or send ack, an update push, or a sync answer. */
export type Source = 'new' | 'updated' | 'sync';

interface Seen {
  seq: number;
  /** `Infinity` once hidden for this user: no later version can show it again. */
  version: number;
}

interface Watermarks {
  delivered: number;
  read: number;
}

/** An own message whose delivered/read progress is still being watched. */
export interface OwnMessage {
  id: string;
  clientMsgId: string;
  seq: number;
  state: 'sent' | 'delivered';
}

/**
 * What the client knows about one conversation: O(tracked messages + members), never the messages
 * themselves. Transport-free so its rules can be tested on their own.
 */
export class ConversationState {
  readonly id: string;
  /** Every change at or below this version is held: the `since` of the next resync. */
  cursor = 0;
  /**
   * Messages at or below this seq are history the client was not shown (before its baseline, or
   * evicted from `seen`): one arriving unknown through sync is an update of an old message, not a new one.
   */
  floorSeq = 0;
  /** Whether `watermarks` lists exactly the current members (from a conversation object). */
  membersKnown = false;
  readonly watermarks = new Map<string, Watermarks>();
  /** Own messages sent and not yet read by everyone, by ascending seq. */
  readonly own: OwnMessage[] = [];

  /**
   * Every message up to this seq has been reported (or is history the client was not shown); null
   * until the conversation's position is known (a conversation object, a baseline or a first message).
   */
  reportedSeq: number | null = null;

  readonly #maxTracked: number;
  readonly #seen = new Map<string, Seen>();
  // New messages that arrived ahead of a missing seq, held until the gap fills (see admit()).
  readonly #waiting = new Map<number, Message>();
  // Live versions not settled yet, as [version, receivedAt] pairs in arrival order.
  #unsettled: number[] = [];

  constructor(id: string, maxTracked: number) {
    this.id = id;
    this.#maxTracked = maxTracked;
  }

  /**
   * Deduplicates by id and version: `new` the first time an id is seen (unless sync brings an unknown
   * message from below `floorSeq`), `updated` when a higher version arrives, `stale` otherwise (the same
   * version again, an older one, or anything about a message hidden for this user).
   */
  apply(message: Message, source: Source): Applied {
    const seen = this.#seen.get(message.id);
    if (seen) {
      if (message.version <= seen.version) return 'stale';
      seen.version = message.version;
      return 'updated';
    }
    this.#remember(message.id, message.seq, message.version);
    if (source === 'new' || (source === 'sync' && message.seq > this.floorSeq)) return 'new';
    return 'updated';
  }

  /**
   * Puts new messages in seq order. Fan-out from different nodes crosses Redis on different
   * connections, so seq n+1 (written on one node) can reach a device before seq n (written on
   * another). A message right after `reportedSeq` (or at or below it: history, or a position not known
   * yet) is reported at once, with whatever was waiting behind it; one further ahead waits for the
   * gap to fill, live or through {@link gap} and a history fetch. Returns what to report, in order.
   */
  admit(message: Message): Message[] {
    if (this.reportedSeq !== null && message.seq > this.reportedSeq + 1) {
      this.#waiting.set(message.seq, message);
      // Bounded: past this many held messages the wait ends and they are reported in order.
      return this.#waiting.size > MAX_WAITING ? this.release(Math.max(...this.#waiting.keys())) : [];
    }
    this.reportedSeq = Math.max(this.reportedSeq ?? 0, message.seq);
    return [message, ...this.#drain()];
  }

  /**
   * Everything up to `seq` is known to have arrived (a complete sync or history answer): a gap that
   * is still open belongs to messages this user will never see (hidden for them), so what waits up
   * to there is reported now, in order.
   */
  release(seq: number): Message[] {
    if (this.reportedSeq === null || seq <= this.reportedSeq) {
      this.reportedSeq = Math.max(this.reportedSeq ?? 0, seq);
      return this.#drain();
    }
    const released = [...this.#waiting.values()].filter((message) => message.seq <= seq).sort((a, b) => a.seq - b.seq);
    for (const message of released) this.#waiting.delete(message.seq);
    this.reportedSeq = seq;
    return [...released, ...this.#drain()];
  }

  /** The open gap: messages after `after` are missing while later ones (up to `upTo`) wait. */
  gap(): { after: number; upTo: number } | null {
    if (this.#waiting.size === 0 || this.reportedSeq === null) return null;
    return { after: this.reportedSeq, upTo: Math.max(...this.#waiting.keys()) };
  }

  #drain(): Message[] {
    const out: Message[] = [];
    for (let next = this.#waiting.get(this.reportedSeq! + 1); next; next = this.#waiting.get(this.reportedSeq! + 1)) {
      this.#waiting.delete(next.seq);
      this.reportedSeq = next.seq;
      out.push(next);
    }
    return out;
  }

  /** Marks a message hidden for this user; true the first time only. */
  hide(messageId: string): boolean {
    const seen = this.#seen.get(messageId);
    if (seen?.version === Infinity) return false;
    if (seen) seen.version = Infinity;
    else this.#remember(messageId, 0, Infinity);
    return true;
  }

  /** A version that reached us live (push or ack): it settles later, see {@link SETTLE_MS}. */
  noteLive(version: number, at: number): void {
    if (version <= this.cursor) return;
    this.#unsettled.push(version, at);
    this.settle(at - SETTLE_MS);
    if (this.#unsettled.length > MAX_UNSETTLED * 2) this.#settleOldest();
  }

  /** Moves into the cursor every live version received at or before `receivedBy`. */
  settle(receivedBy: number): void {
    let drop = 0;
    while (drop < this.#unsettled.length && this.#unsettled[drop + 1]! <= receivedBy) {
      this.cursor = Math.max(this.cursor, this.#unsettled[drop]!);
      drop += 2;
    }
    if (drop > 0) this.#unsettled.splice(0, drop);
  }

  /**
   * A sync answer is complete up to `version`: every change at or below it has been received (a
   * `hasMore: false` conversation's version, or the highest message version of a partial page).
   */
  advance(version: number): void {
    if (version <= this.cursor) return;
    this.cursor = version;
    const kept: number[] = [];
    for (let i = 0; i < this.#unsettled.length; i += 2) {
      if (this.#unsettled[i]! > version) kept.push(this.#unsettled[i]!, this.#unsettled[i + 1]!);
    }
    this.#unsettled = kept;
  }

  /** Starts from a known point: everything up to `version` / `lastSeq` counts as history. */
  baseline(version: number, lastSeq: number): void {
    this.advance(version);
    this.floorSeq = Math.max(this.floorSeq, lastSeq);
    this.reportedSeq = Math.max(this.reportedSeq ?? 0, lastSeq);
  }

  /** Max-merges a watermark pair; returns the merged receipt if it moved. */
  mergeReceipt(userId: string, delivered: number, read: number): Receipt | null {
    const current = this.watermarks.get(userId);
    if (current && current.delivered >= delivered && current.read >= read) return null;
    const next = { delivered: Math.max(current?.delivered ?? 0, delivered), read: Math.max(current?.read ?? 0, read) };
    this.watermarks.set(userId, next);
    return { conversationId: this.id, userId, lastDeliveredSeq: next.delivered, lastReadSeq: next.read };
  }

  /** Takes the member list (and their watermarks) of a conversation object; returns the receipts that moved. */
  mergeMembers(conversation: Conversation): Receipt[] {
    const current = new Set<string>();
    const moved: Receipt[] = [];
    for (const member of conversation.members) {
      current.add(member.userId);
      const receipt = this.mergeReceipt(member.userId, member.lastDeliveredSeq, member.lastReadSeq);
      if (receipt) moved.push(receipt);
    }
    for (const userId of this.watermarks.keys()) if (!current.has(userId)) this.watermarks.delete(userId);
    this.membersKnown = true;
    return moved;
  }

  /** Delivered/read progress of a message with this seq, sent by `senderId`. O(members). */
  status(seq: number, senderId: string): MessageStatus {
    let of = 0;
    let deliveredCount = 0;
    let readCount = 0;
    if (this.membersKnown) {
      for (const [userId, marks] of this.watermarks) {
        if (userId === senderId) continue;
        of += 1;
        if (marks.delivered >= seq) deliveredCount += 1;
        if (marks.read >= seq) readCount += 1;
      }
    }
    const state = of > 0 && readCount === of ? 'read' : of > 0 && deliveredCount === of ? 'delivered' : 'sent';
    return { state, deliveredCount, readCount, of };
  }

  /** Starts watching an own message's progress (kept sorted by seq, bounded like `seen`). */
  trackOwn(entry: OwnMessage): void {
    let index = this.own.length;
    while (index > 0 && this.own[index - 1]!.seq > entry.seq) index -= 1;
    if (this.own[index - 1]?.seq === entry.seq) return;
    this.own.splice(index, 0, entry);
    if (this.own.length > this.#maxTracked) this.own.shift();
  }

  /**
   * Own messages whose state moved given the current watermarks of everyone but `me`. A message is
   * delivered (read) once every other member's delivered (read) watermark reached its seq; read ones
   * stop being watched. Walks only the prefix that changed.
   */
  progressOwn(me: string): Array<{ message: OwnMessage; state: 'delivered' | 'read' }> {
    if (!this.membersKnown || this.own.length === 0) return [];
    let minDelivered = Infinity;
    let minRead = Infinity;
    for (const [userId, marks] of this.watermarks) {
      if (userId === me) continue;
      minDelivered = Math.min(minDelivered, marks.delivered);
      minRead = Math.min(minRead, marks.read);
    }
    if (minDelivered === Infinity) return [];
    const changes: Array<{ message: OwnMessage; state: 'delivered' | 'read' }> = [];
    let read = 0;
    while (read < this.own.length && this.own[read]!.seq <= minRead) changes.push({ message: this.own[read++]!, state: 'read' });
    this.own.splice(0, read);
    for (const message of this.own) {
      if (message.seq > minDelivered) break;
      if (message.state === 'delivered') continue;
      message.state = 'delivered';
      changes.push({ message, state: 'delivered' });
    }
    return changes;
  }

  #remember(id: string, seq: number, version: number): void {
    this.#seen.set(id, { seq, version });
    if (this.#seen.size <= this.#maxTracked) return;
    // Insertion order is roughly seq order, so the first entry is an old message.
    const [oldestId, oldest] = this.#seen.entries().next().value!;
    this.#seen.delete(oldestId);
    this.floorSeq = Math.max(this.floorSeq, oldest.seq);
  }

  #settleOldest(): void {
    this.cursor = Math.max(this.cursor, this.#unsettled[0]!);
    this.#unsettled.splice(0, 2);
  }
}

/** All conversations the client knows, created on first mention. */
export class ClientState {
  readonly conversations = new Map<string, ConversationState>();
  readonly #maxTracked: number;

  constructor(maxTracked: number) {
    this.#maxTracked = maxTracked;
  }

  get(conversationId: string): ConversationState | undefined {
    return this.conversations.get(conversationId);
  }

  ensure(conversationId: string): ConversationState {
    let state = this.conversations.get(conversationId);
    if (!state) {
      state = new ConversationState(conversationId, this.#maxTracked);
      this.conversations.set(conversationId, state);
    }
    return state;
  }

  remove(conversationId: string): boolean {
    return this.conversations.delete(conversationId);
  }

  /** The resync `since` of every known conversation, settling live versions received by `receivedBy`. */
  since(receivedBy: number): Array<{ conversationId: string; version: number }> {
    const since: Array<{ conversationId: string; version: number }> = [];
    for (const state of this.conversations.values()) {
      state.settle(receivedBy);
      since.push({ conversationId: state.id, version: state.cursor });
    }
    return since;
  }
}
