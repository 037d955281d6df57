/** What the harness measures outside the clients: PostgreSQL's rows, Redis's keys, the nodes' heaps. */
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import pg from 'pg';

export interface DatabaseReport {
  /** Distinct acked messages (by id) looked up. */
  acked: number;
  /** Acked, but no row with that id. */
  missing: number;
  /** A row with that id, but in another conversation or at another seq than the ack said. */
  mismatched: number;
  /** Rows of one conversation with the same body (load bodies are unique per send): one send stored twice. */
  duplicateRows: number;
  conversations: number;
  /** Conversations whose seqs are not 1..last_seq, each once. */
  gappy: number;
  samples: string[];
}

/**
 * Every acked message must be in PostgreSQL exactly once, where its ack said; every conversation it is
 * in must hold seqs 1..last_seq, each once (system messages of the creation included).
 */
export async function checkDatabase(url: string, acked: ReadonlyArray<readonly [string, number, string]>): Promise<DatabaseReport> {
  const byId = new Map<string, readonly [string, number, string]>();
  for (const entry of acked) byId.set(entry[2], entry);
  const conversationIds = [...new Set(acked.map(([conversationId]) => conversationId))];
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const samples: string[] = [];
  try {
    const rows = await client.query<{ id: string; conversation_id: string; seq: number }>('SELECT id, conversation_id, seq FROM messages WHERE id = ANY($1::uuid[])', [[...byId.keys()]]);
    const found = new Map(rows.rows.map((row) => [row.id, row]));
    let missing = 0;
    let mismatched = 0;
    for (const [id, [conversationId, seq]] of byId) {
      const row = found.get(id);
      if (!row) {
        missing += 1;
        if (samples.length < 10) samples.push(`missing ${id} (conversation ${conversationId} seq ${seq})`);
      } else if (row.conversation_id !== conversationId || Number(row.seq) !== seq) {
        mismatched += 1;
        if (samples.length < 10) samples.push(`${id}: acked as ${conversationId}#${seq}, stored as ${row.conversation_id}#${row.seq}`);
      }
    }
    const duplicates = await client.query<{ n: number }>(
      `SELECT coalesce(sum(n - 1), 0)::int AS n FROM (
         SELECT count(*) AS n FROM messages WHERE conversation_id = ANY($1::uuid[]) AND kind <> 'system' GROUP BY conversation_id, body HAVING count(*) > 1) d`,
      [conversationIds],
    );
    const seqs = await client.query<{ id: string; last_seq: number; rows: number; distinct_seqs: number; min_seq: number | null; max_seq: number | null }>(
      `SELECT c.id, c.last_seq, count(m.id)::int AS rows, count(DISTINCT m.seq)::int AS distinct_seqs, min(m.seq)::int AS min_seq, max(m.seq)::int AS max_seq
         FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id
        WHERE c.id = ANY($1::uuid[]) GROUP BY c.id, c.last_seq`,
      [conversationIds],
    );
    let gappy = 0;
    for (const row of seqs.rows) {
      const lastSeq = Number(row.last_seq);
      if (row.rows === lastSeq && row.distinct_seqs === lastSeq && (lastSeq === 0 || (row.min_seq === 1 && row.max_seq === lastSeq))) continue;
      gappy += 1;
      if (samples.length < 10) samples.push(`conversation ${row.id}: last_seq ${lastSeq}, ${row.rows} rows, ${row.distinct_seqs} distinct seqs ${row.min_seq}..${row.max_seq}`);
    }
    return { acked: byId.size, missing, mismatched, duplicateRows: duplicates.rows[0]?.n ?? 0, conversations: seqs.rows.length, gappy, samples };
  } finally {
    await client.end();
  }
}

/**
 * One short-lived connection per look: the harness restarts this Redis during the run, and a look is
 * made only a few times a second while a check waits.
 */
async function withRedis<T>(redisUrl: string, look: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true });
  redis.on('error', () => {});
  try {
    await redis.connect();
    return await look(redis);
  } finally {
    redis.disconnect();
  }
}

/** Keys left in Redis under a pattern (SCAN, never KEYS). */
export function countKeys(redisUrl: string, pattern: string): Promise<number> {
  return withRedis(redisUrl, async (redis) => {
    let cursor = '0';
    let count = 0;
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      count += keys.length;
    } while (cursor !== '0');
    return count;
  });
}

/** HLEN of one key (0 when it does not exist). */
export function hashLength(redisUrl: string, key: string): Promise<number> {
  return withRedis(redisUrl, (redis) => redis.hlen(key));
}

/** Polls `probe` until it returns 0 or `timeoutMs` passes; the time it took, or null with the last value. */
export async function timeUntilZero(probe: () => Promise<number>, timeoutMs: number): Promise<{ ms: number | null; last: number }> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    if (value === 0) return { ms: Date.now() - started, last: 0 };
    if (Date.now() - started > timeoutMs) return { ms: null, last: value };
    await sleep(200);
  }
}

/**
 * A node's heap after a forced full GC, through its inspector (started with `--inspect=HOST:PORT`):
 * `HeapProfiler.collectGarbage`, then `Runtime.getHeapUsage`. Unlike a /metrics sample this does not
 * depend on when V8 last collected (an idle process may not collect for minutes). Null when the
 * inspector does not answer. Node's own WebSocket client, so no dependency.
 */
export async function heapAfterGc(inspectorPort: number): Promise<number | null> {
  try {
    const targets = (await fetch(`http://127.0.0.1:${inspectorPort}/json/list`, { signal: AbortSignal.timeout(3000) }).then((response) => response.json())) as Array<{ webSocketDebuggerUrl?: string }>;
    const url = targets[0]?.webSocketDebuggerUrl;
    if (!url) return null;
    const socket = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener('open', () => resolve(), { once: true });
      socket.addEventListener('error', () => reject(new Error('inspector connection failed')), { once: true });
    });
    let next = 0;
    const call = (method: string) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const id = ++next;
        const timer = setTimeout(() => reject(new Error(`${method}: no answer`)), 15_000);
        const onMessage = (event: MessageEvent) => {
          const reply = JSON.parse(String(event.data)) as { id?: number; result?: Record<string, unknown>; error?: unknown };
          if (reply.id !== id) return;
          clearTimeout(timer);
          socket.removeEventListener('message', onMessage);
          if (reply.error) reject(new Error(`${method}: ${JSON.stringify(reply.error)}`));
          else resolve(reply.result ?? {});
        };
        socket.addEventListener('message', onMessage);
        socket.send(JSON.stringify({ id, method }));
      });
    try {
      await call('HeapProfiler.collectGarbage');
      const usage = await call('Runtime.getHeapUsage');
      return typeof usage['usedSize'] === 'number' ? usage['usedSize'] : null;
    } finally {
      socket.close();
    }
  } catch {
    return null;
  }
}
