/**
 * `npm run bench:writer` — what the message insert statement (MessageWriter, the group commit every
 * send goes through) costs PostgreSQL, with nothing else running: no node, no sockets, no fan-out.
 * Against a throwaway database of --conversations two-member conversations, it writes --messages
 * messages in rounds of --batch concurrent sends (one statement each round, distinct conversations),
 * on one connection, and reads that backend's CPU time from /proc (PostgreSQL must run on this
 * machine). With --thread-share s, that share of the messages are replies in a thread of their
 * conversation's first message. Prints PostgreSQL CPU µs per message and per statement, the round
 * trip per statement, and the WAL written per message (the whole server's; run it on a quiet one).
 *
 *   npm run bench:writer -- [--messages 20000] [--batch 1] [--conversations 1000] [--thread-share 0]
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import pg from 'pg';
import type { Sql } from '../src/db/client.ts';
import { MessageWriter, type NewMessage } from '../src/domain/message-writer.ts';
import { throwawayDatabase } from './database.ts';
import { cpuSeconds } from './process-stats.ts';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '20000' },
    batch: { type: 'string', default: '1' },
    conversations: { type: 'string', default: '1000' },
    'thread-share': { type: 'string', default: '0' },
  },
});
const total = Number(values.messages);
const batch = Number(values.batch);
const conversationCount = Number(values.conversations);
const threadShare = Number(values['thread-share']);

const cpuMicros = (pid: number) => cpuSeconds(pid) * 1e6;

const database = await throwawayDatabase('bench_writer');
const client = new pg.Client({ connectionString: database.url });
try {
  await client.connect();
  const conversations = Array.from({ length: conversationCount }, (_, i) => ({ id: randomUUID(), a: `w-${i}-a`, b: `w-${i}-b` }));
  await client.query(`INSERT INTO users (id, display_name) SELECT u, u FROM unnest($1::text[]) u`, [conversations.flatMap((c) => [c.a, c.b])]);
  await client.query(`INSERT INTO conversations (id, kind, last_seq, version) SELECT id, 'group', 0, 0 FROM unnest($1::uuid[]) id`, [conversations.map((c) => c.id)]);
  await client.query(`INSERT INTO conversation_members (conversation_id, user_id) SELECT c, u FROM unnest($1::uuid[], $2::text[]) AS t(c, u)`, [
    conversations.flatMap((c) => [c.id, c.id]),
    conversations.flatMap((c) => [c.a, c.b]),
  ]);

  let statements = 0;
  const sql: Sql = {
    query: async (statement, params) => {
      statements += 1;
      return (await client.query({ name: statement.name, text: statement.text, values: params as unknown[] })).rows;
    },
  };
  const writer = new MessageWriter(sql);
  let sent = 0;
  const message = (conversation: (typeof conversations)[number], threadRootId: string | null): NewMessage => {
    sent += 1;
    return {
      id: randomUUID(),
      conversationId: conversation.id,
      senderId: sent % 2 === 0 ? conversation.a : conversation.b,
      clientMsgId: `w-${sent}`,
      kind: 'text',
      body: 'a message of ordinary length, about as long as a chat line is',
      replyToId: null,
      threadRootId,
      attachments: [],
    };
  };
  // Every conversation's first message (the thread roots, and the tables warm), one statement at a
  // time, as a node's first sends arrive: PostgreSQL settles between planning a prepared statement
  // anew on every call and keeping a generic plan on its first five executions.
  const roots = new Map<string, string>();
  for (const conversation of conversations) {
    const first = message(conversation, null);
    roots.set(conversation.id, first.id);
    await writer.write(first);
  }
  await client.query('ANALYZE');

  const pid = Number((await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid);
  const statementsBefore = statements;
  const walBefore = (await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
  const cpuBefore = cpuMicros(pid);
  const started = performance.now();
  let written = 0;
  for (let round = 0; written < total; round++) {
    const picks = Array.from({ length: Math.min(batch, total - written) }, (_, i) => conversations[(round * batch + i) % conversations.length]!);
    const results = await Promise.all(picks.map((conversation) => writer.write(message(conversation, Math.random() < threadShare ? roots.get(conversation.id)! : null))));
    if (results.some((result) => result === null)) throw new Error('a message was not written');
    written += picks.length;
  }
  const wallMs = performance.now() - started;
  const cpu = cpuMicros(pid) - cpuBefore;
  const ran = statements - statementsBefore;
  const wal = (await client.query<{ bytes: string }>('SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint AS bytes', [walBefore])).rows[0]!.bytes;
  const plans = await client.query<{ name: string; generic: string; custom: string }>(
    `SELECT name, generic_plans AS generic, custom_plans AS custom FROM pg_prepared_statements WHERE name LIKE 'chat_insert_messages%'`,
  );
  console.log(`message insert statement: ${total} messages, ${(total / ran).toFixed(2)} per statement, thread replies ${(threadShare * 100).toFixed(0)}%`);
  console.log(
    `  PostgreSQL backend CPU ${(cpu / total).toFixed(1)} µs per message, ${(cpu / ran).toFixed(1)} µs per statement; round trip ${((wallMs * 1000) / ran).toFixed(1)} µs per statement; WAL ${(Number(wal) / total).toFixed(0)} bytes per message`,
  );
  // The call's own plan (trivial); the insert inside the function always runs on its generic plan.
  for (const row of plans.rows) console.log(`  ${row.name}: ${row.generic} runs on the generic plan, ${row.custom} planned anew`);
} finally {
  await client.end().catch(() => {});
  await database.drop();
}
