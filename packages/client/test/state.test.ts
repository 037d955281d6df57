import { backoffDelay, type ClientEventResults, type Conversation, type Message } from '@chat/protocol';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { ChatClient, Emitter, type ChatError, type OutgoingMessage } from '../src/index.ts';
import { ClientState, ConversationState, SETTLE_MS } from '../src/state.ts';
import { retryPolicy } from '../src/timers.ts';

// The client's bookkeeping rules on their own, without a server: dedupe, cursors, receipts.

function message(overrides: Partial<Message> & Pick<Message, 'id' | 'seq' | 'version'>): Message {
  return {
    conversationId: 'c1',
    senderId: 'alice',
    clientMsgId: `cmid-${overrides.id}`,
    kind: 'text',
    body: 'hi',
    attachments: [],
    replyToId: null,
    threadRootId: null,
    thread: null,
    reactions: [],
    createdAt: '2025-01-01T00:00:00.000Z',
    editedAt: null,
    deletedAt: null,
    ...overrides,
  };
}

function conversation(members: Array<[userId: string, delivered: number, read: number]>): Conversation {
  return {
    id: 'c1',
    kind: members.length > 2 ? 'group' : 'direct',
    title: null,
    ownerId: null,
    members: members.map(([userId, lastDeliveredSeq, lastReadSeq]) => ({ userId, displayName: userId, role: 'member', joinedAt: '', lastDeliveredSeq, lastReadSeq })),
    lastSeq: 0,
    version: 0,
    lastActivityAt: '',
    createdAt: '',
  };
}

describe('ConversationState dedupe', () => {
  it('reports a message once, then only higher versions', () => {
    const state = new ConversationState('c1', 100);
    expect(state.apply(message({ id: 'm1', seq: 1, version: 1 }), 'new')).toBe('new');
    expect(state.apply(message({ id: 'm1', seq: 1, version: 1 }), 'sync')).toBe('stale');
    expect(state.apply(message({ id: 'm1', seq: 1, version: 3 }), 'updated')).toBe('updated');
    expect(state.apply(message({ id: 'm1', seq: 1, version: 3 }), 'sync')).toBe('stale');
    expect(state.apply(message({ id: 'm1', seq: 1, version: 2 }), 'updated')).toBe('stale');
  });

  it('tells new messages from updates of history in sync answers by the history floor', () => {
    const state = new ConversationState('c1', 100);
    state.baseline(10, 5);
    expect(state.apply(message({ id: 'old', seq: 4, version: 11 }), 'sync')).toBe('updated');
    expect(state.apply(message({ id: 'fresh', seq: 6, version: 12 }), 'sync')).toBe('new');
    // A push says what it is, whatever the seq.
    expect(state.apply(message({ id: 'late', seq: 5, version: 9 }), 'new')).toBe('new');
  });

  it('ignores everything about a hidden message and reports the hiding once', () => {
    const state = new ConversationState('c1', 100);
    state.apply(message({ id: 'm1', seq: 1, version: 1 }), 'new');
    expect(state.hide('m1')).toBe(true);
    expect(state.hide('m1')).toBe(false);
    expect(state.apply(message({ id: 'm1', seq: 1, version: 5 }), 'updated')).toBe('stale');
    expect(state.hide('never-seen')).toBe(true);
    expect(state.apply(message({ id: 'never-seen', seq: 2, version: 6 }), 'sync')).toBe('stale');
  });

  it('stays bounded: forgotten messages come back as updates, never as new', () => {
    const state = new ConversationState('c1', 2);
    for (const seq of [1, 2, 3]) state.apply(message({ id: `m${seq}`, seq, version: seq }), 'new');
    expect(state.floorSeq).toBe(1);
    expect(state.apply(message({ id: 'm1', seq: 1, version: 9 }), 'sync')).toBe('updated');
  });
});

describe('ConversationState cursor', () => {
  it('settles live versions only after they were held long enough', () => {
    const state = new ConversationState('c1', 100);
    const t0 = 1_000_000;
    state.noteLive(5, t0);
    state.noteLive(4, t0 + 10);
    // Dropped right after: 5 may have overtaken a version still in flight, so resync from 0.
    state.settle(t0 + 20 - SETTLE_MS);
    expect(state.cursor).toBe(0);
    state.settle(t0 + 10);
    expect(state.cursor).toBe(5);
  });

  it('advances from complete sync answers and drops what they cover', () => {
    const state = new ConversationState('c1', 100);
    state.noteLive(3, 0);
    state.noteLive(8, 0);
    state.advance(5);
    expect(state.cursor).toBe(5);
    state.settle(0);
    expect(state.cursor).toBe(8);
    state.advance(2);
    expect(state.cursor).toBe(8);
  });

  it('lists every known conversation in since, settled as of the disconnect', () => {
    const client = new ClientState(100);
    client.ensure('a').advance(4);
    client.ensure('b').noteLive(7, 100);
    expect(client.since(50)).toEqual([
      { conversationId: 'a', version: 4 },
      { conversationId: 'b', version: 0 },
    ]);
    expect(client.since(100)).toContainEqual({ conversationId: 'b', version: 7 });
  });
});

describe('ConversationState order', () => {
  const seqs = (messages: Message[]) => messages.map((m) => m.seq);

  it('holds a message that overtook an earlier one and reports both in seq order', () => {
    const state = new ConversationState('c1', 100);
    state.baseline(10, 4);
    expect(seqs(state.admit(message({ id: 'm5', seq: 5, version: 11 })))).toEqual([5]);
    expect(seqs(state.admit(message({ id: 'm7', seq: 7, version: 13 })))).toEqual([]);
    expect(seqs(state.admit(message({ id: 'm8', seq: 8, version: 14 })))).toEqual([]);
    expect(state.gap()).toEqual({ after: 5, upTo: 8 });
    expect(seqs(state.admit(message({ id: 'm6', seq: 6, version: 12 })))).toEqual([6, 7, 8]);
    expect(state.gap()).toBeNull();
    // History below the reported position is reported as it comes (it is not a live gap).
    expect(seqs(state.admit(message({ id: 'm2', seq: 2, version: 3 })))).toEqual([2]);
  });

  it('releases what waits behind a gap that will never fill (hidden for this user), in order', () => {
    const state = new ConversationState('c1', 100);
    state.reportedSeq = 3;
    state.admit(message({ id: 'm6', seq: 6, version: 9 }));
    state.admit(message({ id: 'm5', seq: 5, version: 8 }));
    state.admit(message({ id: 'm9', seq: 9, version: 12 }));
    expect(seqs(state.release(6))).toEqual([5, 6]);
    expect(state.gap()).toEqual({ after: 6, upTo: 9 });
    expect(seqs(state.release(9))).toEqual([9]);
    expect(state.reportedSeq).toBe(9);
  });

  it('reports at once while the position is unknown, and stays bounded while a gap stays open', () => {
    const state = new ConversationState('c1', 100);
    expect(seqs(state.admit(message({ id: 'm40', seq: 40, version: 40 })))).toEqual([40]);
    expect(state.reportedSeq).toBe(40);
    let reported: Message[] = [];
    for (let seq = 42; seq <= 1042; seq++) reported = reported.concat(state.admit(message({ id: `m${seq}`, seq, version: seq })));
    expect(seqs(reported)).toEqual(Array.from({ length: 1001 }, (_, i) => 42 + i));
    expect(state.gap()).toBeNull();
  });
});

describe('ConversationState receipts', () => {
  it('derives delivered/read of a message over the other members', () => {
    const state = new ConversationState('c1', 100);
    expect(state.status(3, 'alice')).toEqual({ state: 'sent', deliveredCount: 0, readCount: 0, of: 0 });
    state.mergeMembers(
      conversation([
        ['alice', 3, 3],
        ['bob', 3, 1],
        ['carol', 2, 2],
      ]),
    );
    expect(state.status(3, 'alice')).toEqual({ state: 'sent', deliveredCount: 1, readCount: 0, of: 2 });
    expect(state.mergeReceipt('carol', 3, 2)).toEqual({ conversationId: 'c1', userId: 'carol', lastDeliveredSeq: 3, lastReadSeq: 2 });
    expect(state.status(3, 'alice').state).toBe('delivered');
    // Watermarks never go back, whatever order receipts and conversation objects arrive in.
    expect(state.mergeReceipt('carol', 1, 1)).toBeNull();
    state.mergeMembers(
      conversation([
        ['alice', 3, 3],
        ['bob', 3, 3],
      ]),
    );
    expect(state.status(3, 'alice')).toEqual({ state: 'read', deliveredCount: 1, readCount: 1, of: 1 });
  });

  it('moves own messages through delivered and read once each', () => {
    const state = new ConversationState('c1', 100);
    state.mergeMembers(
      conversation([
        ['alice', 0, 0],
        ['bob', 0, 0],
      ]),
    );
    state.trackOwn({ id: 'm1', clientMsgId: 'x1', seq: 1, state: 'sent' });
    state.trackOwn({ id: 'm2', clientMsgId: 'x2', seq: 2, state: 'sent' });
    expect(state.progressOwn('alice')).toEqual([]);
    state.mergeReceipt('bob', 2, 0);
    expect(state.progressOwn('alice').map((c) => [c.message.id, c.state])).toEqual([
      ['m1', 'delivered'],
      ['m2', 'delivered'],
    ]);
    expect(state.progressOwn('alice')).toEqual([]);
    state.mergeReceipt('bob', 2, 1);
    expect(state.progressOwn('alice').map((c) => [c.message.id, c.state])).toEqual([['m1', 'read']]);
    expect(state.own.map((m) => m.id)).toEqual(['m2']);
  });
});

describe('helpers', () => {
  it('backs off exponentially with jitter, capped, never below retryAfterMs', () => {
    const options = retryPolicy({ initialDelayMs: 100, maxDelayMs: 1000 });
    expect(retryPolicy()).toEqual({ initialMs: 250, maxMs: 10_000 });
    for (let i = 0; i < 50; i++) {
      expect(backoffDelay(1, options)).toBeGreaterThanOrEqual(50);
      expect(backoffDelay(1, options)).toBeLessThanOrEqual(100);
      expect(backoffDelay(10, options)).toBeLessThanOrEqual(1000);
      expect(backoffDelay(1, options, 5000)).toBe(5000);
    }
  });

  it('emits to each listener until it unsubscribes', () => {
    class Bell extends Emitter<{ ring: [times: number] }> {
      ring(times: number) {
        this.emit('ring', times);
      }
    }
    const bell = new Bell();
    const heard: number[] = [];
    const off = bell.on('ring', (times) => heard.push(times));
    bell.once('ring', (times) => heard.push(-times));
    bell.ring(1);
    bell.ring(2);
    off();
    bell.ring(3);
    expect(heard).toEqual([1, -1, 2]);
    expect(bell.listenerCount('ring')).toBe(0);
  });
});

describe('types', () => {
  it('derives requests and events from the protocol', () => {
    const client = new ChatClient({ url: 'http://127.0.0.1:9', token: 'unused' });
    expectTypeOf(client.request<'message:send'>).returns.resolves.toEqualTypeOf<ClientEventResults['message:send']>();
    expectTypeOf(client.request<'history:fetch'>)
      .parameter(1)
      .toHaveProperty('conversationId');
    expectTypeOf(client.send).returns.toEqualTypeOf<OutgoingMessage>();
    expectTypeOf(client.on<'message'>)
      .parameter(1)
      .parameter(0)
      .toEqualTypeOf<Message>();
    expectTypeOf(client.on<'error'>)
      .parameter(1)
      .parameter(0)
      .toEqualTypeOf<ChatError>();
    // @ts-expect-error unknown events do not compile
    void (() => client.request('message:shout', {}));
    client.close();
  });
});
