import type { Conversation, Member, Message, Receipt } from '@chat/protocol';

// Row shapes as the queries in this folder select them, and their conversion to the wire entities of
// packages/protocol. Dates go out as ISO strings; a tombstone carries no body or attachments.

export interface MessageRow {
  id: string;
  conversationId: string;
  seq: number;
  version: number;
  senderId: string;
  clientMsgId: string;
  kind: Message['kind'];
  body: string;
  replyToId: string | null;
  threadRootId: string | null;
  threadReplyCount: number;
  threadLastReplyAt: Date | null;
  createdAt: Date;
  editedAt: Date | null;
  deletedAt: Date | null;
  attachments: Array<{ position: number; url: string; mime: string; size: number; name: string; uploadId: string | null }>;
  reactions: Array<{ emoji: string; userId: string; createdAt?: Date }>;
}

export function toWireMessage(row: MessageRow): Message {
  const deleted = row.deletedAt !== null;
  return {
    id: row.id,
    conversationId: row.conversationId,
    seq: row.seq,
    version: row.version,
    senderId: row.senderId,
    clientMsgId: row.clientMsgId,
    kind: row.kind,
    body: deleted ? '' : row.body,
    attachments: deleted ? [] : [...row.attachments].sort((a, b) => a.position - b.position).map(toWireAttachment),
    replyToId: row.replyToId,
    threadRootId: row.threadRootId,
    thread: row.threadLastReplyAt === null ? null : { replyCount: row.threadReplyCount, lastReplyAt: iso(row.threadLastReplyAt) },
    reactions: deleted ? [] : row.reactions.map(({ emoji, userId }) => ({ emoji, userId })),
    createdAt: iso(row.createdAt),
    editedAt: row.editedAt === null ? null : iso(row.editedAt),
    deletedAt: row.deletedAt === null ? null : iso(row.deletedAt),
  };
}

/** A link attachment carries its `url`; an uploaded one its `uploadId` instead (its bytes are fetched through `upload:url`). */
export function toWireAttachment({ url, mime, size, name, uploadId }: MessageRow['attachments'][number]): Message['attachments'][number] {
  return uploadId ? { uploadId, mime, size, name } : { url, mime, size, name };
}

export interface ConversationRow {
  id: string;
  kind: Conversation['kind'];
  title: string | null;
  ownerId: string | null;
  lastSeq: number;
  version: number;
  lastActivityAt: Date;
  createdAt: Date;
  members: Array<{
    userId: string;
    role: Member['role'];
    joinedAt: Date;
    leftAt: Date | null;
    lastDeliveredSeq: number;
    lastReadSeq: number;
    user: { displayName: string };
  }>;
}

export function toWireConversation(row: ConversationRow): Conversation {
  return {
    id: row.id,
    kind: row.kind,
    title: row.title,
    ownerId: row.ownerId,
    members: row.members
      .filter((member) => member.leftAt === null)
      .map((member) => ({
        userId: member.userId,
        displayName: member.user.displayName,
        role: member.role,
        joinedAt: iso(member.joinedAt),
        lastDeliveredSeq: member.lastDeliveredSeq,
        lastReadSeq: member.lastReadSeq,
      })),
    lastSeq: row.lastSeq,
    version: row.version,
    lastActivityAt: iso(row.lastActivityAt),
    createdAt: iso(row.createdAt),
  };
}

export function toReceipt(conversationId: string, member: { userId: string; lastDeliveredSeq: number; lastReadSeq: number }): Receipt {
  return { conversationId, userId: member.userId, lastDeliveredSeq: member.lastDeliveredSeq, lastReadSeq: member.lastReadSeq };
}

/** Raw queries may hand back timestamps as Date or as text depending on the driver adapter. */
export function iso(value: Date | string): string {
  return (value instanceof Date ? value : new Date(value)).toISOString();
}

/** Prisma `include` for a message as the wire needs it. */
export const messageInclude = {
  attachments: { select: { position: true, url: true, mime: true, size: true, name: true, uploadId: true } },
  reactions: { select: { emoji: true, userId: true }, orderBy: { createdAt: 'asc' } },
} as const;

/** Prisma `include` for a conversation with its members' names and watermarks. */
export const conversationInclude = {
  members: {
    where: { leftAt: null },
    orderBy: { joinedAt: 'asc' },
    include: { user: { select: { displayName: true } } },
  },
} as const;
