import type { Db } from '../db/client.ts';
import { isDatabaseUnavailable } from '../errors.ts';

export interface NewMessage {
  id: string;
  conversationId: string;
  senderId: string;
  clientMsgId: string;
  kind: 'text' | 'image' | 'file';
  body: string;
  replyToId: string | null;
  attachments: Array<{ position: number; url: string; mime: string; size: number; name: string }>;
}

export interface WrittenMessage {
  seq: number;
  version: number;
  createdAt: Date;
  /** Current members of the conversation, to fan the message out to. */
  memberIds: string[];
}

/** Most messages one statement carries. */
const MAX_BATCH = 128;
/**
 * Statements in flight at once. Below this, a message is written at once (no added latency); above
 * it, messages queue and the next free slot writes all of them in one statement: the more load, the
 * bigger the batches. Kept below the connection pool size so reads are never starved.
 */
const MAX_IN_FLIGHT = 4;

/**
 * Group commit for new messages. Each statement inserts a batch of messages, possibly into many
 * conversations, in one round trip and one transaction: per message it checks membership,
 * idempotency and the reply target; per conversation it takes the row lock once and reserves as many
 * seqs and versions as it has messages, numbering them in arrival order; it inserts the messages and
 * their attachments and moves the senders' own watermarks. Commit cost, parsing and planning are
 * shared by the batch, which is what bounds throughput (one commit per message saturated PostgreSQL).
 *
 * Guarantees: a message resolves with its seq only after the statement committed; `null` means it
 * was not written (a retry of an existing clientMsgId, not a member, bad reply target) and the
 * caller finds out which. A statement that fails as a whole (a racing duplicate hitting the unique
 * index, a deadlock) writes nothing; its messages are then retried one per statement, so one bad
 * message cannot fail the others and seqs stay gap-free.
 *
 * Written by hand: no library does group commit over Prisma's driver adapters.
 */
interface Pending {
  message: NewMessage;
  resolve: (row: WrittenMessage | null) => void;
  reject: (error: unknown) => void;
}

export class MessageWriter {
  readonly #db: Db;
  #queue: Pending[] = [];
  #inFlight = 0;
  /** Conversations with a statement in flight. */
  readonly #busy = new Set<string>();

  constructor(db: Db) {
    this.#db = db;
  }

  write(message: NewMessage): Promise<WrittenMessage | null> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ message, resolve, reject });
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#inFlight < MAX_IN_FLIGHT && this.#queue.length > 0) {
      const batch = this.#takeBatch();
      if (batch.length === 0) return; // everything queued waits for a conversation already being written
      this.#inFlight++;
      for (const entry of batch) this.#busy.add(entry.message.conversationId);
      void this.#flush(batch).finally(() => {
        for (const entry of batch) this.#busy.delete(entry.message.conversationId);
        this.#inFlight--;
        this.#pump();
      });
    }
  }

  /**
   * At most one statement per conversation is in flight. Two concurrent statements on one conversation
   * would serialize on its row lock anyway, and their results could reach us in either order; this
   * way this node learns (and fans out) each conversation's messages in seq order.
   */
  #takeBatch(): Pending[] {
    const batch: Pending[] = [];
    const rest: Pending[] = [];
    for (const entry of this.#queue) {
      if (batch.length < MAX_BATCH && !this.#busy.has(entry.message.conversationId)) batch.push(entry);
      else rest.push(entry);
    }
    this.#queue = rest;
    return batch;
  }

  async #flush(batch: Pending[]): Promise<void> {
    // Two sends with the same (sender, clientMsgId) in one batch would make the whole statement fail
    // on the unique index; the later ones wait for the first and share its fate: a retry of a written
    // message (the caller finds the original), or the first one's error (never a false "not written").
    const firstOf = new Map<string, Pending>();
    const first: Pending[] = [];
    const later: Array<{ entry: Pending; first: Pending }> = [];
    for (const entry of batch) {
      const key = `${entry.message.senderId}\u0000${entry.message.clientMsgId}`;
      const earlier = firstOf.get(key);
      if (earlier) later.push({ entry, first: earlier });
      else {
        firstOf.set(key, entry);
        first.push(entry);
      }
    }
    const failed = new Map<Pending, unknown>();
    const settle = (entry: Pending, error: unknown) => {
      if (!isUniqueViolation(error)) failed.set(entry, error);
      settleAlone(entry, error);
    };
    try {
      const rows = await this.#insert(first.map((entry) => entry.message));
      first.forEach((entry, ord) => entry.resolve(rows.get(ord) ?? null));
    } catch (error) {
      // Retrying one by one against a database that is down would only multiply the wait.
      if (first.length === 1 || isDatabaseUnavailable(error)) for (const entry of first) settle(entry, error);
      else for (const entry of first) await this.#insert([entry.message]).then((rows) => entry.resolve(rows.get(0) ?? null), (alone: unknown) => settle(entry, alone));
    }
    for (const { entry, first: original } of later) {
      if (failed.has(original)) entry.reject(failed.get(original));
      else entry.resolve(null);
    }
  }

  async #insert(messages: NewMessage[]): Promise<Map<number, WrittenMessage>> {
    const rows = await this.#db.$queryRaw<Array<WrittenMessage & { ord: number }>>`
      WITH input AS (
        SELECT * FROM unnest(
          ${messages.map((_, ord) => ord)}::int[], ${messages.map((m) => m.id)}::uuid[],
          ${messages.map((m) => m.conversationId)}::uuid[], ${messages.map((m) => m.senderId)}::text[],
          ${messages.map((m) => m.clientMsgId)}::text[], ${messages.map((m) => m.kind)}::text[],
          ${messages.map((m) => m.body)}::text[], ${messages.map((m) => m.replyToId)}::uuid[],
          ${messages.map((m) => JSON.stringify(m.attachments))}::jsonb[]
        ) AS t(ord, id, conversation_id, sender_id, client_msg_id, kind, body, reply_to_id, attachments)
      ), valid AS (
        SELECT i.* FROM input i
        JOIN conversation_members cm ON cm.conversation_id = i.conversation_id AND cm.user_id = i.sender_id AND cm.left_at IS NULL
        WHERE NOT EXISTS (SELECT 1 FROM messages d WHERE d.sender_id = i.sender_id AND d.client_msg_id = i.client_msg_id)
          AND (i.reply_to_id IS NULL OR EXISTS (
            SELECT 1 FROM messages r WHERE r.id = i.reply_to_id AND r.conversation_id = i.conversation_id))
      ), counts AS (
        -- Sorted, so concurrent batches lock shared conversations in the same order.
        SELECT conversation_id, count(*)::int AS n FROM valid GROUP BY conversation_id ORDER BY conversation_id
      ), conv AS (
        UPDATE conversations c SET last_seq = c.last_seq + counts.n, version = c.version + counts.n, last_activity_at = now()
        FROM counts WHERE c.id = counts.conversation_id
        RETURNING c.id, c.last_seq, c.version, counts.n
      ), numbered AS (
        SELECT v.*, conv.last_seq - conv.n + row_number() OVER w AS seq, conv.version - conv.n + row_number() OVER w AS version
        FROM valid v JOIN conv ON conv.id = v.conversation_id
        WINDOW w AS (PARTITION BY v.conversation_id ORDER BY v.ord)
      ), msg AS (
        INSERT INTO messages (id, conversation_id, seq, version, sender_id, client_msg_id, kind, body, reply_to_id)
        SELECT id, conversation_id, seq, version, sender_id, client_msg_id, kind::"MessageKind", body, reply_to_id FROM numbered
        RETURNING id, seq, version, created_at
      ), att AS (
        INSERT INTO attachments (id, message_id, position, url, mime, size, name)
        SELECT gen_random_uuid(), n.id, a.position, a.url, a.mime, a.size, a.name
        FROM numbered n CROSS JOIN jsonb_to_recordset(n.attachments) AS a(position int, url text, mime text, size int, name text)
      ), mine AS (
        UPDATE conversation_members m
           SET last_read_seq = GREATEST(m.last_read_seq, s.seq), last_delivered_seq = GREATEST(m.last_delivered_seq, s.seq)
          FROM (SELECT conversation_id, sender_id, max(seq) AS seq FROM numbered GROUP BY conversation_id, sender_id) s
         WHERE m.conversation_id = s.conversation_id AND m.user_id = s.sender_id
      )
      SELECT n.ord, msg.seq::int AS seq, msg.version::int AS version, msg.created_at AS "createdAt",
             (SELECT array_agg(cm.user_id) FROM conversation_members cm
               WHERE cm.conversation_id = n.conversation_id AND cm.left_at IS NULL) AS "memberIds"
      FROM msg JOIN numbered n ON n.id = msg.id`;
    return new Map(rows.map((row) => [Number(row.ord), { seq: Number(row.seq), version: Number(row.version), createdAt: row.createdAt, memberIds: row.memberIds }]));
  }
}

/** A message whose own statement failed: a racing duplicate is "not written" (the caller finds the original); anything else is an error. */
function settleAlone(entry: Pending, error: unknown): void {
  if (isUniqueViolation(error)) entry.resolve(null);
  else entry.reject(error);
}

/** PostgreSQL's unique_violation, however the driver adapter wraps it. */
function isUniqueViolation(error: unknown): boolean {
  const text = `${(error as { code?: string }).code ?? ''} ${(error as Error).message ?? ''} ${JSON.stringify((error as { meta?: unknown }).meta ?? {})}`;
  return /23505|P2002|UniqueConstraintViolation|unique constraint/i.test(text);
}
