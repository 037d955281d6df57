-- The receipt batch (ReceiptWriter) as a PL/pgSQL function, for the reason and with the guarantee of
-- chat_insert_messages_v7 (migration message_insert_function): one generic plan per server
-- connection, also behind PgBouncer, where a prepared statement would be planned anew on every call;
-- its plan pinned to index scans and nested loops whatever the statistics, as there.
-- Parameters: one array per column of the merged reports.
CREATE FUNCTION chat_update_watermarks_v2(
  p_conversation_id uuid[],
  p_user_id text[],
  p_delivered int[],
  p_read int[]
) RETURNS TABLE ("conversationId" text, "userId" text, "lastDeliveredSeq" int, "lastReadSeq" int, "memberIds" text[])
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $fn$
#variable_conflict use_column
BEGIN
  RETURN QUERY
    WITH input AS (
      SELECT * FROM unnest(p_conversation_id, p_user_id, p_delivered, p_read) AS t(conversation_id, user_id, delivered, read)
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
        WHERE o.conversation_id = m.conversation_id AND o.left_at IS NULL) AS "memberIds";
END
$fn$;
