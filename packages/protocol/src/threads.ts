import { z } from 'zod';
import { limits } from './limits.ts';
import { cursorSchema, idSchema, type Message, seqSchema } from './schemas.ts';

// A thread is the replies sent with `threadRootId` set to one message of the conversation (its root).
// Replies are messages of the conversation like any other: they take its next gap-free seq and
// version, arrive as `message:new`, and come with history and sync; only their `threadRootId` tells a
// client to show them under the root. A reply cannot start a thread of its own.

/** A thread's replies in seq order (oldest first), after `after` (exclusive). */
export const threadFetchSchema = z.object({ rootId: idSchema, after: seqSchema.optional(), limit: z.number().int().min(1).max(limits.pageSize).optional() }).strict();

/** The threads of a conversation, the most recently replied first; `cursor` is the previous page's `nextCursor`. */
export const threadListSchema = z.object({ conversationId: idSchema, cursor: cursorSchema.optional(), limit: z.number().int().min(1).max(limits.pageSize).optional() }).strict();

/** I have read a thread's replies up to `seq` (a reply's seq); the watermark only moves forward. */
export const threadMarkReadSchema = z.object({ rootId: idSchema, seq: seqSchema }).strict();

/** My read state of one thread, as `thread:mark-read` answers and as `thread:read` tells my other devices. */
export interface ThreadRead {
  conversationId: string;
  rootId: string;
  /** The highest reply seq I have read in this thread (0: none). */
  lastReadSeq: number;
  /** Replies after `lastReadSeq` from others, not deleted and not hidden for me. */
  unreadCount: number;
}

/** One thread as `thread:list` lists it: its root (with `thread`: reply count, last reply time) and my read state. */
export interface ThreadSummary extends ThreadRead {
  root: Message;
}

export interface ThreadPage {
  root: Message;
  /** Replies in seq order; tombstones appear as such, replies I hid do not. */
  replies: Message[];
  /** More replies after the last one: ask again with its seq as `after`. */
  hasMore: boolean;
  lastReadSeq: number;
  unreadCount: number;
}

export interface ThreadListPage {
  threads: ThreadSummary[];
  nextCursor: string | null;
}
