import type { ThreadListPage, ThreadPage, ThreadRead } from '@chat/protocol';
import type { Db } from '../db/client.ts';
import { AppError } from '../errors.ts';
import { requireMember, visibleMessage } from './access.ts';
import type { Fanout } from './fanout.ts';
import { messageInclude, toWireMessage, type MessageRow } from './wire.ts';

const PAGE_DEFAULT = 50;
const PAGE_MAX = 100;

/** My read state of one root, as #readStates reads it for a set of them. */
type ReadState = Omit<ThreadRead, 'conversationId'>;

/**
 * Reading threads and their per-user read state. Replies themselves are written by MessageService
 * (`message:send` with `threadRootId`), which keeps each root's reply count and last reply time in the
 * sending statement. Guarantees:
 * - a stranger to the conversation gets `not_found` for a root, exactly like a missing message; so does
 *   a member for a root at or below their hide watermark or deleted for them (it is not listed either);
 * - a reply listing is in seq order and complete: tombstones appear as such, replies hidden for the
 *   caller do not;
 * - `unreadCount` counts the replies after my watermark that others sent and that are neither deleted
 *   nor hidden for me; the watermark only moves forward, never past the thread's last reply.
 */
export class ThreadService {
  readonly #db: Db;
  readonly #fanout: Fanout;

  constructor(db: Db, fanout: Fanout) {
    this.#db = db;
    this.#fanout = fanout;
  }

  async fetch(actorId: string, query: { rootId: string; after?: number | undefined; limit?: number | undefined }): Promise<ThreadPage> {
    const { root, hiddenBeforeSeq } = await this.#visibleRoot(actorId, query.rootId);
    const take = Math.min(query.limit ?? PAGE_DEFAULT, PAGE_MAX);
    const [rows, [state]] = await Promise.all([
      this.#db.message.findMany({
        where: { threadRootId: root.id, seq: { gt: Math.max(hiddenBeforeSeq, query.after ?? 0) }, hiddenBy: { none: { userId: actorId } } },
        orderBy: { seq: 'asc' },
        take: take + 1,
        include: messageInclude,
      }),
      this.#readStates(actorId, [root.id], hiddenBeforeSeq),
    ]);
    return {
      root: toWireMessage(root),
      replies: rows.slice(0, take).map((row) => toWireMessage(row as MessageRow)),
      hasMore: rows.length > take,
      lastReadSeq: state?.lastReadSeq ?? 0,
      unreadCount: state?.unreadCount ?? 0,
    };
  }

  /** A conversation's threads by last reply, newest first (ties by root id); keyset-paged. */
  async list(actorId: string, query: { conversationId: string; cursor?: string | undefined; limit?: number | undefined }): Promise<ThreadListPage> {
    const member = await requireMember(this.#db, query.conversationId, actorId);
    const take = Math.min(query.limit ?? PAGE_DEFAULT, PAGE_MAX);
    const after = query.cursor === undefined ? null : decodeCursor(query.cursor);
    const roots = await this.#db.message.findMany({
      where: {
        conversationId: query.conversationId,
        threadLastReplyAt: { not: null },
        seq: { gt: member.hiddenBeforeSeq },
        hiddenBy: { none: { userId: actorId } },
        ...(after && { OR: [{ threadLastReplyAt: { lt: after.at } }, { threadLastReplyAt: after.at, id: { lt: after.id } }] }),
      },
      orderBy: [{ threadLastReplyAt: 'desc' }, { id: 'desc' }],
      take: take + 1,
      include: messageInclude,
    });
    const page = roots.slice(0, take) as MessageRow[];
    const states = new Map(
      (
        await this.#readStates(
          actorId,
          page.map((root) => root.id),
          member.hiddenBeforeSeq,
        )
      ).map((state) => [state.rootId, state]),
    );
    const last = page.at(-1);
    return {
      threads: page.map((root) => {
        const state = states.get(root.id);
        return { conversationId: root.conversationId, rootId: root.id, root: toWireMessage(root), lastReadSeq: state?.lastReadSeq ?? 0, unreadCount: state?.unreadCount ?? 0 };
      }),
      nextCursor: roots.length > take && last?.threadLastReplyAt ? encodeCursor(last.threadLastReplyAt, last.id) : null,
    };
  }

  /**
   * Moves my watermark in a thread forward to `seq` (capped at the thread's last reply); my other
   * devices get `thread:read` when it moved. Answers the state either way.
   */
  async markRead(actorId: string, input: { rootId: string; seq: number }, origin?: string): Promise<ThreadRead> {
    const { root, hiddenBeforeSeq } = await this.#visibleRoot(actorId, input.rootId);
    const [row] = await this.#db.$queryRaw<Array<{ lastReadSeq: number; moved: boolean }>>`
      WITH prev AS (SELECT last_read_seq FROM thread_reads WHERE user_id = ${actorId} AND root_id = ${root.id}::uuid),
      target AS (SELECT LEAST(${input.seq}::int, COALESCE((SELECT max(seq) FROM messages WHERE thread_root_id = ${root.id}::uuid), 0)) AS seq),
      up AS (
        INSERT INTO thread_reads (user_id, root_id, conversation_id, last_read_seq, updated_at)
        SELECT ${actorId}, ${root.id}::uuid, ${root.conversationId}::uuid, target.seq, now() FROM target
        ON CONFLICT (user_id, root_id) DO UPDATE SET last_read_seq = GREATEST(thread_reads.last_read_seq, EXCLUDED.last_read_seq), updated_at = now()
        RETURNING last_read_seq
      )
      SELECT up.last_read_seq AS "lastReadSeq", up.last_read_seq > COALESCE((SELECT last_read_seq FROM prev), 0) AS moved FROM up`;
    const [state] = await this.#readStates(actorId, [root.id], hiddenBeforeSeq);
    const read: ThreadRead = { conversationId: root.conversationId, rootId: root.id, lastReadSeq: Number(row?.lastReadSeq ?? 0), unreadCount: state?.unreadCount ?? 0 };
    if (row?.moved) this.#fanout.toUsers([actorId], 'thread:read', read, { except: origin });
    return read;
  }

  /** A root the actor may see: in a conversation they are a current member of, above their hide watermark, not hidden for them, not a reply. */
  async #visibleRoot(actorId: string, rootId: string): Promise<{ root: MessageRow; hiddenBeforeSeq: number }> {
    const { message: root, hiddenBeforeSeq } = await visibleMessage(this.#db, actorId, rootId);
    if (await this.#db.hiddenMessage.findUnique({ where: { userId_messageId: { userId: actorId, messageId: rootId } }, select: { messageId: true } })) {
      throw new AppError('not_found', 'Message not found');
    }
    if (root.threadRootId !== null) throw new AppError('validation', 'rootId: a thread reply has no thread of its own; use its threadRootId');
    return { root, hiddenBeforeSeq };
  }

  /** My watermark and unread count in each root, in one statement (the replies come through the partial (thread_root_id, seq) index). */
  #readStates(actorId: string, rootIds: readonly string[], hiddenBeforeSeq: number): Promise<ReadState[]> {
    if (rootIds.length === 0) return Promise.resolve([]);
    return this.#db.$queryRaw<ReadState[]>`
      SELECT r.id::text AS "rootId", COALESCE(tr.last_read_seq, 0) AS "lastReadSeq",
        (SELECT count(*)::int FROM messages m
          WHERE m.thread_root_id = r.id AND m.seq > GREATEST(COALESCE(tr.last_read_seq, 0), ${hiddenBeforeSeq}::int)
            AND m.sender_id <> ${actorId} AND m.deleted_at IS NULL
            AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = ${actorId} AND h.message_id = m.id)) AS "unreadCount"
      FROM unnest(${rootIds as string[]}::uuid[]) AS r(id)
      LEFT JOIN thread_reads tr ON tr.user_id = ${actorId} AND tr.root_id = r.id`;
  }
}

function encodeCursor(at: Date, id: string): string {
  return Buffer.from(`${at.toISOString()}|${id}`).toString('base64url');
}

function decodeCursor(cursor: string): { at: Date; id: string } {
  const [at, id, ...rest] = Buffer.from(cursor, 'base64url').toString().split('|');
  const date = new Date(at ?? '');
  if (rest.length > 0 || !id || !/^[0-9a-f-]{36}$/.test(id) || Number.isNaN(date.getTime())) throw new AppError('validation', 'cursor: not a cursor of this listing');
  return { at: date, id };
}
