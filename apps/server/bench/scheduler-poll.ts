/**
 * `npm run bench:scheduler-poll` — what the scheduler's idle poll costs PostgreSQL. Every node runs
 * one claim statement every SCHEDULER_POLL_MS whether anything is due or not, so this is a cost that
 * grows with the node count, not with the load. Against a throwaway database holding --pending rows
 * due later (nothing to claim, the common case) and --finished ended rows, it runs the claim --calls
 * times on one connection and reads that backend's CPU time from /proc (PostgreSQL must run on this
 * machine). Prints PostgreSQL CPU µs per claim, and what the polls of 1, 3 and 6 nodes add per message
 * at a given load.
 *
 * `--explain` also prints the claim's plan (EXPLAIN ANALYZE; with nothing due it changes nothing).
 *
 *   npm run bench:scheduler-poll -- [--calls 5000] [--pending 10000] [--finished 100000] [--poll-ms 250] [--rate 600] [--explain]
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import type { Sql } from '../src/db/client.ts';
import { ScheduledStore } from '../src/db/scheduled-messages.ts';
import { throwawayDatabase } from './database.ts';
import { cpuSeconds } from './process-stats.ts';

const { values } = parseArgs({
  options: {
    calls: { type: 'string', default: '5000' },
    pending: { type: 'string', default: '10000' },
    finished: { type: 'string', default: '100000' },
    'poll-ms': { type: 'string', default: '250' },
    rate: { type: 'string', default: '600' },
    explain: { type: 'boolean', default: false },
  },
});
const calls = Number(values.calls);
const pollMs = Number(values['poll-ms']);
const rate = Number(values.rate);

const cpuMicros = (pid: number) => cpuSeconds(pid) * 1e6;

const database = await throwawayDatabase('bench_sched');
const client = new pg.Client({ connectionString: database.url });
try {
  await client.connect();
  await client.query(`INSERT INTO users (id, display_name) VALUES ('bench-user', 'bench')`);
  const { rows } = await client.query<{ id: string }>(`INSERT INTO conversations (id, kind, last_seq, version) VALUES (gen_random_uuid(), 'group', 0, 0) RETURNING id::text AS id`);
  const conversationId = rows[0]!.id;
  const insertRows = (count: number, status: string, sendAt: string) =>
    client.query(
      `INSERT INTO scheduled_messages (id, conversation_id, sender_id, client_msg_id, body, send_at, status, updated_at)
       SELECT gen_random_uuid(), $1::uuid, 'bench-user', $2 || g, 'later', ${sendAt}, $3::"ScheduledStatus", now() FROM generate_series(1, $4::int) g`,
      [conversationId, `bench-${status}-`, status, count],
    );
  await insertRows(Number(values.pending), 'pending', `now() + interval '1 hour'`);
  await insertRows(Number(values.finished), 'sent', `now() - interval '1 hour'`);
  await client.query('ANALYZE scheduled_messages');

  let last: { text: string; params: unknown[] } | null = null;
  const sql: Sql = {
    query: async (statement, params) => {
      last = { text: statement.text, params: params as unknown[] };
      return (await client.query({ name: statement.name, text: statement.text, values: params as unknown[] })).rows;
    },
  };
  const store = new ScheduledStore(sql);
  const pid = Number((await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid);
  for (let i = 0; i < 200; i++) await store.claim(200, 15_000, 'bench'); // warm-up: plan cached, pages in memory

  const cpuBefore = cpuMicros(pid);
  const started = performance.now();
  for (let i = 0; i < calls; i++) await store.claim(200, 15_000, 'bench');
  const wallUs = ((performance.now() - started) * 1000) / calls;
  const pgUs = (cpuMicros(pid) - cpuBefore) / calls;

  console.log(`scheduler claim with nothing due (${values.pending} pending later, ${values.finished} finished rows), ${calls} calls:`);
  console.log(`  PostgreSQL backend CPU ${pgUs.toFixed(1)} µs per claim; round trip ${wallUs.toFixed(1)} µs`);
  console.log(`  polls per second per node at SCHEDULER_POLL_MS=${pollMs}: ${(1000 / pollMs).toFixed(1)}`);
  if (values.explain && last) {
    const { text, params } = last as { text: string; params: unknown[] };
    const plan = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${text}`, params);
    console.log(plan.rows.map((row) => `    ${row['QUERY PLAN']}`).join('\n'));
  }
  for (const nodes of [1, 3, 6]) {
    const perSecond = (nodes * 1000 * pgUs) / pollMs;
    console.log(`  ${nodes} node(s): ${perSecond.toFixed(0)} µs of PostgreSQL CPU per second, ${(perSecond / rate).toFixed(2)} µs per message at ${rate} msgs/s`);
  }
} finally {
  await client.end().catch(() => {});
  await database.drop();
}
