import type { Receipt } from '@chat/protocol';
import type { Db } from '../db/client.ts';
import { requireMember } from './access.ts';
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

  constructor(db: Db, fanout: Fanout) {
    this.#db = db;
    this.#fanout = fanout;
  }

  /**
   * Moves the caller's watermarks forward, never back and never past the conversation's last seq; read
   * implies delivered. An old or duplicate report changes nothing and notifies nobody.
   */
  async mark(actorId: string, input: { conversationId: string; delivered?: number | undefined; read?: number | undefined }, origin?: string): Promise<Receipt> {
    const read = input.read ?? 0;
    const delivered = Math.max(input.delivered ?? 0, read);
    const rows = await this.#db.$queryRaw<Array<{ lastDeliveredSeq: number; lastReadSeq: number; memberIds: string[] }>>`
      UPDATE conversation_members m
         SET last_delivered_seq = GREATEST(m.last_delivered_seq, LEAST(${delivered}::int, c.last_seq)),
             last_read_seq = GREATEST(m.last_read_seq, LEAST(${read}::int, c.last_seq))
        FROM conversations c
       WHERE c.id = m.conversation_id
         AND m.conversation_id = ${input.conversationId}::uuid AND m.user_id = ${actorId} AND m.left_at IS NULL
         AND (LEAST(${delivered}::int, c.last_seq) > m.last_delivered_seq OR LEAST(${read}::int, c.last_seq) > m.last_read_seq)
      RETURNING m.last_delivered_seq AS "lastDeliveredSeq", m.last_read_seq AS "lastReadSeq",
        (SELECT array_agg(o.user_id) FROM conversation_members o
          WHERE o.conversation_id = m.conversation_id AND o.left_at IS NULL) AS "memberIds"`;
    const row = rows[0];
    if (!row) {
      // Nothing moved: either a stale report (answer the current state) or not a member (not_found).
      const member = await requireMember(this.#db, input.conversationId, actorId);
      return toReceipt(input.conversationId, member);
    }
    const receipt = toReceipt(input.conversationId, { userId: actorId, lastDeliveredSeq: Number(row.lastDeliveredSeq), lastReadSeq: Number(row.lastReadSeq) });
    this.#fanout.toUsers(row.memberIds, 'receipt:updated', receipt, { except: origin });
    return receipt;
  }
}
