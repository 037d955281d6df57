import type { ClientEventResults, ConversationChanges } from '@chat/protocol';
import type { Db } from '../db/client.ts';
import { conversationInclude, messageInclude, toReceipt, toWireConversation, toWireMessage, type MessageRow } from './wire.ts';

const SYNC_DEFAULT = 100;

/**
 * Resync after any disconnect. Every change to a conversation (message, edit, delete, reaction,
 * membership, delete-for-me) takes the next conversation version under the conversation's row lock,
 * and every message carries the version of its last change. So "what did I miss" is exact: for each
 * conversation, the messages whose version is above the one the device holds, each in its latest
 * state, once. Receipts and the user's archived conversations are state, not events: their current
 * values come with every answer.
 */
export class SyncService {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  async changes(actorId: string, input: { since: Array<{ conversationId: string; version: number }>; limit?: number | undefined }): Promise<ClientEventResults['sync:changes']> {
    const take = Math.min(input.limit ?? SYNC_DEFAULT, 100);
    const known = new Map(input.since.map((entry) => [entry.conversationId, entry.version]));
    const memberships = await this.#db.conversationMember.findMany({
      where: { userId: actorId, leftAt: null },
      include: { conversation: { include: conversationInclude } },
    });

    const conversations: ConversationChanges[] = [];
    for (const membership of memberships) {
      const { conversation } = membership;
      const since = known.get(conversation.id) ?? 0;
      if (conversation.version <= since) continue;
      const [rows, hidden] = await Promise.all([
        this.#db.message.findMany({
          where: {
            conversationId: conversation.id,
            version: { gt: since },
            seq: { gt: membership.hiddenBeforeSeq },
            hiddenBy: { none: { userId: actorId } },
          },
          orderBy: { version: 'asc' },
          take: take + 1,
          include: messageInclude,
        }),
        this.#db.hiddenMessage.findMany({
          where: { userId: actorId, conversationId: conversation.id, version: { gt: since } },
          select: { messageId: true },
        }),
      ]);
      conversations.push({
        conversation: toWireConversation(conversation),
        messages: rows.slice(0, take).map((row) => toWireMessage(row as MessageRow)),
        hiddenMessageIds: hidden.map((row) => row.messageId),
        hasMore: rows.length > take,
      });
    }

    const current = new Set(memberships.map((membership) => membership.conversationId));
    return {
      conversations,
      removedConversationIds: [...known.keys()].filter((id) => !current.has(id)),
      receipts: memberships.flatMap((membership) => membership.conversation.members.map((member) => toReceipt(membership.conversationId, member))),
      archivedConversationIds: memberships.flatMap((membership) => (membership.archivedAt === null ? [] : [membership.conversationId])),
    };
  }
}
