import type { ClientPayload, ThreadListPage, ThreadPage, ThreadRead } from '@chat/protocol';
import type { ClientContext } from './context.ts';

/** What `fetchThread()` takes besides the root. */
export type ThreadFetchOptions = Omit<ClientPayload<'thread:fetch'>, 'rootId'>;
/** What `listThreads()` takes besides the conversation. */
export type ThreadListOptions = Omit<ClientPayload<'thread:list'>, 'conversationId'>;

/**
 * Reading threads and my read state in them. Replies are not this module's: they are sent with
 * `send({ threadRootId })`, through the outbox like every message, and arrive like every message
 * (`message`, in seq order, live and through resync); each reply or deleted reply re-reports its root
 * as `messageUpdated` with its `thread` summary. My read state of a thread is emitted as `threadRead`
 * after each of this device's marks (from the answer) and each move made on another device of mine
 * (the server's push, changes.ts), so an app keeps it with one listener.
 */
export class Threads {
  readonly #ctx: ClientContext;

  constructor(ctx: ClientContext) {
    this.#ctx = ctx;
  }

  /** A root, its replies after `after` in seq order (at most `limit`), whether more follow, and my read state. */
  fetch(rootId: string, options: ThreadFetchOptions = {}): Promise<ThreadPage> {
    return this.#ctx.request('thread:fetch', { ...options, rootId });
  }

  /** One page of a conversation's threads, the most recently replied first, with my unread count in each. */
  list(conversationId: string, options: ThreadListOptions = {}): Promise<ThreadListPage> {
    return this.#ctx.request('thread:list', { ...options, conversationId });
  }

  /** Moves my watermark in a thread forward to `seq` (a reply's seq); never back, never past the last reply. */
  async markRead(rootId: string, seq: number): Promise<ThreadRead> {
    const read = await this.#ctx.request('thread:mark-read', { rootId, seq });
    this.#ctx.emit('threadRead', read);
    return read;
  }
}
