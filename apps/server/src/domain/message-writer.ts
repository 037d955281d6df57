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

/**
 * The batch insert: the PL/pgSQL function of migration `message_insert_function`, which holds the
 * statement (see MessageWriter for what it does) and keeps one generic plan of it per connection.
 * Its parameters are one array per column, in the `ord` order of the batch.
 */
const INSERT_MESSAGES: Statement = {
  name: 'chat_insert_messages_v7',
  text: 'SELECT * FROM chat_insert_messages_v7($1::int[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::uuid[], $9::jsonb[], $10::bool[], $11::uuid[])',
};

/** PostgreSQL's unique_violation, however the driver adapter wraps it. */
function isUniqueViolation(error: unknown): boolean {
  const text = `${(error as { code?: string }).code ?? ''} ${(error as Error).message ?? ''} ${JSON.stringify((error as { meta?: unknown }).meta ?? {})}`;
  return /23505|P2002|UniqueConstraintViolation|unique constraint/i.test(text);
}
