import type { MessageKind } from '@chat/protocol';
import type { Sql, Statement } from '../db/client.ts';
import { isDatabaseUnavailable } from '../errors.ts';
import { GroupCommit } from './group-commit.ts';

export interface NewMessage {
  id: string;
  conversationId: string;
  senderId: string;
  /**
   * Set only for the system sender (SYSTEM_SENDER_ID): it posts into any conversation without being
   * a member. Every other sender must be a current member of the conversation.
   */
  systemSender?: boolean;
  clientMsgId: string;
  kind: MessageKind;
  body: string;
  replyToId: string | null;
  /** A thread reply: its root, a message of the same conversation that is not a reply itself. */
  threadRootId: string | null;
  attachments: Array<{ position: number; url: string; mime: string; size: number; name: string; uploadId: string | null }>;
}

export interface WrittenMessage {
  seq: number;
  version: number;
  createdAt: Date;
  /** Current members of the conversation, to fan the message out to. */
  memberIds: string[];
  /**
   * Members this statement unarchived (archived, not muted, and the message is from someone else).
   * Given on one message per conversation and statement, so each member is told once; empty elsewhere.
   */
  unarchivedIds: string[];
  /**
   * This reply's thread root changed in the same statement (reply count, last reply time, a version
   * of its own). Set on the root's last reply of the statement only, so the root is announced once.
   */
  rootChanged: boolean;
}

/**
 * Group commit for new messages (see GroupCommit). Each statement inserts a batch of messages,
 * possibly into many conversations, in one round trip and one transaction: per message it checks
 * membership (the system sender needs none), idempotency, the reply target and the thread root (of
 * the conversation, not a reply, not deleted for the sender); per
 * conversation it takes the row lock once and reserves as many seqs as it has messages and as many
 * versions as it has messages and thread roots they reply in, numbering the messages in arrival order
 * and giving each such root the versions after them (a root never shares a version with a message,
 * so a resync page that ends on one cannot skip the other); it inserts the messages and their
 * attachments, counts the replies into their roots, moves the senders' own
 * watermarks and unarchives the conversation for its archived, unmuted members who got a message
 * from someone else (reading the conversation's member rows by primary key, as the member list it
 * answers already does; writing only those members' rows). One statement per conversation in flight means this node learns (and fans out) each
 * conversation's messages in seq order.
 *
 * Guarantees: a message resolves with its seq only after the statement committed; `null` means it
 * was not written (a retry of an existing clientMsgId, not a member, no such conversation, bad reply
 * target) and the caller finds out which. A racing duplicate hitting the unique index fails its
 * statement as a whole (the seq increments with it, so seqs stay gap-free); alone, it resolves as
 * "not written".
 */
export class MessageWriter {
  readonly #sql: Sql;
  readonly #commit: GroupCommit<NewMessage, WrittenMessage | null>;

  /** @param onBatch told the size of every batch written (a metric). */
  constructor(sql: Sql, onBatch?: (messages: number) => void) {
    this.#sql = sql;
    this.#commit = new GroupCommit({
      ...(onBatch && { onFlush: onBatch }),
      key: (message) => message.conversationId,
      // One statement per node in flight; what arrives meanwhile rides the next one. More statements
      // add contention, not throughput (README, Benchmarks: "one statement in flight per node"), and
      // one leaves the pool to reads. The price: a statement waiting on a row lock (an edit's
      // transaction holding the conversation row) holds back this node's other sends until it
      // commits; such waits last milliseconds.
      maxInFlight: 1,
      maxBatch: 128,
      flush: (messages) => this.#insertBatch(messages),
      retryAlone: (error) => !isDatabaseUnavailable(error),
      flushOne: (message) =>
        this.#insert([message]).then(
          (rows) => rows.get(0) ?? null,
          (error: unknown) => {
            if (isUniqueViolation(error)) return null;
            throw error;
          },
        ),
    });
  }

  write(message: NewMessage): Promise<WrittenMessage | null> {
    return this.#commit.write(message);
  }

  /**
   * Two sends with the same (sender, clientMsgId) in one statement would make it fail on the unique
   * index; the later ones are left out and resolved as retries (their caller finds the original).
   * Should the statement fail, each is retried alone and shares the original's fate.
   */
  async #insertBatch(messages: NewMessage[]): Promise<Array<WrittenMessage | null>> {
    const seen = new Set<string>();
    const first: NewMessage[] = [];
    const slot = messages.map((message) => {
      const key = `${message.senderId}\u0000${message.clientMsgId}`;
      if (seen.has(key)) return -1;
      seen.add(key);
      return first.push(message) - 1;
    });
    const rows = await this.#insert(first);
    return slot.map((ord) => (ord < 0 ? null : (rows.get(ord) ?? null)));
  }

  async #insert(messages: NewMessage[]): Promise<Map<number, WrittenMessage>> {
    const rows = await this.#sql.query<WrittenMessage & { ord: number }>(INSERT_MESSAGES, [
      messages.map((_, ord) => ord),
      messages.map((m) => m.id),
      messages.map((m) => m.conversationId),
      messages.map((m) => m.senderId),
      messages.map((m) => m.clientMsgId),
      messages.map((m) => m.kind),
      messages.map((m) => m.body),
      messages.map((m) => m.replyToId),
      messages.map((m) => JSON.stringify(m.attachments)),
      messages.map((m) => m.systemSender === true),
      messages.map((m) => m.threadRootId),
    ]);
    return new Map(
      rows.map((row) => [
        Number(row.ord),
        { seq: Number(row.seq), version: Number(row.version), createdAt: row.createdAt, memberIds: row.memberIds, unarchivedIds: row.unarchivedIds ?? [], rootChanged: row.rootChanged },
      ]),
    );
  }
}

/** The batch insert; its parameters are one array per column, in the `ord` order of the batch. */
const INSERT_MESSAGES: Statement = {
  name: 'chat_insert_messages_v6',
  text: `
  WITH input AS (
    SELECT * FROM unnest($1::int[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::uuid[], $9::jsonb[], $10::bool[], $11::uuid[])
      AS t(ord, id, conversation_id, sender_id, client_msg_id, kind, body, reply_to_id, attachments, system_sender, thread_root_id)
  ), valid AS (
    SELECT i.* FROM input i
    WHERE (i.system_sender OR EXISTS (
        SELECT 1 FROM conversation_members cm
        WHERE cm.conversation_id = i.conversation_id AND cm.user_id = i.sender_id AND cm.left_at IS NULL))
      AND NOT EXISTS (SELECT 1 FROM messages d WHERE d.sender_id = i.sender_id AND d.client_msg_id = i.client_msg_id)
      AND (i.reply_to_id IS NULL OR EXISTS (
        SELECT 1 FROM messages r WHERE r.id = i.reply_to_id AND r.conversation_id = i.conversation_id))
      AND (i.thread_root_id IS NULL OR EXISTS (
        SELECT 1 FROM messages t WHERE t.id = i.thread_root_id AND t.conversation_id = i.conversation_id AND t.thread_root_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = i.sender_id AND h.message_id = t.id)))
  ), counts AS (
    -- Sorted, so concurrent batches lock shared conversations in the same order. r: the thread roots
    -- replied in, each of which takes a version after the messages'.
    SELECT conversation_id, count(*)::int AS n, count(DISTINCT thread_root_id)::int AS r FROM valid GROUP BY conversation_id ORDER BY conversation_id
  ), conv AS (
    UPDATE conversations c SET last_seq = c.last_seq + counts.n, version = c.version + counts.n + counts.r, last_activity_at = now()
    FROM counts WHERE c.id = counts.conversation_id
    RETURNING c.id, c.last_seq, c.version, counts.n, counts.r
  ), numbered AS (
    SELECT v.*, conv.last_seq - conv.n + row_number() OVER w AS seq, conv.version - conv.n - conv.r + row_number() OVER w AS version
    FROM valid v JOIN conv ON conv.id = v.conversation_id
    WINDOW w AS (PARTITION BY v.conversation_id ORDER BY v.ord)
  ), msg AS (
    INSERT INTO messages (id, conversation_id, seq, version, sender_id, client_msg_id, kind, body, reply_to_id, thread_root_id)
    SELECT id, conversation_id, seq, version, sender_id, client_msg_id, kind::"MessageKind", body, reply_to_id, thread_root_id FROM numbered
    RETURNING id, seq, version, created_at
  ), threads AS (
    SELECT conversation_id, thread_root_id, count(*)::int AS n, max(seq) AS last_seq,
           row_number() OVER (PARTITION BY conversation_id ORDER BY thread_root_id) AS k
    FROM numbered WHERE thread_root_id IS NOT NULL GROUP BY conversation_id, thread_root_id
  ), roots AS (
    -- Under the conversation's row lock taken above, like every other change to its messages.
    UPDATE messages m SET thread_reply_count = m.thread_reply_count + t.n, thread_last_reply_at = now(), version = conv.version - conv.r + t.k
    FROM threads t JOIN conv ON conv.id = t.conversation_id
    WHERE m.id = t.thread_root_id
    RETURNING m.id, t.last_seq
  ), att AS (
    INSERT INTO attachments (id, message_id, position, url, mime, size, name, upload_id)
    SELECT gen_random_uuid(), n.id, a.position, a.url, a.mime, a.size, a.name, a."uploadId"
    FROM numbered n CROSS JOIN jsonb_to_recordset(n.attachments) AS a(position int, url text, mime text, size int, name text, "uploadId" uuid)
  ), senders AS (
    SELECT conversation_id, sender_id, max(seq) AS seq FROM numbered GROUP BY conversation_id, sender_id
  ), member_rows AS (
    -- The member rows this statement changes: each sender's (their own watermarks move) and each
    -- archived, unmuted member's who got a message from someone else (it unarchives). Locked in
    -- (conversation, user) order here and in receipt batches, so the two kinds of statement cannot
    -- deadlock on them; other members' rows are neither locked nor written.
    SELECT m.conversation_id, m.user_id, s.seq, u.unarchive FROM conversation_members m
    JOIN counts k ON k.conversation_id = m.conversation_id
    LEFT JOIN senders s ON s.conversation_id = m.conversation_id AND s.sender_id = m.user_id
    CROSS JOIN LATERAL (SELECT m.archived_at IS NOT NULL AND m.left_at IS NULL
        AND (m.muted_until IS NULL OR m.muted_until <= now())
        AND EXISTS (SELECT 1 FROM numbered o WHERE o.conversation_id = m.conversation_id AND o.sender_id <> m.user_id) AS unarchive) u
    WHERE s.sender_id IS NOT NULL OR u.unarchive
    ORDER BY m.conversation_id, m.user_id FOR UPDATE OF m
  ), mine AS (
    UPDATE conversation_members m
       SET last_read_seq = GREATEST(m.last_read_seq, COALESCE(r.seq, 0)),
           last_delivered_seq = GREATEST(m.last_delivered_seq, COALESCE(r.seq, 0)),
           archived_at = CASE WHEN r.unarchive THEN NULL ELSE m.archived_at END
      FROM member_rows r
     WHERE m.conversation_id = r.conversation_id AND m.user_id = r.user_id
    RETURNING m.conversation_id, m.user_id, r.unarchive
  )
  SELECT n.ord, msg.seq::int AS seq, msg.version::int AS version, msg.created_at AS "createdAt",
         (SELECT array_agg(cm.user_id) FROM conversation_members cm
           WHERE cm.conversation_id = n.conversation_id AND cm.left_at IS NULL) AS "memberIds",
         -- On the conversation's first message of the batch only, so each is told once.
         CASE WHEN n.seq = conv.last_seq - conv.n + 1 THEN
           (SELECT array_agg(u.user_id) FROM mine u WHERE u.conversation_id = n.conversation_id AND u.unarchive)
         END AS "unarchivedIds",
         EXISTS (SELECT 1 FROM roots WHERE roots.id = n.thread_root_id AND roots.last_seq = n.seq) AS "rootChanged"
  FROM msg JOIN numbered n ON n.id = msg.id JOIN conv ON conv.id = n.conversation_id`,
};

/** PostgreSQL's unique_violation, however the driver adapter wraps it. */
function isUniqueViolation(error: unknown): boolean {
  const text = `${(error as { code?: string }).code ?? ''} ${(error as Error).message ?? ''} ${JSON.stringify((error as { meta?: unknown }).meta ?? {})}`;
  return /23505|P2002|UniqueConstraintViolation|unique constraint/i.test(text);
}
