-- The message batch insert (MessageWriter) as a PL/pgSQL function, so that its one statement is
-- planned once per server connection and then runs on that generic plan (the function's SET). Sent
-- as a prepared statement it would be planned anew on every call: PostgreSQL compares a custom plan,
-- which sees how long the parameter arrays are (one or two messages), with the generic plan, which
-- assumes unnest's 100 rows, so the custom plan always looks cheaper, and planning this statement
-- costs as much CPU as running it. The plan is cached by the server connection, so this also holds
-- behind PgBouncer in transaction mode, where the node's statements run unnamed.
-- That one plan may be made before the tables have statistics (a new database, a restore), and is
-- kept until they change; planned then, PostgreSQL would hash whole tables for each batch. The other
-- SETs pin the plan to the shape that is right at any table size: every row reached through an index,
-- joins as nested loops over the batch's few rows (a test checks the plan on an unanalysed database).
-- Parameters: one array per column, in the batch's `ord` order.
CREATE FUNCTION chat_insert_messages_v7(
  p_ord int[],
  p_id uuid[],
  p_conversation_id uuid[],
  p_sender_id text[],
  p_client_msg_id text[],
  p_kind text[],
  p_body text[],
  p_reply_to_id uuid[],
  p_attachments jsonb[],
  p_system_sender bool[],
  p_thread_root_id uuid[]
) RETURNS TABLE (ord int, seq int, version int, "createdAt" timestamptz, "memberIds" text[], "unarchivedIds" text[], "rootChanged" boolean)
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
      SELECT * FROM unnest(p_ord, p_id, p_conversation_id, p_sender_id, p_client_msg_id, p_kind, p_body, p_reply_to_id, p_attachments, p_system_sender, p_thread_root_id)
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
    FROM msg JOIN numbered n ON n.id = msg.id JOIN conv ON conv.id = n.conversation_id;
END
$fn$;
