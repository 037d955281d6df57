import type { Timer } from './timers.ts';

/** A member started or stopped typing in a conversation. */
export interface TypingEvent {
  conversationId: string;
  userId: string;
  typing: boolean;
}

export interface TypingTimings {
  /** Least time between two `typing: true` sent for one conversation while typing continues. */
  intervalMs: number;
  /** Quiet time after the last keystroke before `typing: false` is sent. */
  idleMs: number;
  /** How long another member's `typing: true` holds without news (the server's typing TTL). */
  remoteTtlMs: number;
}

interface Mine {
  sentAt: number;
  lastKeyAt: number;
  timer: Timer;
}

/**
 * Both directions of typing indicators with at most one timer per conversation being typed in and one
 * for all remote indicators, however many keystrokes or members.
 */
export class TypingTracker {
  readonly #timings: TypingTimings;
  readonly #send: (conversationId: string, typing: boolean) => void;
  readonly #report: (event: TypingEvent) => void;
  readonly #mine = new Map<string, Mine>();
  // conversationId → userId → expiry time.
  readonly #others = new Map<string, Map<string, number>>();
  #sweep: Timer | null = null;

  constructor(timings: TypingTimings, send: (conversationId: string, typing: boolean) => void, report: (event: TypingEvent) => void) {
    this.#timings = timings;
    this.#send = send;
    this.#report = report;
  }

  /** A keystroke in a conversation: `typing: true` now and then, `false` once idle. */
  keystroke(conversationId: string): void {
    const now = Date.now();
    let mine = this.#mine.get(conversationId);
    if (!mine) {
      mine = { sentAt: -Infinity, lastKeyAt: now, timer: setTimeout(() => this.#idleCheck(conversationId), this.#timings.idleMs) };
      this.#mine.set(conversationId, mine);
    }
    mine.lastKeyAt = now;
    if (now - mine.sentAt >= this.#timings.intervalMs) {
      mine.sentAt = now;
      this.#send(conversationId, true);
    }
  }

  /**
   * Ends this device's typing. `notify: false` after a send: the server ends typing on `message:send`
   * and receivers clear the indicator when the message arrives, so telling it again is wasted traffic.
   */
  stop(conversationId: string, { notify }: { notify: boolean }): void {
    const mine = this.#mine.get(conversationId);
    if (!mine) return;
    clearTimeout(mine.timer);
    this.#mine.delete(conversationId);
    if (notify) this.#send(conversationId, false);
  }

  /** The connection dropped: the server ends this device's typing itself. */
  forgetMine(): void {
    for (const mine of this.#mine.values()) clearTimeout(mine.timer);
    this.#mine.clear();
  }

  /** A `typing:updated` push. */
  remote(event: TypingEvent): void {
    let users = this.#others.get(event.conversationId);
    const was = users?.has(event.userId) ?? false;
    if (event.typing) {
      if (!users) {
        users = new Map();
        this.#others.set(event.conversationId, users);
      }
      users.set(event.userId, Date.now() + this.#timings.remoteTtlMs);
      this.#sweep ??= setTimeout(() => this.#sweepExpired(), this.#timings.remoteTtlMs);
    } else if (users) {
      users.delete(event.userId);
      if (users.size === 0) this.#others.delete(event.conversationId);
    }
    if (was !== event.typing) this.#report(event);
  }

  /** A message from a user ends their indicator (the server does not broadcast that stop). */
  messageFrom(conversationId: string, userId: string): void {
    if (this.#others.get(conversationId)?.has(userId)) this.remote({ conversationId, userId, typing: false });
  }

  /** Who else is typing in a conversation now. */
  typingIn(conversationId: string): string[] {
    return [...(this.#others.get(conversationId)?.keys() ?? [])];
  }

  close(): void {
    this.forgetMine();
    if (this.#sweep) clearTimeout(this.#sweep);
    this.#sweep = null;
    this.#others.clear();
  }

  #idleCheck(conversationId: string): void {
    const mine = this.#mine.get(conversationId);
    if (!mine) return;
    const idle = Date.now() - mine.lastKeyAt;
    if (idle >= this.#timings.idleMs) {
      this.#mine.delete(conversationId);
      this.#send(conversationId, false);
    } else {
      mine.timer = setTimeout(() => this.#idleCheck(conversationId), this.#timings.idleMs - idle);
    }
  }

  #sweepExpired(): void {
    this.#sweep = null;
    const now = Date.now();
    let next = Infinity;
    for (const [conversationId, users] of this.#others) {
      for (const [userId, expiresAt] of users) {
        if (expiresAt <= now) this.remote({ conversationId, userId, typing: false });
        else next = Math.min(next, expiresAt);
      }
    }
    if (next !== Infinity) this.#sweep = setTimeout(() => this.#sweepExpired(), next - now);
  }
}
