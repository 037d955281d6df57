import { SYSTEM_SENDER_ID, type Attachment, type DeleteScope, type Message, type MessageKind, type ReactionAction } from '@chat/protocol';
import { v7 as uuidv7 } from 'uuid';
import type { Db, Sql } from '../db/client.ts';
import { AppError } from '../errors.ts';
import type { ServiceLog } from '../logger.ts';
import { bumpConversation, ensureUsersExist, requireMember, visibleMessage } from './access.ts';
import type { Fanout } from './fanout.ts';
import { MessageWriter } from './message-writer.ts';
import type { StoredAttachment } from './uploads.ts';
import { iso, messageInclude, toWireAttachment, toWireMessage, type MessageRow } from './wire.ts';

export interface SendInput {
  conversationId: string;
  clientMsgId: string;
  body: string;
  kind?: MessageKind | undefined;
  attachments?: Attachment[] | undefined;
  replyToId?: string | undefined;
  threadRootId?: string | undefined;
  /** The connection the message came from; it gets the message in its ack, not again as an event. */
  origin?: string | undefined;
}

const HISTORY_DEFAULT = 50;

/** Turns a message's attachments into stored ones, checking each upload it names (see UploadService). */
export type AttachmentResolver = (senderId: string, conversationId: string, attachments: readonly Attachment[]) => Promise<StoredAttachment[]>;

const linksOnly: AttachmentResolver = async (_senderId, _conversationId, attachments) =>
  attachments.map((attachment, position) => {
    if ('uploadId' in attachment) throw new AppError('not_found', `Upload ${attachment.uploadId} not found`);
    return { position, ...attachment, uploadId: null };
  });

/**
 * Told about each new message after its commit, in the order this node learned the commits (a
 * conversation's in seq order). Runs on the send path: it must return at once and never throw.
 * @param memberIds the conversation's members when it was written, sender included.
 */
export type CommittedListener = (message: Message, memberIds: readonly string[]) => void;

/** Told about each added reaction after its commit; the same rules as CommittedListener. */
export type ReactedListener = (message: Message, actorId: string, emoji: string) => void;

/** Sending, editing, deleting and reacting to messages, and reading history. */
export class MessageService {
  readonly #db: Db;
  readonly #fanout: Fanout;
  readonly #maxBodyLength: number;
  readonly #writer: MessageWriter;
  readonly #committed: CommittedListener[] = [];
  readonly #reacted: ReactedListener[] = [];
  /** The system sender's user row (messages reference their sender), created once per service. */
  #systemUser: Promise<void> | null = null;

  readonly #resolveAttachments: AttachmentResolver;
  readonly #log: Pick<ServiceLog, 'warn'> | undefined;

  /**
   * @param options.onBatch told how many messages each insert statement carried (a metric).
   * @param options.attachments turns upload ids into stored attachments (domain/uploads.ts); without it, only links are taken.
   * @param options.log where a failed thread-root push is reported (the root stays right in PostgreSQL; resync brings it).
   */
  constructor(db: Db, sql: Sql, fanout: Fanout, options: { maxBodyLength: number; onBatch?: (messages: number) => void; attachments?: AttachmentResolver; log?: Pick<ServiceLog, 'warn'> }) {
    this.#db = db;
    this.#log = options.log;
    this.#resolveAttachments = options.attachments ?? linksOnly;
    this.#writer = new MessageWriter(sql, options.onBatch);
    this.#fanout = fanout;
    this.#maxBodyLength = options.maxBodyLength;
  }

  /** The write path's one "messages committed" hook: every subscriber is told of every new message. */
  onCommitted(listener: CommittedListener): void {
    this.#committed.push(listener);
  }

  onReacted(listener: ReactedListener): void {
    this.#reacted.push(listener);
  }

  /**
   * Persists a message and returns it once committed; only then is it fanned out. The write is one
   * SQL statement shared with the other messages arriving at the same time (group commit, see
   * MessageWriter): membership, idempotency and reply checks, the conversation row lock that assigns
   * the next gap-free seq and version, the insert, the sender's own watermarks, the members to notify.
   *
   * Idempotent per (sender, clientMsgId): a retry finds the original and returns it with
   * `duplicate: true`. Two retries racing past the existence check collide on the unique index; that
   * statement fails as a whole (the seq increments with it, so seqs stay gap-free) and is retried.
   *
   * The system sender (SYSTEM_SENDER_ID, only reachable through the backend API) takes this same
   * path; it differs only in needing no membership: it may post into any existing conversation.
   */
  async send(senderId: string, input: SendInput): Promise<{ message: Message; duplicate: boolean }> {
    this.#checkBody(input.body);
    const systemSender = senderId === SYSTEM_SENDER_ID;
    if (systemSender) await this.#ensureSystemUser();
    const id = uuidv7();
    const kind = input.kind ?? 'text';
    const attachments = await this.#resolveAttachments(senderId, input.conversationId, input.attachments ?? []);
    const replyToId = input.replyToId ?? null;
    const threadRootId = input.threadRootId ?? null;
    const row = await this.#writer.write({
      id,
      conversationId: input.conversationId,
      senderId,
      ...(systemSender && { systemSender }),
      clientMsgId: input.clientMsgId,
      kind,
      body: input.body,
      replyToId,
      threadRootId,
      attachments,
    });
    if (!row) return { message: await this.#explainUnsent(senderId, input), duplicate: true };
    const message: Message = {
      id,
      conversationId: input.conversationId,
      seq: Number(row.seq),
      version: Number(row.version),
      senderId,
      clientMsgId: input.clientMsgId,
      kind,
      body: input.body,
      attachments: attachments.map(toWireAttachment),
      replyToId,
      threadRootId,
      thread: null,
      reactions: [],
      createdAt: iso(row.createdAt),
      editedAt: null,
      deletedAt: null,
    };
    // Before the message, so a device that shows only unarchived conversations has it listed when it arrives.
    if (row.unarchivedIds.length > 0) this.#fanout.toUsers(row.unarchivedIds, 'conversation:archived', { conversationId: input.conversationId, archived: false });
    this.#fanout.toUsers(row.memberIds, 'message:new', message, { except: input.origin });
    for (const listener of this.#committed) listener(message, row.memberIds);
    if (row.rootChanged && threadRootId) this.#announceRoot(threadRootId, row.memberIds);
    return { message, duplicate: false };
  }

  /**
   * A thread root as it now is, to every member, after a reply changed it. Read after the commit, so
   * it may already carry a later change; clients keep the highest version of a message, and a resync
   * finds the root by its version whatever this push does (it is lost only with the connection).
   */
  #announceRoot(rootId: string, memberIds: readonly string[]): void {
    this.#db.message.findUnique({ where: { id: rootId }, include: messageInclude }).then(
      (root) => {
        if (root) this.#fanout.toUsers(memberIds, 'message:updated', toWireMessage(root as MessageRow));
      },
      (error: unknown) => this.#log?.warn({ err: error, rootId }, 'thread root not pushed after a reply; clients get it on resync'),
    );
  }

  /** Why nothing was inserted: a retry (return the original), or a refusal with its reason. */
  async #explainUnsent(senderId: string, input: SendInput): Promise<Message> {
    const original = await this.#db.message.findUnique({
      where: { senderId_clientMsgId: { senderId, clientMsgId: input.clientMsgId } },
      include: messageInclude,
    });
    if (original) {
      if (original.conversationId !== input.conversationId) throw new AppError('conflict', 'clientMsgId was already used for a message in another conversation');
      return toWireMessage(original as MessageRow);
    }
    if (senderId === SYSTEM_SENDER_ID) {
      if (!(await this.#db.conversation.findUnique({ where: { id: input.conversationId }, select: { id: true } }))) throw new AppError('not_found', 'Conversation not found');
    } else {
      await requireMember(this.#db, input.conversationId, senderId);
    }
    const root = input.threadRootId
      ? await this.#db.message.findFirst({
          where: { id: input.threadRootId, conversationId: input.conversationId, threadRootId: null, hiddenBy: { none: { userId: senderId } } },
          select: { id: true },
        })
      : null;
    if (input.threadRootId && !root) {
      throw new AppError('validation', 'threadRootId: not a message of this conversation that can start a thread (a thread reply cannot)');
    }
    if (input.replyToId) throw new AppError('validation', 'replyToId: not a message of this conversation');
    throw new AppError('conflict', 'The message could not be stored; retry');
  }

  /** Sender only. The previous body goes to the edit history. */
  async edit(actorId: string, messageId: string, body: string): Promise<Message> {
    this.#checkBody(body);
    const { message, memberIds } = await this.#db.$transaction(async (tx) => {
      const current = (await visibleMessage(tx, actorId, messageId)).message;
      if (current.senderId !== actorId) throw new AppError('forbidden', 'Only the sender can edit a message');
      if (current.deletedAt) throw new AppError('conflict', 'The message was deleted');
      if (current.kind === 'system') throw new AppError('forbidden', 'System messages cannot be edited');
      if (current.body === body) return { message: current, memberIds: null };
      const { version } = await bumpConversation(tx, current.conversationId, { newMessage: false });
      await tx.messageEdit.create({ data: { messageId, previousBody: current.body } });
      const updated = await tx.message.update({ where: { id: messageId }, data: { body, editedAt: new Date(), version }, include: messageInclude });
      return { message: updated as MessageRow, memberIds: await activeMemberIds(tx, current.conversationId) };
    });
    const wire = toWireMessage(message);
    if (memberIds) this.#fanout.toUsers(memberIds, 'message:updated', wire);
    return wire;
  }

  /**
   * `everyone` (sender only): the row stays as a tombstone so seqs stay gap-free; body, attachments and
   * reactions are erased. `me` (any member): hidden for this user on all their devices only.
   */
  async delete(actorId: string, messageId: string, scope: DeleteScope): Promise<Message | null> {
    if (scope === 'me') {
      const conversationId = await this.#db.$transaction(async (tx) => {
        const current = (await visibleMessage(tx, actorId, messageId)).message;
        const { version } = await bumpConversation(tx, current.conversationId, { newMessage: false });
        await tx.hiddenMessage.createMany({ data: [{ userId: actorId, messageId, conversationId: current.conversationId, version }], skipDuplicates: true });
        return current.conversationId;
      });
      this.#fanout.toUsers([actorId], 'message:hidden', { conversationId, messageId });
      return null;
    }
    const { message, root, memberIds } = await this.#db.$transaction(async (tx) => {
      const current = (await visibleMessage(tx, actorId, messageId)).message;
      if (current.senderId !== actorId) throw new AppError('forbidden', 'Only the sender can delete a message for everyone');
      if (current.deletedAt) return { message: current, root: null, memberIds: null };
      const { version } = await bumpConversation(tx, current.conversationId, { newMessage: false });
      await tx.attachment.deleteMany({ where: { messageId } });
      await tx.reaction.deleteMany({ where: { messageId } });
      await tx.messageEdit.deleteMany({ where: { messageId } });
      const updated = await tx.message.update({ where: { id: messageId }, data: { body: '', deletedAt: new Date(), version }, include: messageInclude });
      const root = current.threadRootId ? await recountThread(tx, current.conversationId, current.threadRootId) : null;
      return { message: updated as MessageRow, root, memberIds: await activeMemberIds(tx, current.conversationId) };
    });
    const wire = toWireMessage(message);
    if (memberIds) this.#fanout.toUsers(memberIds, 'message:updated', wire);
    if (memberIds && root) this.#fanout.toUsers(memberIds, 'message:updated', toWireMessage(root));
    return wire;
  }

  /** One reaction per user, message and emoji; adding twice or removing an absent one changes nothing. */
  async react(actorId: string, messageId: string, emoji: string, action: ReactionAction): Promise<Message> {
    const { message, memberIds } = await this.#db.$transaction(async (tx) => {
      const current = (await visibleMessage(tx, actorId, messageId)).message;
      if (current.deletedAt) throw new AppError('conflict', 'The message was deleted');
      const changed =
        action === 'add'
          ? (await tx.reaction.createMany({ data: [{ messageId, userId: actorId, emoji }], skipDuplicates: true })).count
          : (await tx.reaction.deleteMany({ where: { messageId, userId: actorId, emoji } })).count;
      if (changed === 0) return { message: current, memberIds: null };
      const { version } = await bumpConversation(tx, current.conversationId, { newMessage: false });
      const updated = await tx.message.update({ where: { id: messageId }, data: { version }, include: messageInclude });
      return { message: updated as MessageRow, memberIds: await activeMemberIds(tx, current.conversationId) };
    });
    const wire = toWireMessage(message);
    if (memberIds) {
      this.#fanout.toUsers(memberIds, 'message:updated', wire);
      if (action === 'add') for (const listener of this.#reacted) listener(wire, actorId, emoji);
    }
    return wire;
  }

  /**
   * A page of history by seq cursor, in ascending seq order either way: `before` pages back from the
   * newest (or from a seq), `after` pages forward. Tombstones appear as such; messages this user hid do not.
   */
  async history(
    actorId: string,
    query: { conversationId: string; before?: number | undefined; after?: number | undefined; limit?: number | undefined },
  ): Promise<{ messages: Message[]; hasMore: boolean }> {
    const member = await requireMember(this.#db, query.conversationId, actorId);
    const take = Math.min(query.limit ?? HISTORY_DEFAULT, 100);
    const forward = query.after !== undefined;
    const rows = await this.#db.message.findMany({
      where: {
        conversationId: query.conversationId,
        seq: {
          gt: Math.max(member.hiddenBeforeSeq, query.after ?? 0),
          ...(query.before !== undefined && { lt: query.before }),
        },
        hiddenBy: { none: { userId: actorId } },
      },
      orderBy: { seq: forward ? 'asc' : 'desc' },
      take: take + 1,
      include: messageInclude,
    });
    const page = rows.slice(0, take).map((row) => toWireMessage(row as MessageRow));
    if (!forward) page.reverse();
    return { messages: page, hasMore: rows.length > take };
  }

  #ensureSystemUser(): Promise<void> {
    this.#systemUser ??= ensureUsersExist(this.#db, [SYSTEM_SENDER_ID]).catch((error: unknown) => {
      this.#systemUser = null;
      throw error;
    });
    return this.#systemUser;
  }

  #checkBody(body: string): void {
    if (body.length > this.#maxBodyLength) throw new AppError('validation', `body: at most ${this.#maxBodyLength} characters`);
  }
}

/**
 * A reply of the thread was deleted for everyone: its root's reply count and last reply time are
 * recounted from the replies left, under a version of their own (taken after the tombstone's).
 */
async function recountThread(tx: Parameters<typeof requireMember>[0], conversationId: string, rootId: string): Promise<MessageRow> {
  const { version } = await bumpConversation(tx, conversationId, { newMessage: false });
  await tx.$executeRaw`
    UPDATE messages r SET version = ${version}::int,
      thread_reply_count = (SELECT count(*) FROM messages m WHERE m.thread_root_id = r.id AND m.deleted_at IS NULL),
      thread_last_reply_at = COALESCE((SELECT max(created_at) FROM messages m WHERE m.thread_root_id = r.id AND m.deleted_at IS NULL), r.thread_last_reply_at)
    WHERE r.id = ${rootId}::uuid`;
  return (await tx.message.findUniqueOrThrow({ where: { id: rootId }, include: messageInclude })) as MessageRow;
}

async function activeMemberIds(tx: Parameters<typeof requireMember>[0], conversationId: string): Promise<string[]> {
  const members = await tx.conversationMember.findMany({ where: { conversationId, leftAt: null }, select: { userId: true } });
  return members.map((member) => member.userId);
}
