import type { Db } from '../db/client.ts';
import { AppError } from '../errors.ts';
import type { TypingStore } from '../state/typing.ts';
import type { Fanout } from './fanout.ts';

/**
 * Typing indicators. State lives in the shared store with a TTL, so a typing user who vanishes (closed
 * laptop, crashed node) stops typing by themselves after `ttlMs`; receivers apply the same timeout to
 * the `typing: true` they saw. Only transitions are broadcast, and only to the other members.
 */
export class TypingService {
  readonly #db: Db;
  readonly #store: TypingStore;
  readonly #fanout: Fanout;
  readonly #ttlMs: number;

  constructor(db: Db, store: TypingStore, fanout: Fanout, options: { ttlMs: number }) {
    this.#db = db;
    this.#store = store;
    this.#fanout = fanout;
    this.#ttlMs = options.ttlMs;
  }

  async set(actorId: string, conversationId: string, typing: boolean): Promise<void> {
    const others = await this.#otherMembers(actorId, conversationId);
    const { changed } = typing ? await this.#store.start(conversationId, actorId, this.#ttlMs) : await this.#store.stop(conversationId, actorId);
    if (changed) this.#fanout.toUsers(others, 'typing:updated', { conversationId, userId: actorId, typing });
  }

  async list(actorId: string, conversationId: string): Promise<string[]> {
    await this.#otherMembers(actorId, conversationId);
    return (await this.#store.list(conversationId)).filter((userId) => userId !== actorId);
  }

  /**
   * Sending a message ends typing. Receivers clear the sender's indicator when the message arrives,
   * so this only clears the stored state (no broadcast), off the send path: a store hiccup never delays an ack.
   */
  stoppedBySend(actorId: string, conversationId: string): void {
    this.#store.stop(conversationId, actorId).catch(() => {});
  }

  /** A device disconnected: end typing wherever it had started, and tell the others. */
  async stoppedByDisconnect(actorId: string, conversationIds: Iterable<string>): Promise<void> {
    for (const conversationId of conversationIds) {
      const { changed } = await this.#store.stop(conversationId, actorId);
      if (!changed) continue;
      const members = await this.#db.conversationMember.findMany({ where: { conversationId, leftAt: null }, select: { userId: true } });
      this.#fanout.toUsers(
        members.map((m) => m.userId).filter((id) => id !== actorId),
        'typing:updated',
        { conversationId, userId: actorId, typing: false },
      );
    }
  }

  async #otherMembers(actorId: string, conversationId: string): Promise<string[]> {
    const members = await this.#db.conversationMember.findMany({ where: { conversationId, leftAt: null }, select: { userId: true } });
    if (!members.some((member) => member.userId === actorId)) throw new AppError('not_found', 'Conversation not found');
    return members.map((member) => member.userId).filter((id) => id !== actorId);
  }
}
