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

/**
 * The batch of watermark moves: the PL/pgSQL function of migration `watermarks_function`, which holds
 * the statement and keeps one generic plan of it per connection. Each member row is locked in
 * (conversation, user) order, as the message writer locks senders' rows, so the two cannot deadlock;
 * a watermark only moves forward and never past the conversation's last seq. Its parameters are one
 * array per column of the merged reports.
 */
const UPDATE_WATERMARKS: Statement = {
  name: 'chat_update_watermarks_v2',
  text: 'SELECT * FROM chat_update_watermarks_v2($1::uuid[], $2::text[], $3::int[], $4::int[])',
};

function receiptKey(report: { conversationId: string; userId: string }): string {
  return `${report.conversationId}\u0000${report.userId}`;
}
