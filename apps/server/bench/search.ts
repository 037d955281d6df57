// Full-text search at scale: 1,000,000 messages over 10,000 conversations, searched by a user who is
// a member of 50 of them, through the same SearchService the nodes run.
//
//   npm run bench:search [-- --messages 1000000 --conversations 10000 --memberships 50 --queries 300]
//
// Seeds a throwaway database (created, migrated and dropped here) with SQL generate_series, never
// through the app: bodies of 6-16 words drawn from a 20,000-word vocabulary with a skewed (Zipf-like)
// frequency, so there are very common words, rare ones and everything between. Prints p50/p95/p99 per
// query class and over all, then EXPLAIN (ANALYZE, BUFFERS) of the search statement for a common and
// a rare word, to show which indexes PostgreSQL uses.
import { parseArgs } from 'node:util';
import { cpus, totalmem } from 'node:os';
import { execSync } from 'node:child_process';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../src/generated/prisma/client.ts';
import { SearchService, searchStatement, type SearchQuery, type SearchScan } from '../src/domain/search.ts';
import { throwawayDatabase } from './database.ts';

const { values: args } = parseArgs({
  options: {
    messages: { type: 'string', default: '1000000' },
    conversations: { type: 'string', default: '10000' },
    memberships: { type: 'string', default: '50' },
    queries: { type: 'string', default: '300' },
    keep: { type: 'boolean', default: false },
  },
});
const MESSAGES = Number(args.messages);
const CONVERSATIONS = Number(args.conversations);
const MEMBERSHIPS = Number(args.memberships);
const QUERIES = Number(args.queries);
const VOCABULARY = 20_000;
const USERS = 2_000;
const SEARCHER = 'searcher';

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function seed(client: pg.Client): Promise<void> {
  const step = async (label: string, sql: string) => {
    const started = performance.now();
    await client.query(sql);
    console.log(`  ${label.padEnd(44)} ${((performance.now() - started) / 1000).toFixed(1)} s`);
  };
  const perConversation = Math.ceil(MESSAGES / CONVERSATIONS);
  const every = Math.floor(CONVERSATIONS / MEMBERSHIPS);
  await client.query(`SET maintenance_work_mem = '256MB'`);
  await step('users', `INSERT INTO users (id, display_name) SELECT 'u' || n, 'User ' || n FROM generate_series(0, ${USERS - 1}) n UNION ALL SELECT '${SEARCHER}', 'Searcher'`);
  await step(
    `${CONVERSATIONS} conversations`,
    `
    INSERT INTO conversations (id, kind, title, last_seq, version)
    SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid, 'group', 'Group ' || n, ${perConversation}, ${perConversation}
    FROM generate_series(0, ${CONVERSATIONS - 1}) n`,
  );
  // Three members each, and the searcher in every `every`-th conversation (MEMBERSHIPS in all).
  await step(
    'memberships',
    `
    INSERT INTO conversation_members (conversation_id, user_id)
    SELECT DISTINCT ('00000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid, 'u' || ((n * k * 7 + k) % ${USERS})
    FROM generate_series(0, ${CONVERSATIONS - 1}) n, generate_series(1, 3) k
    UNION ALL
    SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid, '${SEARCHER}'
    FROM generate_series(0, ${CONVERSATIONS - 1}) n WHERE n % ${every} = 0 AND n / ${every} < ${MEMBERSHIPS}`,
  );
  // The GIN index is built once after the load, as a restore would: much faster than row by row.
  await client.query('DROP INDEX messages_search_vector_idx');
  await step(
    `${MESSAGES.toLocaleString('en')} messages (generate_series)`,
    `
    INSERT INTO messages (id, conversation_id, seq, sender_id, client_msg_id, body, version, created_at)
    SELECT gen_random_uuid(), ('00000000-0000-4000-8000-' || lpad(to_hex(c), 12, '0'))::uuid, s,
      'u' || ((c * 7 + 1) % ${USERS}), 'seed-' || c || '-' || s,
      (SELECT string_agg('w' || floor(power(random(), 3) * ${VOCABULARY})::int, ' ')
         FROM generate_series(1, 6 + ((c + s) % 11)) w WHERE c >= 0),
      s, now() - ((${MESSAGES} - (c * ${perConversation} + s)) * interval '3 seconds')
    FROM generate_series(0, ${CONVERSATIONS - 1}) c, generate_series(1, ${perConversation}) s
    WHERE c * ${perConversation} + s <= ${MESSAGES}`,
  );
  await step('GIN index on search_vector', 'CREATE INDEX messages_search_vector_idx ON messages USING GIN (search_vector)');
  await step('VACUUM ANALYZE', 'VACUUM ANALYZE');
}

/** Words by frequency class: index 0 is the most common word of the vocabulary. */
async function wordsByFrequency(client: pg.Client): Promise<{ common: string[]; medium: string[]; rare: string[] }> {
  const { rows } = await client.query<{ word: string; ndoc: number }>(`SELECT word, ndoc FROM ts_stat('SELECT search_vector FROM messages') ORDER BY ndoc DESC`);
  const at = (from: number, to: number) => rows.slice(from, to).map((row) => row.word);
  console.log(`  vocabulary: ${rows.length} words; most common "${rows[0]?.word}" in ${rows[0]?.ndoc} messages, median word in ${rows[Math.floor(rows.length / 2)]?.ndoc}`);
  return { common: at(0, 20), medium: at(1000, 1100), rare: at(rows.length - 2000, rows.length) };
}

async function main(): Promise<void> {
  const commit = (() => {
    try {
      return execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim();
    } catch {
      return 'unknown';
    }
  })();
  console.log(`search benchmark: ${MESSAGES.toLocaleString('en')} messages, ${CONVERSATIONS.toLocaleString('en')} conversations, searcher in ${MEMBERSHIPS}`);
  console.log(`  ${new Date().toISOString()}, commit ${commit}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}`);
  const database = await throwawayDatabase('bench_search');
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  const pool = new pg.Pool({ connectionString: database.url, max: 2 });
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  try {
    const { rows: version } = await client.query<{ version: string }>('SELECT version()');
    console.log(`  ${version[0]?.version.split(' on ')[0]}`);
    await seed(client);
    const words = await wordsByFrequency(client);
    const pick = (list: string[], i: number) => list[i % list.length]!;
    const classes: Array<[string, (i: number) => SearchQuery]> = [
      ['common word', (i) => ({ query: pick(words.common, i) })],
      ['medium word', (i) => ({ query: pick(words.medium, i) })],
      ['rare word', (i) => ({ query: pick(words.rare, i * 7) })],
      ['two words (AND)', (i) => ({ query: `${pick(words.common, i)} ${pick(words.medium, i)}` })],
      ['"phrase"', (i) => ({ query: `"${pick(words.common, i)} ${pick(words.common, i + 1)}"` })],
      ['word -exclusion', (i) => ({ query: `${pick(words.common, i)} -${pick(words.common, i + 3)}` })],
      ['no match', (i) => ({ query: `zz${i}nothing` })],
    ];
    const service = new SearchService(prisma);
    // Warm-up: the first queries load the indexes' upper pages and the searcher's rows.
    for (let i = 0; i < 20; i += 1) await service.search(SEARCHER, classes[i % classes.length]![1](i));

    const all: number[] = [];
    let hits = 0;
    console.log('\n  class                 p50 ms   p95 ms   p99 ms   results/page');
    for (const [label, make] of classes) {
      const latencies: number[] = [];
      let results = 0;
      const runs = Math.ceil(QUERIES / classes.length);
      for (let i = 0; i < runs; i += 1) {
        const started = performance.now();
        const page = await service.search(SEARCHER, { ...make(i), limit: 20 });
        latencies.push(performance.now() - started);
        results += page.results.length;
      }
      hits += results;
      latencies.sort((a, b) => a - b);
      all.push(...latencies);
      console.log(
        `  ${label.padEnd(20)} ${percentile(latencies, 50).toFixed(2).padStart(7)}  ${percentile(latencies, 95).toFixed(2).padStart(7)}  ${percentile(latencies, 99).toFixed(2).padStart(7)}   ${(results / runs).toFixed(1)}`,
      );
    }
    all.sort((a, b) => a - b);
    console.log(
      `  ${'all'.padEnd(20)} ${percentile(all, 50).toFixed(2).padStart(7)}  ${percentile(all, 95).toFixed(2).padStart(7)}  ${percentile(all, 99).toFixed(2).padStart(7)}   (${all.length} searches, ${hits} results)`,
    );

    const phrase = `"${words.common[0]!} ${words.common[1]!}"`;
    const explained: Array<[string, string, SearchScan]> = [
      ['common word', words.common[0]!, 'planner'],
      ['rare word', words.rare[0]!, 'planner'],
      ['phrase, as the planner would run it', phrase, 'planner'],
      ['phrase, as the service runs it (conversation by conversation)', phrase, 'conversations'],
    ];
    for (const [label, query, scan] of explained) {
      const statement = searchStatement(SEARCHER, { query }, 21, null, scan);
      const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${statement.text}`, statement.values);
      console.log(`\n  EXPLAIN (ANALYZE, BUFFERS), ${label} "${query}":`);
      for (const row of rows) console.log(`    ${row['QUERY PLAN']}`);
    }
  } finally {
    await prisma.$disconnect();
    await pool.end().catch(() => undefined);
    await client.end();
    if (args.keep) console.log(`\n  kept ${database.url}`);
    else await database.drop();
  }
}

await main();
