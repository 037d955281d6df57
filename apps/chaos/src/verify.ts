/** What the harness measures outside the clients: PostgreSQL's rows, Redis's keys, the nodes' heaps. */
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, Redis } from 'ioredis';
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

/** The Redis the nodes use: one server (REDIS_URL) or the seed nodes of a Redis Cluster (REDIS_CLUSTER_NODES). */
export type RedisTarget = { kind: 'single'; url: string } | { kind: 'cluster'; nodes: string };

/**
 * The state keys the harness reads, for nodes run with REDIS_KEY_PREFIX `keyPrefix` (their state
 * store's prefix is `${keyPrefix}state:`; layouts in apps/server/src/state/presence-redis.ts and
 * typing.ts). Braces are hash tags, literal in a SCAN pattern.
 */
export function stateKeys(keyPrefix: string) {
  const presence = `${keyPrefix}state:presence:`;
  return {
    /** SCAN pattern of every presence key (registry, node indexes, connections, last seen). */
    presence: `${presence}*`,
    /** A node's index, HASH connectionId → userId. */
    node: (nodeId: string) => `${presence}node:{${nodeId}}`,
    /** SCAN pattern of the users' connection hashes, connectionId → nodeId: one key per online user. */
    conns: `${presence}conns:*`,
    /** SCAN pattern of the typing sets, one per conversation where someone types. */
    typing: `${keyPrefix}state:typing:*`,
  };
}
export type StateKeys = ReturnType<typeof stateKeys>;

interface Look {
  /** Runs a keyed command: the server itself, or a Cluster client that routes it to the key's master. */
  keyed: Redis | Cluster;
  /** Every master: the server itself, or each master of the cluster (SCAN covers one node only). */
  masters: Redis[];
}

/**
 * One short-lived connection per look: the harness restarts this Redis (or kills a master of the
 * cluster) during the run, and a look is made only a few times a second while a check waits. On a
 * cluster the client learns the slot map afresh each time, so it never asks a killed master.
 */
async function withRedis<T>(target: RedisTarget, look: (redis: Look) => Promise<T>): Promise<T> {
  if (target.kind === 'single') {
    const redis = new Redis(target.url, { maxRetriesPerRequest: 1, lazyConnect: true });
    redis.on('error', () => {});
    try {
      await redis.connect();
      return await look({ keyed: redis, masters: [redis] });
    } finally {
      redis.disconnect();
    }
  }
  const seeds = target.nodes.split(',').map((seed) => {
    const [host, port] = seed.trim().split(':');
    return { host: host!, port: Number(port) };
  });
  const cluster = new Cluster(seeds, { lazyConnect: true, clusterRetryStrategy: () => null, redisOptions: { maxRetriesPerRequest: 1 } });
  cluster.on('error', () => {});
  cluster.on('node error', () => {});
  try {
    await cluster.connect();
    return await look({ keyed: cluster, masters: cluster.nodes('master') });
  } finally {
    cluster.disconnect();
  }
}

/** The keys under `pattern` on one server (SCAN, never KEYS). */
async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found;
}

/** Keys left in Redis under a pattern, on every master of a cluster. */
export function countKeys(target: RedisTarget, pattern: string): Promise<number> {
  return withRedis(target, async ({ masters }) => {
    let count = 0;
    for (const master of masters) count += (await scanKeys(master, pattern)).length;
    return count;
  });
}

/** HLEN of one key (0 when it does not exist). */
export function hashLength(target: RedisTarget, key: string): Promise<number> {
  return withRedis(target, ({ keyed }) => keyed.hlen(key));
}

/**
 * How far presence in Redis is from the sockets the nodes hold (0: exactly them): for each node,
 * |entries in its index − its live sockets|, plus |connections in all users' `conns` hashes − all
 * live sockets|. A ghost (an entry with no socket: a disconnect lost, a dead process's connections
 * adopted) and a missing entry (a socket a failover forgot) both count.
 */
export function presenceMismatch(target: RedisTarget, keys: StateKeys, nodes: ReadonlyArray<{ id: string; sockets: number }>): Promise<{ off: number; detail: string }> {
  return withRedis(target, async ({ keyed, masters }) => {
    let off = 0;
    const perNode: string[] = [];
    for (const node of nodes) {
      const entries = await keyed.hlen(keys.node(node.id));
      off += Math.abs(entries - node.sockets);
      perNode.push(`${node.id} ${entries} entries/${node.sockets} sockets`);
    }
    let connections = 0;
    let users = 0;
    for (const master of masters) {
      // Each key found on a master is served by that master: HLEN it there.
      const found = await scanKeys(master, keys.conns);
      users += found.length;
      for (let i = 0; i < found.length; i += 500) {
        const pipeline = master.pipeline();
        for (const key of found.slice(i, i + 500)) pipeline.hlen(key);
        for (const [error, length] of (await pipeline.exec()) ?? []) {
          if (error) throw error;
          connections += Number(length);
        }
      }
    }
    const sockets = nodes.reduce((sum, node) => sum + node.sockets, 0);
    off += Math.abs(connections - sockets);
    return { off, detail: `${perNode.join(', ')}; ${connections} connections of ${users} online users/${sockets} sockets` };
  });
}

/** Up to `limit` hashes under `pattern` with their fields, for a failure message (which ghost, claimed by which node). */
export function sampleHashes(target: RedisTarget, pattern: string, limit = 5): Promise<string[]> {
  return withRedis(target, async ({ masters }) => {
    const samples: string[] = [];
    for (const master of masters) {
      for (const key of (await scanKeys(master, pattern)).slice(0, limit - samples.length)) samples.push(`${key} ${JSON.stringify(await master.hgetall(key))}`);
    }
    return samples;
  });
}

/**
 * Presence keys (`pattern`) held by each master, by port: SCAN on each. The failover victim is
 * picked from this.
 */
export async function keysPerMaster(ports: readonly number[], pattern: string): Promise<Map<number, number>> {
  const counts = new Map<number, number>();
  for (const port of ports) {
    const redis = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });
    redis.on('error', () => {});
    try {
      await redis.connect();
      counts.set(port, (await scanKeys(redis, pattern)).length);
    } finally {
      redis.disconnect();
    }
  }
  return counts;
}

/** The master to SIGKILL: the one holding the most keys (of `keysPerMaster`); the lowest port on a tie. */
export function pickFailoverVictim(counts: ReadonlyMap<number, number>): number {
  const ranked = [...counts].sort(([portA, a], [portB, b]) => b - a || portA - portB);
  if (ranked.length === 0) throw new Error('no Redis Cluster master to fail over');
  return ranked[0]![0];
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
