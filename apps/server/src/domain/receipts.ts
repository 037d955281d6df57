import type { Receipt } from '@chat/protocol';
import type { Db, Sql, Statement } from '../db/client.ts';
import { requireMember } from './access.ts';
import { isDatabaseUnavailable } from '../errors.ts';
import { GroupCommit } from './group-commit.ts';
import type { Fanout } from './fanout.ts';
import { toReceipt } from './wire.ts';

/**
 * Delivered and read watermarks, one pair per member: O(members) state, never per message. A message
 * with seq s is delivered to a member when their delivered watermark >= s, read when their read
 * watermark >= s; the sender's client derives "delivered to 3 of 5" from the members' watermarks.
 */
export class ReceiptService {
  readonly #db: Db;
  readonly #fanout: Fanout;
  readonly #writer: GroupCommit<ReceiptReport, MovedWatermarks | null>;

  /** @param options.onBatch told how many reports each statement carried (a metric). */
  constructor(db: Db, sql: Sql, fanout: Fanout, options: { onBatch?: (reports: number) => void } = {}) {
    this.#db = db;
    this.#fanout = fanout;
    this.#writer = new GroupCommit({
      ...(options.onBatch && { onFlush: options.onBatch }),
      // One statement per conversation in flight: its members' rows are locked in one order, and
      // this node learns each member's watermarks in the order they moved.
      key: (report) => report.conversationId,
      // One at a time per node, as for messages (see MessageWriter): more only adds lock contention.
      maxInFlight: 1,
      maxBatch: 256,
      flush: (reports) => writeReceipts(sql, reports),
      retryAlone: (error) => !isDatabaseUnavailable(error),
    });
  }

  /**
   * Moves the caller's watermarks forward, never back and never past the conversation's last seq; read
   * implies delivered. An old or duplicate report changes nothing and notifies nobody. Acked after
   * commit; concurrent reports share one statement (group commit, like new messages: every delivered
   * message brings one or two reports, so committing each alone doubled the database's work).
   */
  async mark(actorId: string, input: { conversationId: string; delivered?: number | undefined; read?: number | undefined }, origin?: string): Promise<Receipt> {
    const read = input.read ?? 0;
    const delivered = Math.max(input.delivered ?? 0, read);
    const moved = await this.#writer.write({ conversationId: input.conversationId, userId: actorId, delivered, read });
    if (!moved) {
      // Nothing moved: either a stale report (answer the current state) or not a member (not_found).
      const member = await requireMember(this.#db, input.conversationId, actorId);
      return toReceipt(input.conversationId, member);
    }
    const receipt = toReceipt(input.conversationId, { userId: actorId, lastDeliveredSeq: moved.lastDeliveredSeq, lastReadSeq: moved.lastReadSeq });
    if (moved.notify) this.#fanout.toUsers(moved.memberIds, 'receipt:updated', receipt, { except: origin });
    return receipt;
  }
}

interface ReceiptReport {
  conversationId: string;
  userId: string;
  delivered: number;
  read: number;
}

interface MovedWatermarks {
  lastDeliveredSeq: number;
  lastReadSeq: number;
  memberIds: string[];
  /** False for the other reports of one member merged into a statement: one fan-out per change. */
  notify: boolean;
}

/**
 * One UPDATE for a batch of reports. Reports of one member and conversation are merged first (the
 * highest of each watermark wins): an UPDATE … FROM with two input rows for one target row would apply
 * only one of them. `null` for a report that moved nothing (stale, or not a member).
 */
async function writeReceipts(sql: Sql, reports: ReceiptReport[]): Promise<Array<MovedWatermarks | null>> {
  const merged = new Map<string, ReceiptReport>();
  for (const report of reports) {
    const key = receiptKey(report);
    const seen = merged.get(key);
    if (!seen) merged.set(key, { ...report });
    else merged.set(key, { ...seen, delivered: Math.max(seen.delivered, report.delivered), read: Math.max(seen.read, report.read) });
  }
  const input = [...merged.values()];
  const rows = await sql.query<{ conversationId: string; userId: string; lastDeliveredSeq: number; lastReadSeq: number; memberIds: string[] }>(UPDATE_WATERMARKS, [
    input.map((r) => r.conversationId),
    input.map((r) => r.userId),
    input.map((r) => r.delivered),
    input.map((r) => r.read),
  ]);
  const byKey = new Map(rows.map((row) => [receiptKey(row), row]));
  const notified = new Set<string>();
  return reports.map((report) => {
    const key = receiptKey(report);
    const row = byKey.get(key);
    if (!row) return null;
    const notify = !notified.has(key);
    notified.add(key);
    return { lastDeliveredSeq: Number(row.lastDeliveredSeq), lastReadSeq: Number(row.lastReadSeq), memberIds: row.memberIds, notify };
  });
}

/** The batch of watermark moves; its parameters are one array per column of the merged reports. */
const UPDATE_WATERMARKS: Statement = {
  name: 'chat_update_watermarks_v1',
  text: `
  WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::int[]) AS t(conversation_id, user_id, delivered, read)
  ), locked AS (
    -- Locked in (conversation, user) order, as the message writer locks senders' rows: no deadlocks.
    SELECT m.conversation_id, m.user_id, i.delivered, i.read FROM conversation_members m
    JOIN input i ON m.conversation_id = i.conversation_id AND m.user_id = i.user_id
    WHERE m.left_at IS NULL
    ORDER BY m.conversation_id, m.user_id FOR UPDATE OF m
  )
  UPDATE conversation_members m
     SET last_delivered_seq = GREATEST(m.last_delivered_seq, LEAST(i.delivered, c.last_seq)),
         last_read_seq = GREATEST(m.last_read_seq, LEAST(i.read, c.last_seq))
    FROM locked i JOIN conversations c ON c.id = i.conversation_id
   WHERE m.conversation_id = i.conversation_id AND m.user_id = i.user_id AND m.left_at IS NULL
     AND (LEAST(i.delivered, c.last_seq) > m.last_delivered_seq OR LEAST(i.read, c.last_seq) > m.last_read_seq)
  RETURNING m.conversation_id::text AS "conversationId", m.user_id AS "userId",
    m.last_delivered_seq AS "lastDeliveredSeq", m.last_read_seq AS "lastReadSeq",
    (SELECT array_agg(o.user_id) FROM conversation_members o
      WHERE o.conversation_id = m.conversation_id AND o.left_at IS NULL) AS "memberIds"`,
};

function receiptKey(report: { conversationId: string; userId: string }): string {
  return `${report.conversationId}\u0000${report.userId}`;
}
