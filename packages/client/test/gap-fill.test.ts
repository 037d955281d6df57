import type { Message } from '@chat/protocol';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ChatError } from '../src/errors.ts';
import { GAP_WAIT_MS } from '../src/sync.ts';
import { conversation, type Harness, harness, message } from './context-harness.ts';

// The gap logic driven through its context, on vitest's clock: a new message that arrives ahead of a
// missing one waits GAP_WAIT_MS, then the history after the last reported seq is fetched from the
// test's stand-in for the server. gap.test.ts runs the same against real nodes and a lost publish.

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** Answers `history:fetch` from a conversation's full history, `limit` messages a page. */
function history(messages: Message[], options: { pageSize?: number } = {}) {
  return (event: string, payload: { conversationId: string; after: number; limit: number }) => {
    if (event !== 'history:fetch') throw new ChatError('not_found', 'not scripted');
    const after = messages.filter((m) => m.conversationId === payload.conversationId && m.seq > payload.after);
    const size = Math.min(payload.limit, options.pageSize ?? Infinity);
    return { messages: after.slice(0, size), hasMore: after.length > size };
  };
}

const reportedSeqs = (h: Harness, conversationId = 'c1') => h.reported('message').flatMap((m) => (m.conversationId === conversationId ? [m.seq] : []));
const fetches = (h: Harness) => h.requests.filter((request) => request.event === 'history:fetch').map((request) => request.payload);
/** A live message, as a `message:new` push applies it. */
const push = (h: Harness, m: Message) => h.changes.applyMessage(m, 'new');
/** A conversation the client knows up to `lastSeq`. */
function known(conversationId: string, lastSeq: number, server: Parameters<typeof harness>[0]): Harness {
  const h = harness(server, { autoDeliveredReceipts: false });
  h.changes.applyConversation(conversation(conversationId, lastSeq), false);
  return h;
}

describe('gap fill', () => {
  it('holds a message that overtook a missing one, fetches the history after the wait and reports both in seq order', async () => {
    const all = [1, 2, 3, 4].map((seq) => message('c1', seq));
    const h = known('c1', 1, history(all));
    push(h, all[1]!);
    push(h, all[3]!);
    expect(reportedSeqs(h)).toEqual([2]);

    await vi.advanceTimersByTimeAsync(GAP_WAIT_MS - 1);
    expect(fetches(h)).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(fetches(h)).toEqual([{ conversationId: 'c1', after: 2, limit: 100 }]);
    expect(reportedSeqs(h)).toEqual([2, 3, 4]);
    expect(h.ctx.state.get('c1')?.gap()).toBeNull();
  });

  it('fetches nothing when the missing message arrives live within the wait', async () => {
    const all = [1, 2, 3].map((seq) => message('c1', seq));
    const h = known('c1', 1, history(all));
    push(h, all[2]!);
    push(h, all[1]!);
    expect(reportedSeqs(h)).toEqual([2, 3]);
    await vi.advanceTimersByTimeAsync(GAP_WAIT_MS * 4);
    expect(fetches(h)).toEqual([]);
  });

  it('releases what waited when the history shows the missing seq is not this user’s to see', async () => {
    const visible = [1, 2, 4].map((seq) => message('c1', seq));
    const h = known('c1', 1, history(visible));
    push(h, visible[1]!);
    push(h, visible[2]!);
    await vi.advanceTimersByTimeAsync(GAP_WAIT_MS);
    expect(reportedSeqs(h)).toEqual([2, 4]);
    expect(h.ctx.state.get('c1')?.gap()).toBeNull();
  });

  it('pages through the history until a page passes the last waiting message', async () => {
    const all = Array.from({ length: 12 }, (_, i) => message('c1', i + 1));
    const h = known('c1', 1, history(all, { pageSize: 3 }));
    push(h, all[7]!);
    await vi.advanceTimersByTimeAsync(GAP_WAIT_MS);
    expect(fetches(h).map((payload) => (payload as { after: number }).after)).toEqual([1, 4, 7]);
    // The last page brought two messages after the waiting one: new to this client, reported in order.
    expect(reportedSeqs(h)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('fills the gaps of every conversation on one timer', async () => {
    const all = ['c1', 'c2'].flatMap((id) => [1, 2, 3].map((seq) => message(id, seq)));
    const h = known('c1', 1, history(all));
    h.changes.applyConversation(conversation('c2', 1), false);
    push(h, all[2]!);
    push(h, all[5]!);
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(GAP_WAIT_MS);
    expect(reportedSeqs(h, 'c1')).toEqual([2, 3]);
    expect(reportedSeqs(h, 'c2')).toEqual([2, 3]);
  });

  it('leaves the gap to the resync while offline or while a connection is set up, and fills it after', async () => {
    const all = [1, 2, 3].map((seq) => message('c1', seq));
    const h = known('c1', 1, history(all));
    h.ctx.connected = false;
    push(h, all[2]!);
    await vi.advanceTimersByTimeAsync(GAP_WAIT_MS * 4);
    expect(fetches(h)).toEqual([]);

    h.ctx.connected = true;
    h.changes.hold();
    h.sync.fillGapsSoon();
    await vi.advanceTimersByTimeAsync(GAP_WAIT_MS * 4);
    expect(fetches(h)).toEqual([]);
    expect(reportedSeqs(h)).toEqual([]);

    // What the connection does once its set-up is done.
    h.changes.release();
    h.sync.fillGapsSoon();
    await vi.advanceTimersByTimeAsync(GAP_WAIT_MS);
    expect(reportedSeqs(h)).toEqual([2, 3]);
  });

  it('tries a failed fetch again after another wait, reporting only a failure that will not pass', async () => {
    const all = [1, 2, 3].map((seq) => message('c1', seq));
    const answer = history(all);
    const failures = [new ChatError('unavailable', 'draining'), new ChatError('forbidden', 'not a member')];
    const h = known('c1', 1, (event, payload) => {
      const failure = failures.shift();
      if (failure) throw failure;
      return answer(event, payload);
    });
    push(h, all[2]!);
    await vi.advanceTimersByTimeAsync(GAP_WAIT_MS);
    expect(fetches(h)).toHaveLength(1);
    expect(h.reported('error')).toEqual([]);
    await vi.advanceTimersByTimeAsync(GAP_WAIT_MS);
    expect(h.reported('error').map((error) => error.code)).toEqual(['forbidden']);
    await vi.advanceTimersByTimeAsync(GAP_WAIT_MS);
    expect(fetches(h)).toHaveLength(3);
    expect(reportedSeqs(h)).toEqual([2, 3]);
  });

  it('stops waiting once closed', async () => {
    const h = known('c1', 1, history([]));
    push(h, message('c1', 3));
    h.ctx.closed = true;
    h.sync.close();
    await vi.advanceTimersByTimeAsync(GAP_WAIT_MS * 4);
    expect(vi.getTimerCount()).toBe(0);
    expect(fetches(h)).toEqual([]);
  });
});
