import type { SearchHit, SearchPage } from '@chat/protocol';
import type { Db } from '../db/client.ts';
import { Prisma } from '../generated/prisma/client.ts';
import { AppError } from '../errors.ts';
import { requireMember } from './access.ts';
import { messageInclude, toWireMessage, type MessageRow } from './wire.ts';

export interface SearchQuery {
  query: string;
  conversationId?: string | undefined;
  senderId?: string | undefined;
  before?: string | undefined;
  after?: string | undefined;
  hasAttachment?: boolean | undefined;
  limit?: number | undefined;
  cursor?: string | undefined;
}

const DEFAULT_LIMIT = 20;

/**
 * How the statement reaches the caller's messages: as the planner sees fit, or conversation by
 * conversation through the (conversation_id, seq) index with the text match applied to each row.
 */
export type SearchScan = 'planner' | 'conversations';

/**
 * Most messages a phrase search reads conversation by conversation. PostgreSQL estimates a phrase like
 * an AND of its words and may take the GIN index, then recheck every row holding all the words for
 * their positions (for two common words, tens of thousands of rows); reading the caller's own
 * messages instead costs at most this many rows.
 */
const PHRASE_SCAN_LIMIT = 50_000;

// Snippets are built by ts_headline on a copy of the body where < > & are control characters (bodies
// never hold C0 controls: the protocol strips them), so the HTML-aware text-search parser sees plain
// separators, exactly as in the indexed document (spaces there). Two more control characters mark
// the start and end of each match; the server turns them into ranges and restores < > &, so the
// snippet that leaves the server is plain text plus offsets, never markup.
const START = '\u0004';
const STOP = '\u0005';
const NEUTRAL: Record<string, string> = { '\u0001': '<', '\u0002': '>', '\u0003': '&' };
/** A body up to this many characters is shown whole; a longer one as up to two excerpts around the matches. */
const WHOLE_BODY = 280;
const WHOLE_OPTIONS = `StartSel=${START}, StopSel=${STOP}, HighlightAll=true`;
const EXCERPT_OPTIONS = `StartSel=${START}, StopSel=${STOP}, MaxWords=30, MinWords=12, MaxFragments=2, FragmentDelimiter=" … "`;

/** Where the next page starts: the last result's sort key. */
export interface Cursor {
  rank: number;
  createdAt: string;
  id: string;
}

/**
 * Ranked full-text search over the messages a user can read. Guarantees:
 * - only conversations the user is a current member of; naming another conversation answers
 *   `not_found`, exactly like a missing one;
 * - no tombstones, nothing the user deleted for themself, nothing at or below their hide watermark;
 * - results ordered by ts_rank_cd, then newest first, then id: a total order, so keyset paging over
 *   (rank, created_at, id) never repeats or skips a message that did not change meanwhile;
 * - any query text is safe: websearch_to_tsquery never raises a syntax error, and text without a
 *   searchable word matches nothing.
 */
export class SearchService {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  async search(userId: string, input: SearchQuery): Promise<SearchPage> {
    const take = Math.min(input.limit ?? DEFAULT_LIMIT, 50);
    const cursor = input.cursor === undefined ? null : decodeCursor(input.cursor);
    if (input.conversationId !== undefined) await requireMember(this.#db, input.conversationId, userId);

    const scan = await this.#scanFor(userId, input);
    const rows = await this.#db.$queryRaw<Array<{ id: string; rank: number; createdAt: Date | string; headline: string }>>(searchStatement(userId, input, take + 1, cursor, scan));

    const pageRows = rows.slice(0, take);
    const messages = await this.#db.message.findMany({ where: { id: { in: pageRows.map((row) => row.id) } }, include: messageInclude });
    const byId = new Map(messages.map((message) => [message.id, message as MessageRow]));
    const results: SearchHit[] = [];
    for (const row of pageRows) {
      const message = byId.get(row.id);
      // Deleted between the two reads: left out rather than shown as a tombstone.
      if (!message || message.deletedAt !== null) continue;
      results.push({ message: toWireMessage(message), snippet: snippetOf(row.headline), rank: Number(row.rank) });
    }
    const last = pageRows.at(-1);
    const nextCursor = rows.length > take && last ? encodeCursor({ rank: Number(last.rank), createdAt: new Date(last.createdAt).toISOString(), id: last.id }) : null;
    return { results, nextCursor };
  }

  /** `conversations` for a phrase when the caller's conversations hold few enough messages. */
  async #scanFor(userId: string, input: SearchQuery): Promise<SearchScan> {
    if (!input.query.includes('"')) return 'planner';
    const inConversation = input.conversationId === undefined ? Prisma.empty : Prisma.sql`AND cm.conversation_id = ${input.conversationId}::uuid`;
    const [row] = await this.#db.$queryRaw<Array<{ candidates: number }>>`
      SELECT COALESCE(sum(c.last_seq - cm.hidden_before_seq), 0)::float8 AS candidates
      FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id
      WHERE cm.user_id = ${userId} AND cm.left_at IS NULL ${inConversation}`;
    return Number(row?.candidates ?? 0) <= PHRASE_SCAN_LIMIT ? 'conversations' : 'planner';
  }
}

/**
 * The search as one statement (exported for the benchmark's EXPLAIN): the caller's current memberships
 * joined to their messages above the hide watermark, matched against the query, the page by keyset,
 * and headlines computed for the page's rows only.
 */
export function searchStatement(userId: string, input: SearchQuery, limit: number, cursor: Cursor | null, scan: SearchScan = 'planner'): Prisma.Sql {
  const filters: Prisma.Sql[] = [];
  if (input.senderId !== undefined) filters.push(Prisma.sql`AND m.sender_id = ${input.senderId}`);
  if (input.before !== undefined) filters.push(Prisma.sql`AND m.created_at < ${input.before}::timestamptz`);
  if (input.after !== undefined) filters.push(Prisma.sql`AND m.created_at > ${input.after}::timestamptz`);
  if (input.hasAttachment !== undefined) {
    filters.push(Prisma.sql`AND ${input.hasAttachment ? Prisma.empty : Prisma.sql`NOT`} EXISTS (SELECT 1 FROM attachments a WHERE a.message_id = m.id)`);
  }
  const inConversation = input.conversationId === undefined ? Prisma.empty : Prisma.sql`AND cm.conversation_id = ${input.conversationId}::uuid`;
  const after = cursor ? Prisma.sql`WHERE (rank, created_at, id) < (${cursor.rank}::float8, ${cursor.createdAt}::timestamptz, ${cursor.id}::uuid)` : Prisma.empty;

  // The tsquery is written out where it is used, not computed once in a CTE: PostgreSQL then folds it
  // into a constant while planning and estimates its selectivity from the column's statistics, so a
  // rare word is looked up in the GIN index and a common one is filtered within the caller's own
  // conversations (through the (conversation_id, seq) index) instead of fetching every match first.
  // OFFSET 0 keeps the subquery from being flattened, so the text match cannot be pushed into it.
  const messages =
    scan === 'conversations'
      ? Prisma.sql`CROSS JOIN LATERAL (SELECT * FROM messages m WHERE m.conversation_id = cm.conversation_id AND m.seq > cm.hidden_before_seq OFFSET 0) m`
      : Prisma.sql`JOIN messages m ON m.conversation_id = cm.conversation_id AND m.seq > cm.hidden_before_seq`;
  const tsquery = Prisma.sql`websearch_to_tsquery('simple'::regconfig, translate(${input.query}, '<>&', '   '))`;
  return Prisma.sql`
    WITH matched AS (
      SELECT m.id, m.created_at, ts_rank_cd(m.search_vector, ${tsquery})::float8 AS rank
      FROM conversation_members cm
      ${messages}
      WHERE cm.user_id = ${userId} AND cm.left_at IS NULL ${inConversation}
        AND m.search_vector @@ ${tsquery}
        AND m.deleted_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = ${userId} AND h.message_id = m.id)
        ${filters.length > 0 ? Prisma.join(filters, ' ') : Prisma.empty}
    ),
    page AS (
      SELECT id, created_at, rank FROM matched ${after}
      ORDER BY rank DESC, created_at DESC, id DESC
      LIMIT ${limit}
    )
    SELECT page.id::text AS id, page.rank, page.created_at AS "createdAt",
      ts_headline('simple'::regconfig, translate(m.body, '<>&' || chr(1) || chr(2) || chr(3) || chr(4) || chr(5), chr(1) || chr(2) || chr(3)), ${tsquery},
        CASE WHEN length(m.body) <= ${WHOLE_BODY} THEN ${WHOLE_OPTIONS} ELSE ${EXCERPT_OPTIONS} END) AS headline
    FROM page JOIN messages m ON m.id = page.id
    ORDER BY page.rank DESC, page.created_at DESC, page.id DESC`;
}

/** ts_headline's output to plain text plus the `[start, end)` ranges of the matched words. */
export function snippetOf(headline: string): SearchHit['snippet'] {
  let text = '';
  const highlights: Array<[number, number]> = [];
  let open = -1;
  for (const char of headline) {
    if (char === START) open = text.length;
    else if (char === STOP) {
      if (open >= 0 && text.length > open) highlights.push([open, text.length]);
      open = -1;
    } else text += NEUTRAL[char] ?? char;
  }
  return { text, highlights };
}

function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.rank, cursor.createdAt, cursor.id])).toString('base64url');
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function decodeCursor(value: string): Cursor {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(value, 'base64url').toString('utf8'));
  } catch {
    parsed = null;
  }
  if (Array.isArray(parsed) && parsed.length === 3) {
    const [rank, createdAt, id] = parsed as unknown[];
    if (
      typeof rank === 'number' &&
      Number.isFinite(rank) &&
      typeof createdAt === 'string' &&
      !Number.isNaN(Date.parse(createdAt)) &&
      /^\d{4}-\d\d-\d\dT[\d:.]+Z$/.test(createdAt) &&
      typeof id === 'string' &&
      UUID.test(id)
    ) {
      return { rank, createdAt, id };
    }
  }
  throw new AppError('validation', 'cursor: not a cursor this search returned');
}
