import type { Conversation, ConversationArchived, ConversationSummary } from '@chat/protocol';
import { v7 as uuidv7 } from 'uuid';
import type { Db } from '../db/client.ts';
import { AppError } from '../errors.ts';
import { bumpConversation, ensureUsersExist, requireMember, type Tx } from './access.ts';
import type { Fanout } from './fanout.ts';
import { conversationInclude, messageInclude, toWireConversation, toWireMessage, type MessageRow } from './wire.ts';

const MAX_LIST = 100;

/** Told about committed membership changes that notify someone; returns at once, never throws. */
export interface ConversationListener {
  addedToGroup(conversationId: string, title: string | null, actorId: string, userIds: readonly string[]): void;
}

/**
 * Direct and group conversations and their membership. Every membership change is a system message
 * in the conversation (so it has a seq, appears in history and resyncs like any message) and a
 * `conversation:updated` event to the members.
 */
export class ConversationService {
  readonly #db: Db;
  readonly #fanout: Fanout;
  readonly #listener: ConversationListener | undefined;

  constructor(db: Db, fanout: Fanout, listener?: ConversationListener) {
    this.#db = db;
    this.#fanout = fanout;
    this.#listener = listener;
  }

  /**
   * The one direct conversation of the pair, created on first use. Idempotent under concurrency: the
   * pair is stored sorted and unique, so racing requests insert once and all read the same row.
   */
  async openDirect(actorId: string, otherId: string): Promise<{ conversation: Conversation; created: boolean }> {
    if (otherId === actorId) throw new AppError('validation', 'A direct conversation needs another user');
    const [lowId, highId] = actorId < otherId ? [actorId, otherId] : [otherId, actorId];
    const existing = await this.#findDirect(lowId, highId);
    if (existing) return { conversation: existing, created: false };

    await ensureUsersExist(this.#db, [otherId]);
    const created = await this.#db.$transaction(async (tx) => {
      const id = uuidv7();
      const inserted = await tx.$executeRaw`
        INSERT INTO conversations (id, kind, direct_low_id, direct_high_id)
        VALUES (${id}::uuid, 'direct', ${lowId}, ${highId})
        ON CONFLICT (direct_low_id, direct_high_id) DO NOTHING`;
      if (inserted === 0) return false;
      await tx.conversationMember.createMany({ data: [lowId, highId].map((userId) => ({ conversationId: id, userId })) });
      return true;
    });
    const conversation = (await this.#findDirect(lowId, highId))!;
    if (created) this.#fanout.toUsers([lowId, highId], 'conversation:updated', conversation);
    return { conversation, created };
  }

  async createGroup(actorId: string, title: string, memberIds: readonly string[]): Promise<Conversation> {
    const others = [...new Set(memberIds)].filter((id) => id !== actorId);
    await ensureUsersExist(this.#db, others);
    const { conversationId, message } = await this.#db.$transaction(async (tx) => {
      const conversation = await tx.conversation.create({
        data: {
          kind: 'group',
          title,
          ownerId: actorId,
          members: { create: [{ userId: actorId, role: 'owner' }, ...others.map((userId) => ({ userId }))] },
        },
      });
      const message = await appendSystemMessage(tx, conversation.id, actorId, `created the group "${title}"`);
      return { conversationId: conversation.id, message };
    });
    const conversation = await this.#announce(conversationId, message);
    this.#listener?.addedToGroup(conversationId, title, actorId, others);
    return conversation;
  }

  async addMembers(actorId: string, conversationId: string, userIds: readonly string[]): Promise<Conversation> {
    await ensureUsersExist(this.#db, userIds);
    const result = await this.#db.$transaction(async (tx) => {
      await this.#requireGroupOwner(tx, conversationId, actorId);
      const current = await tx.conversationMember.findMany({ where: { conversationId, userId: { in: [...userIds] } } });
      const active = new Set(current.filter((m) => m.leftAt === null).map((m) => m.userId));
      const toAdd = [...new Set(userIds)].filter((id) => !active.has(id));
      if (toAdd.length === 0) return null;
      for (const userId of toAdd) {
        await tx.conversationMember.upsert({
          where: { conversationId_userId: { conversationId, userId } },
          create: { conversationId, userId },
          update: { leftAt: null, joinedAt: new Date(), role: 'member' },
        });
      }
      return { message: await appendSystemMessage(tx, conversationId, actorId, `added ${toAdd.join(', ')}`), toAdd };
    });
    if (!result) return this.get(actorId, conversationId);
    const conversation = await this.#announce(conversationId, result.message);
    this.#listener?.addedToGroup(conversationId, conversation.title, actorId, result.toAdd);
    return conversation;
  }

  async removeMember(actorId: string, conversationId: string, userId: string): Promise<Conversation> {
    if (userId === actorId) throw new AppError('validation', 'Use conversation:leave to leave a conversation');
    const message = await this.#db.$transaction(async (tx) => {
      await this.#requireGroupOwner(tx, conversationId, actorId);
      const removed = await tx.conversationMember.updateMany({ where: { conversationId, userId, leftAt: null }, data: { leftAt: new Date() } });
      if (removed.count === 0) throw new AppError('not_found', 'That user is not a member');
      return appendSystemMessage(tx, conversationId, actorId, `removed ${userId}`);
    });
    this.#fanout.toUsers([userId], 'conversation:removed', { conversationId });
    return this.#announce(conversationId, message);
  }

  async rename(actorId: string, conversationId: string, title: string): Promise<Conversation> {
    const message = await this.#db.$transaction(async (tx) => {
      await this.#requireGroupOwner(tx, conversationId, actorId);
      await tx.conversation.update({ where: { id: conversationId }, data: { title } });
      return appendSystemMessage(tx, conversationId, actorId, `renamed the group to "${title}"`);
    });
    return this.#announce(conversationId, message);
  }

  /** Leaves a group. An owner who leaves hands ownership to the longest-standing member. */
  async leave(actorId: string, conversationId: string): Promise<void> {
    const message = await this.#db.$transaction(async (tx) => {
      const member = await requireMember(tx, conversationId, actorId);
      if (member.conversation.kind !== 'group') throw new AppError('validation', 'Direct conversations cannot be left');
      await tx.conversationMember.update({ where: { conversationId_userId: { conversationId, userId: actorId } }, data: { leftAt: new Date() } });
      if (member.conversation.ownerId === actorId) {
        const heir = await tx.conversationMember.findFirst({ where: { conversationId, leftAt: null }, orderBy: { joinedAt: 'asc' } });
        await tx.conversation.update({ where: { id: conversationId }, data: { ownerId: heir?.userId ?? null } });
        if (heir) await tx.conversationMember.update({ where: { conversationId_userId: { conversationId, userId: heir.userId } }, data: { role: 'owner' } });
      }
      return appendSystemMessage(tx, conversationId, actorId, 'left the group');
    });
    this.#fanout.toUsers([actorId], 'conversation:removed', { conversationId });
    await this.#announce(conversationId, message);
  }

  async get(actorId: string, conversationId: string): Promise<Conversation> {
    await requireMember(this.#db, conversationId, actorId);
    return this.#load(conversationId);
  }

  /**
   * Archives or unarchives the conversation for the caller only, and tells their other devices
   * (`conversation:archived`). Idempotent. Members only: a stranger gets `not_found`, as for a missing id.
   */
  async archive(actorId: string, conversationId: string, archived: boolean, origin?: string): Promise<ConversationArchived> {
    const { count } = await this.#db.conversationMember.updateMany({
      where: { conversationId, userId: actorId, leftAt: null },
      data: { archivedAt: archived ? new Date() : null },
    });
    if (count === 0) throw new AppError('not_found', 'Conversation not found');
    const result = { conversationId, archived };
    this.#fanout.toUsers([actorId], 'conversation:archived', result, { except: origin });
    return result;
  }

  /**
   * The user's conversations by last activity, newest first, each with its last visible message and
   * the unread count (latest seq minus the user's read watermark); the archived ones only when
   * `archived` is true, the others otherwise. Keyset-paged: the cursor is the last row's (activity
   * time, id), so pages stay stable while new messages arrive.
   */
  async list(actorId: string, cursor: string | undefined, limit = 30, archived = false): Promise<{ conversations: ConversationSummary[]; nextCursor: string | null }> {
    const take = Math.min(limit, MAX_LIST);
    const after = cursor ? decodeCursor(cursor) : null;
    const rows = await this.#db.conversation.findMany({
      where: {
        members: { some: { userId: actorId, leftAt: null, archivedAt: archived ? { not: null } : null } },
        ...(after && {
          OR: [{ lastActivityAt: { lt: after.at } }, { lastActivityAt: after.at, id: { lt: after.id } }],
        }),
      },
      orderBy: [{ lastActivityAt: 'desc' }, { id: 'desc' }],
      take: take + 1,
      include: conversationInclude,
    });
    const page = rows.slice(0, take);
    const lastMessages = await this.#lastVisibleMessages(
      actorId,
      page.map((row) => row.id),
    );
    const now = new Date();
    const conversations = page.map((row) => {
      const me = row.members.find((member) => member.userId === actorId);
      return {
        ...toWireConversation(row),
        lastMessage: lastMessages.get(row.id) ?? null,
        unreadCount: Math.max(0, row.lastSeq - (me?.lastReadSeq ?? 0)),
        muted: me?.mutedUntil != null && me.mutedUntil > now,
        archived: me?.archivedAt != null,
      };
    });
    const last = page.at(-1);
    return { conversations, nextCursor: rows.length > take && last ? encodeCursor(last.lastActivityAt, last.id) : null };
  }

  async #lastVisibleMessages(userId: string, conversationIds: string[]) {
    if (conversationIds.length === 0) return new Map();
    // DISTINCT ON walks the (conversation_id, seq) index backwards: one row per conversation.
    const ids = await this.#db.$queryRaw<Array<{ id: string }>>`
      SELECT DISTINCT ON (m.conversation_id) m.id::text AS id
      FROM messages m
      JOIN conversation_members cm ON cm.conversation_id = m.conversation_id AND cm.user_id = ${userId}
      WHERE m.conversation_id = ANY(${conversationIds}::uuid[])
        AND m.seq > cm.hidden_before_seq
        AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = ${userId} AND h.message_id = m.id)
      ORDER BY m.conversation_id, m.seq DESC`;
    const messages = await this.#db.message.findMany({ where: { id: { in: ids.map((row) => row.id) } }, include: messageInclude });
    return new Map(messages.map((message) => [message.conversationId, toWireMessage(message as MessageRow)]));
  }

  async #findDirect(lowId: string, highId: string): Promise<Conversation | null> {
    const row = await this.#db.conversation.findUnique({ where: { directLowId_directHighId: { directLowId: lowId, directHighId: highId } }, include: conversationInclude });
    return row ? toWireConversation(row) : null;
  }

  async #load(conversationId: string): Promise<Conversation> {
    const row = await this.#db.conversation.findUnique({ where: { id: conversationId }, include: conversationInclude });
    if (!row) throw new AppError('not_found', 'Conversation not found');
    return toWireConversation(row);
  }

  async #requireGroupOwner(tx: Tx, conversationId: string, actorId: string): Promise<void> {
    const member = await requireMember(tx, conversationId, actorId);
    if (member.conversation.kind !== 'group') throw new AppError('validation', 'Only group conversations have members to manage');
    if (member.conversation.ownerId !== actorId && member.role !== 'admin') throw new AppError('forbidden', 'Only the group owner can do this');
  }

  /** After commit: the new state of the conversation and its system message to every current member. */
  async #announce(conversationId: string, message: MessageRow): Promise<Conversation> {
    const conversation = await this.#load(conversationId);
    const memberIds = conversation.members.map((member) => member.userId);
    this.#fanout.toUsers(memberIds, 'conversation:updated', conversation);
    this.#fanout.toUsers(memberIds, 'message:new', toWireMessage(message));
    return conversation;
  }
}

/** Appends a system message (seq and version from the conversation's row lock) inside the caller's transaction. */
export async function appendSystemMessage(tx: Tx, conversationId: string, actorId: string, body: string): Promise<MessageRow> {
  const { lastSeq, version } = await bumpConversation(tx, conversationId, { newMessage: true });
  const message = await tx.message.create({
    data: { conversationId, seq: lastSeq, version, senderId: actorId, clientMsgId: `system-${uuidv7()}`, kind: 'system', body },
    include: messageInclude,
  });
  return message as MessageRow;
}

export function encodeCursor(at: Date, id: string): string {
  return Buffer.from(`${at.toISOString()}|${id}`).toString('base64url');
}

export function decodeCursor(cursor: string): { at: Date; id: string } {
  const [at, id] = Buffer.from(cursor, 'base64url').toString().split('|');
  const date = new Date(at ?? '');
  if (!id || Number.isNaN(date.getTime()) || !/^[0-9a-f-]{36}$/.test(id)) throw new AppError('validation', 'cursor: not a cursor this server issued');
  return { at: date, id };
}
