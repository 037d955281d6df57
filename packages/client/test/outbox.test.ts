import type { ClientPayload } from '@chat/protocol';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ChatError } from '../src/errors.ts';
import { conversation, type Harness, harness, message } from './context-harness.ts';

// The outbox driven through its context: `request` is the test's stand-in for the server, the clock is
// vitest's where back-offs are involved.

afterEach(() => {
  vi.useRealTimers();
});

/** Stores what it is sent, numbering each conversation's messages from 1, as the server's ack does. */
function store(): (payload: ClientPayload<'message:send'>) => { message: ReturnType<typeof message> } {
  const seqs = new Map<string, number>();
  return (payload) => {
    const seq = (seqs.get(payload.conversationId) ?? 0) + 1;
    seqs.set(payload.conversationId, seq);
    return { message: message(payload.conversationId, seq, 'me', payload.clientMsgId) };
  };
}

const notFound = () => new ChatError('not_found', 'not scripted');
const sends = (h: Harness) => h.requests.filter((request) => request.event === 'message:send').map((request) => request.payload);
const states = (h: Harness, clientMsgId: string) => h.reported('status').flatMap((event) => (event.clientMsgId === clientMsgId ? [event.state] : []));
/** Lets every request already answered run to its end. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('the outbox', () => {
  it('sends a message once and reports sending, then sent with the stored message', async () => {
    const stored = store();
    const h = harness((event, payload) => {
      if (event === 'message:send') return stored(payload);
      throw notFound();
    });
    const outgoing = h.outbox.send({ conversationId: 'c1', body: 'hi', kind: 'text' });
    expect(outgoing.state).toBe('sending');
    expect(h.outbox.statusOf(outgoing)).toEqual({ state: 'sending', deliveredCount: 0, readCount: 0, of: 0 });

    const acked = await outgoing.acked;
    expect(outgoing).toMatchObject({ state: 'sent', message: acked, attempts: 1, error: null });
    expect(acked.clientMsgId).toBe(outgoing.clientMsgId);
    expect(sends(h)).toEqual([{ conversationId: 'c1', clientMsgId: outgoing.clientMsgId, body: 'hi', kind: 'text' }]);
    expect(states(h, outgoing.clientMsgId)).toEqual(['sending', 'sent']);
    expect(h.outbox.has(outgoing.clientMsgId)).toBe(false);
    // The ack went through the same path as a push: reported once, as a new message.
    expect(h.reported('message').map((m) => m.id)).toEqual([acked.id]);
  });

  it('returns the record still in the outbox for a send with its clientMsgId, without sending twice', async () => {
    const ack = Promise.withResolvers<unknown>();
    const h = harness((event) => {
      if (event === 'message:send') return ack.promise;
      throw notFound();
    });
    const outgoing = h.outbox.send({ conversationId: 'c1', body: 'once' });
    expect(h.outbox.send({ conversationId: 'c1', body: 'once', clientMsgId: outgoing.clientMsgId })).toBe(outgoing);
    ack.resolve(store()(outgoing.payload));
    await outgoing.acked;
    expect(sends(h)).toHaveLength(1);
  });

  it('retries a retryable failure with the same payload, no sooner than the server asked, then backs off', async () => {
    vi.useFakeTimers();
    const stored = store();
    const h = harness((event, payload) => {
      if (event !== 'message:send') throw notFound();
      if (sends(h).length === 1) throw new ChatError('rate_limited', 'slow down', { retryAfterMs: 3000 });
      if (sends(h).length === 2) throw new ChatError('timeout', 'no ack');
      return stored(payload);
    });
    const outgoing = h.outbox.send({ conversationId: 'c1', body: 'persistent' });
    await vi.advanceTimersByTimeAsync(2999);
    expect(outgoing.attempts).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(outgoing.attempts).toBe(2);
    // The second failure backs off by the retry policy: at most 2 × 250 ms.
    await vi.advanceTimersByTimeAsync(500);
    await outgoing.acked;
    expect(outgoing.attempts).toBe(3);
    expect(new Set(sends(h).map((payload) => JSON.stringify(payload))).size).toBe(1);
    expect(states(h, outgoing.clientMsgId)).toEqual(['sending', 'sent']);
  });

  it('waits out a dropped connection instead of backing off, and sends again on the next connect', async () => {
    vi.useFakeTimers();
    const stored = store();
    const h = harness((event, payload) => {
      if (event !== 'message:send') throw notFound();
      if (sends(h).length === 1) {
        h.ctx.connected = false;
        throw new ChatError('disconnected', 'transport close');
      }
      return stored(payload);
    });
    const outgoing = h.outbox.send({ conversationId: 'c1', body: 'through the outage' });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(outgoing).toMatchObject({ state: 'sending', attempts: 1 });

    h.ctx.connected = true;
    h.ctx.signalConnected();
    await outgoing.acked;
    expect(outgoing).toMatchObject({ state: 'sent', attempts: 2 });
  });

  it('fails for good on a non-retryable error, keeps the message for retry() with the same clientMsgId, and discards only failed ones', async () => {
    const stored = store();
    const h = harness((event, payload) => {
      if (event !== 'message:send') throw notFound();
      if (sends(h).length === 1) throw new ChatError('forbidden', 'not a member');
      return stored(payload);
    });
    const outgoing = h.outbox.send({ conversationId: 'c1', body: 'let me in' });
    await expect(outgoing.acked).rejects.toMatchObject({ code: 'forbidden' });
    expect(outgoing).toMatchObject({ state: 'failed', attempts: 1 });
    expect(outgoing.error?.code).toBe('forbidden');
    expect(h.outbox.statusOf(outgoing).state).toBe('failed');
    expect(h.outbox.has(outgoing.clientMsgId)).toBe(true);

    expect(h.outbox.retry(outgoing.clientMsgId)).toBe(outgoing);
    await outgoing.acked;
    expect(outgoing).toMatchObject({ state: 'sent', attempts: 2, error: null });
    expect(sends(h).map((payload) => (payload as { clientMsgId: string }).clientMsgId)).toEqual([outgoing.clientMsgId, outgoing.clientMsgId]);
    expect(states(h, outgoing.clientMsgId)).toEqual(['sending', 'failed', 'sending', 'sent']);
    expect(h.outbox.discard(outgoing.clientMsgId)).toBe(false);

    const refused = harness(() => {
      throw new ChatError('forbidden', 'not a member');
    });
    const failed = refused.outbox.send({ conversationId: 'c1', body: 'no' });
    await failed.acked.catch(() => {});
    expect(refused.outbox.discard(failed.clientMsgId)).toBe(true);
    expect(refused.outbox.retry(failed.clientMsgId)).toBeUndefined();
  });

  it('sends one message at a time per conversation, in the order of send(); other conversations do not wait', async () => {
    const stored = store();
    const acks = new Map<string, PromiseWithResolvers<unknown>>();
    const h = harness((event, payload) => {
      if (event !== 'message:send') throw notFound();
      const ack = Promise.withResolvers<unknown>();
      acks.set(payload.clientMsgId, ack);
      return ack.promise;
    });
    const first = h.outbox.send({ conversationId: 'c1', body: 'one' });
    const second = h.outbox.send({ conversationId: 'c1', body: 'two' });
    const elsewhere = h.outbox.send({ conversationId: 'c2', body: 'meanwhile' });
    await settle();
    expect(sends(h)).toEqual([first.payload, elsewhere.payload]);

    acks.get(first.clientMsgId)!.resolve(stored(first.payload));
    await first.acked;
    await settle();
    expect(sends(h)).toEqual([first.payload, elsewhere.payload, second.payload]);
    acks.get(second.clientMsgId)!.resolve(stored(second.payload));
    expect((await second.acked).seq).toBe(2);
  });

  it('fails what the validator refuses at once, without a request', () => {
    const h = harness(
      () => {
        throw notFound();
      },
      { validate: (payload) => (payload.body.trim() === '' ? 'body: empty' : null) },
    );
    const outgoing = h.outbox.send({ conversationId: 'c1', body: ' ' });
    expect(outgoing).toMatchObject({ state: 'failed', attempts: 0 });
    expect(outgoing.error).toMatchObject({ code: 'validation', message: 'body: empty' });
    expect(h.requests).toEqual([]);
    expect(states(h, outgoing.clientMsgId)).toEqual(['sending', 'failed']);
  });

  it('on close fails everything still sending with closed and wakes a back-off without another attempt', async () => {
    vi.useFakeTimers();
    const h = harness(() => {
      throw new ChatError('internal', 'try later');
    });
    const backingOff = h.outbox.send({ conversationId: 'c1', body: 'first' });
    const queued = h.outbox.send({ conversationId: 'c1', body: 'behind it' });
    await vi.advanceTimersByTimeAsync(0);
    expect(backingOff.attempts).toBe(1);

    h.ctx.closed = true;
    h.outbox.close();
    await vi.advanceTimersByTimeAsync(60_000);
    for (const outgoing of [backingOff, queued]) expect(outgoing.error?.code).toBe('closed');
    expect(sends(h)).toHaveLength(1);
    expect(h.outbox.send({ conversationId: 'c1', body: 'after close' }).error?.code).toBe('closed');
  });

  it('follows a sent message to delivered and read as the other member moves, asking once for the member list', async () => {
    const stored = store();
    const members = Promise.withResolvers<unknown>();
    const h = harness((event, payload) => {
      if (event === 'message:send') return stored(payload);
      if (event === 'conversation:get') return members.promise;
      throw notFound();
    });
    const first = h.outbox.send({ conversationId: 'c1', body: 'one' });
    const second = h.outbox.send({ conversationId: 'c1', body: 'two' });
    await second.acked;
    await settle();
    expect(h.requests.filter((request) => request.event === 'conversation:get')).toEqual([{ event: 'conversation:get', payload: { conversationId: 'c1' } }]);

    members.resolve({ conversation: conversation('c1', 2) });
    await settle();
    expect(h.outbox.statusOf(first)).toEqual({ state: 'sent', deliveredCount: 0, readCount: 0, of: 1 });
    h.changes.applyReceipt({ conversationId: 'c1', userId: 'bob', lastDeliveredSeq: 2, lastReadSeq: 1 });
    expect(states(h, first.clientMsgId)).toEqual(['sending', 'sent', 'read']);
    expect(states(h, second.clientMsgId)).toEqual(['sending', 'sent', 'delivered']);
    h.changes.applyReceipt({ conversationId: 'c1', userId: 'bob', lastDeliveredSeq: 2, lastReadSeq: 2 });
    expect(states(h, second.clientMsgId)).toEqual(['sending', 'sent', 'delivered', 'read']);
    expect(h.outbox.statusOf(second)).toEqual({ state: 'read', deliveredCount: 1, readCount: 1, of: 1 });
  });
});
