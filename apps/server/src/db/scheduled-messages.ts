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

/**
 * Deletes up to `$2` rows that finished (sent, failed, canceled) more than `$1` milliseconds ago by
 * the database's clock, oldest first per status, and answers how many. `pending` and `sending` rows
 * are never selected, and finished rows never change again. Each status reads its own range of the
 * (status, updated_at) index in order and stops at the limit, so a batch costs the same whether
 * thousands or millions have expired (a plain `status IN (…)` may get a sequential scan of the
 * table). `SKIP LOCKED` passes over rows another sweep holds: concurrent sweeps split the work and
 * none waits; each statement holds locks only on its own batch, and only while it runs.
 */
const SWEEP: Statement = {
  name: 'chat_sweep_scheduled_v1',
  text: `
  WITH done AS MATERIALIZED (
    SELECT expired.id
      FROM unnest(ARRAY['sent', 'failed', 'canceled']::"ScheduledStatus"[]) AS finished(status)
     CROSS JOIN LATERAL (
       SELECT id FROM scheduled_messages
        WHERE status = finished.status AND updated_at < now() - make_interval(secs => $1::bigint / 1000.0)
        ORDER BY updated_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED
     ) AS expired
     LIMIT $2
  ), gone AS (
    DELETE FROM scheduled_messages s USING done WHERE s.id = done.id RETURNING 1
  )
  SELECT count(*)::int AS deleted FROM gone`,
};

/** The claim, finish and retention statements of the scheduler (domain/scheduler.ts, domain/scheduled-retention.ts). */
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

  /** Deletes at most `batch` rows that finished more than `retentionMs` ago; answers how many. */
  async sweep(retentionMs: number, batch: number): Promise<number> {
    const [row] = await this.#sql.query<{ deleted: number }>(SWEEP, [retentionMs, batch]);
    return Number(row?.deleted ?? 0);
  }
}

function time(value: Date | string): number {
  return (value instanceof Date ? value : new Date(value)).getTime();
}
