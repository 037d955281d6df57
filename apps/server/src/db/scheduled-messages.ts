import type { ScheduledStatus } from '@chat/protocol';
import type { Sql, Statement } from './client.ts';

/** A claimed row: what the send needs, and the wire fields for the push afterwards. */
export interface ClaimedRow {
  id: string;
  conversationId: string;
  senderId: string;
  clientMsgId: string;
  body: string;
  attachments: unknown;
  sendAt: Date | string;
  status: ScheduledStatus;
  attempts: number;
  messageId: string | null;
  error: string | null;
  createdAt: Date | string;
  updatedAt: Date | string;
}

/** The end of one claimed row: sent as a message, or failed with a catalog code. */
export type Outcome = { id: string; status: 'sent'; messageId: string } | { id: string; status: 'failed'; error: string };

/**
 * Claims up to `$1` due rows for `$2` milliseconds for node `$3`: pending ones whose time has come, and ones
 * another node claimed but did not finish before its lease ran out (it died, or lost the database).
 * `SKIP LOCKED` lets every node claim at once without waiting on each other: each row goes to one
 * node. `MATERIALIZED` keeps the locking subquery from being inlined and run more than once.
 */
const CLAIM: Statement = {
  name: 'chat_claim_scheduled_v2',
  text: `
  WITH due AS MATERIALIZED (
    SELECT id FROM scheduled_messages
     WHERE (status = 'pending' AND send_at <= now()) OR (status = 'sending' AND lease_until < now())
     ORDER BY send_at
     LIMIT $1
     FOR UPDATE SKIP LOCKED
  )
  UPDATE scheduled_messages s
     SET status = 'sending', lease_until = now() + make_interval(secs => $2::int / 1000.0), attempts = s.attempts + 1, claimed_by = $3, updated_at = now()
    FROM due
   WHERE s.id = due.id
  RETURNING s.id::text AS id, s.conversation_id::text AS "conversationId", s.sender_id AS "senderId", s.client_msg_id AS "clientMsgId",
            s.body, s.attachments, s.send_at AS "sendAt", s.status::text AS status, s.attempts, s.message_id::text AS "messageId",
            s.error, s.created_at AS "createdAt", s.updated_at AS "updatedAt"`,
};

/**
 * Ends a round in one statement: each row becomes `sent` (with its message) or `failed`. Only rows
 * still `sending` change: a node that outlived its lease and finishes after another node took the
 * row over writes the same outcome (the message is the same, found by clientMsgId).
 */
const FINISH: Statement = {
  name: 'chat_finish_scheduled_v1',
  text: `
  UPDATE scheduled_messages s
     SET status = o.status::"ScheduledStatus", message_id = o.message_id, error = o.error, lease_until = NULL, updated_at = now()
    FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[]) AS o(id, status, message_id, error)
   WHERE s.id = o.id AND s.status = 'sending'
  RETURNING s.id::text AS id, s.updated_at AS "updatedAt"`,
};

/** The claim and finish statements of the scheduler (domain/scheduler.ts). */
export class ScheduledStore {
  readonly #sql: Sql;

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /** Up to `batch` due rows, now `sending` for `leaseMs` on behalf of `nodeId`, soonest first. */
  async claim(batch: number, leaseMs: number, nodeId: string): Promise<ClaimedRow[]> {
    const rows = await this.#sql.query<ClaimedRow>(CLAIM, [batch, leaseMs, nodeId]);
    return rows.map((row) => ({ ...row, attempts: Number(row.attempts) })).sort((a, b) => time(a.sendAt) - time(b.sendAt) || (a.id < b.id ? -1 : 1));
  }

  /** Records the outcomes; answers the update time of each row it changed. */
  async finish(outcomes: readonly Outcome[]): Promise<Map<string, Date | string>> {
    if (outcomes.length === 0) return new Map();
    const rows = await this.#sql.query<{ id: string; updatedAt: Date | string }>(FINISH, [
      outcomes.map((o) => o.id),
      outcomes.map((o) => o.status),
      outcomes.map((o) => (o.status === 'sent' ? o.messageId : null)),
      outcomes.map((o) => (o.status === 'failed' ? o.error : null)),
    ]);
    return new Map(rows.map((row) => [row.id, row.updatedAt]));
  }
}

function time(value: Date | string): number {
  return (value instanceof Date ? value : new Date(value)).getTime();
}
