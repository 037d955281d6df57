import { randomUUID } from 'node:crypto';
import type { Message } from '@chat/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '@chat/testkit/eventually';
import { startNode, type TestNode } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { testDevice, uniqueUser, type Device } from '@chat/testkit/users';

// Threads on two real nodes sharing this run's PostgreSQL and Redis: replies written on either node
// keep the conversation's gap-free seq, roots carry exact counts, resync pages never skip a change.
let nodeA: TestNode;
let nodeB: TestNode;

beforeAll(async () => {
  [nodeA, nodeB] = await Promise.all([startNode({ NODE_ID: 'threads-a' }), startNode({ NODE_ID: 'threads-b' })]);
});
afterAll(async () => {
  await Promise.all([nodeA?.close(), nodeB?.close()]);
});

let counter = 0;
const clientMsgId = () => `th-${Date.now().toString(36)}-${++counter}`;
const send = (from: Device, conversationId: string, body: string, threadRootId?: string) =>
  from.ok('message:send', { conversationId, clientMsgId: clientMsgId(), body, ...(threadRootId && { threadRootId }) });

/** Alice on node A; Bob with one device on each node; Carol on node B; one group of the three. */
async function setUp() {
  const alice = await testDevice(nodeA.url, uniqueUser('alice'));
  const bobA = await testDevice(nodeA.url, uniqueUser('bob'));
  const bobB = await testDevice(nodeB.url, bobA.userId);
  const carol = await testDevice(nodeB.url, uniqueUser('carol'));
  const { conversation } = await alice.ok('conversation:create-group', { title: 'threads', memberIds: [bobA.userId, carol.userId] });
  return { alice, bobA, bobB, carol, conversationId: conversation.id };
}

/** The latest state of a message among a device's pushes (highest version). */
function latest(device: Device, id: string): Message | undefined {
  return [...device.of('message:new'), ...device.of('message:updated')].filter((m) => m.id === id).sort((a, b) => b.version - a.version)[0];
}

describe('threads', () => {
  it('a reply takes the next seq of the conversation, and its root is pushed with the count and its own version', async () => {
    const { alice, bobB, carol, conversationId } = await setUp();
    const { message: root } = await send(alice, conversationId, 'root');
    expect(root).toMatchObject({ threadRootId: null, thread: null });
    const { message: reply } = await send(carol, conversationId, 'first reply', root.id);
    const { message: main } = await send(alice, conversationId, 'main line');
    expect(reply).toMatchObject({ threadRootId: root.id, thread: null, seq: root.seq + 1 });
    expect(main.seq).toBe(reply.seq + 1);

    for (const device of [alice, bobB]) {
      await eventually(() => expect(latest(device, root.id)?.thread?.replyCount).toBe(1));
      const pushed = latest(device, root.id)!;
      expect(pushed.body).toBe('root');
      expect(pushed.thread!.lastReplyAt).toBe(reply.createdAt);
      // Its own version: after the reply's, before the next message's.
      expect(pushed.version).toBeGreaterThan(reply.version);
      expect(pushed.version).toBeLessThan(main.version);
      await eventually(() => expect(device.of('message:new').map((m) => m.id)).toContain(reply.id));
    }

    const page = await bobB.ok('thread:fetch', { rootId: root.id });
    expect(page.root).toMatchObject({ id: root.id, thread: { replyCount: 1 } });
    expect(page.replies.map((m) => m.id)).toEqual([reply.id]);
    expect(page).toMatchObject({ hasMore: false, lastReadSeq: 0, unreadCount: 1 });

    // History carries replies like any message (seq gap-free), tagged with their root.
    const { messages } = await bobB.ok('history:fetch', { conversationId });
    expect(messages.map((m) => [m.seq, m.threadRootId])).toEqual([
      [root.seq - 1, null],
      [root.seq, null],
      [reply.seq, root.id],
      [main.seq, null],
    ]);
  });

  it('replies racing on two nodes with main-line messages: seqs stay gap-free, the count is exact, and a resync in small pages misses nothing', async () => {
    const { alice, bobA, bobB, carol, conversationId } = await setUp();
    const { message: root } = await send(alice, conversationId, 'busy root');
    const { message: other } = await send(alice, conversationId, 'second root');
    const writers = [alice, bobA, bobB, carol];
    const sent = await Promise.all(
      Array.from({ length: 60 }, (_, i) => {
        const threadRootId = i % 3 === 0 ? undefined : i % 3 === 1 ? root.id : other.id;
        return send(writers[i % writers.length]!, conversationId, `m${i}`, threadRootId).then((r) => r.message);
      }),
    );
    const seqs = [root.seq, other.seq, ...sent.map((m) => m.seq)].sort((a, b) => a - b);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => seqs[0]! + i));

    const fetched = await carol.ok('thread:fetch', { rootId: root.id, limit: 100 });
    const expected = sent.filter((m) => m.threadRootId === root.id);
    expect(fetched.replies.map((m) => m.id)).toEqual(expected.sort((a, b) => a.seq - b.seq).map((m) => m.id));
    expect(fetched.root.thread?.replyCount).toBe(20);
    expect((await carol.ok('thread:fetch', { rootId: other.id })).root.thread?.replyCount).toBe(20);

    // Versions of messages and roots never tie, so paging a resync by "highest version received"
    // (3 changes a page) meets every change exactly once and ends with the roots' final counts.
    const seen = new Map<string, Message>();
    let since = 0;
    for (let pages = 0; pages < 200; pages++) {
      const { conversations } = await carol.ok('sync:changes', { since: [{ conversationId, version: since }], limit: 3 });
      const changes = conversations.find((c) => c.conversation.id === conversationId);
      if (!changes || changes.messages.length === 0) break;
      for (const message of changes.messages) seen.set(message.id, message);
      since = changes.hasMore ? Math.max(...changes.messages.map((m) => m.version)) : changes.conversation.version;
      if (!changes.hasMore) break;
    }
    for (const message of sent) expect(seen.has(message.id)).toBe(true);
    expect(seen.get(root.id)?.thread?.replyCount).toBe(20);
    expect(seen.get(other.id)?.thread?.replyCount).toBe(20);
    const versions = [...seen.values()].map((m) => m.version);
    expect(new Set(versions).size).toBe(versions.length);

    // Every device ends with the final root, whichever node's push came last.
    for (const device of writers) await eventually(() => expect(latest(device, root.id)?.thread?.replyCount).toBe(20));
  });

  it('refuses a thread root that is a reply or belongs elsewhere, with the answer a missing id gets', async () => {
    const { alice, carol, conversationId } = await setUp();
    const { message: root } = await send(alice, conversationId, 'root');
    const { message: reply } = await send(carol, conversationId, 'reply', root.id);
    const outsider = await testDevice(nodeA.url, uniqueUser('outsider'));
    const { conversation: elsewhere } = await outsider.ok('conversation:create-group', { title: 'elsewhere', memberIds: [] });
    const { message: foreign } = await send(outsider, elsewhere.id, 'foreign');

    const answers = [];
    for (const threadRootId of [reply.id, foreign.id, randomUUID()]) {
      const ack = await alice.call('message:send', { conversationId, clientMsgId: clientMsgId(), body: 'x', threadRootId });
      expect(ack.ok).toBe(false);
      answers.push(ack.ok ? null : ack.error);
    }
    expect(answers[0]).toMatchObject({ code: 'validation' });
    expect(answers[1]).toEqual(answers[0]);
    expect(answers[2]).toEqual(answers[0]);

    // Nothing was written: the next message takes the next seq.
    expect((await send(alice, conversationId, 'after')).message.seq).toBe(reply.seq + 1);
    // A reply has no thread of its own.
    const fetched = await alice.call('thread:fetch', { rootId: reply.id });
    expect(fetched).toMatchObject({ ok: false, error: { code: 'validation' } });
    // A stranger cannot tell a root from a missing message.
    const stranger = await outsider.call('thread:fetch', { rootId: root.id });
    const missing = await outsider.call('thread:fetch', { rootId: randomUUID() });
    expect(stranger).toMatchObject({ ok: false, error: { code: 'not_found' } });
    expect(stranger).toEqual(missing);
  });

  it('a root I deleted for me is gone for me: not fetched, not listed, not replied to; the others keep it', async () => {
    const { alice, bobA, carol, conversationId } = await setUp();
    const { message: root } = await send(alice, conversationId, 'root');
    await send(carol, conversationId, 'reply', root.id);
    await bobA.ok('message:delete', { messageId: root.id, scope: 'me' });

    const missing = await bobA.call('thread:fetch', { rootId: randomUUID() });
    expect(await bobA.call('thread:fetch', { rootId: root.id })).toEqual(missing);
    expect(await bobA.call('thread:mark-read', { rootId: root.id, seq: 1 })).toEqual(await bobA.call('thread:mark-read', { rootId: randomUUID(), seq: 1 }));
    expect((await bobA.ok('thread:list', { conversationId })).threads).toEqual([]);
    const refused = await bobA.call('message:send', { conversationId, clientMsgId: clientMsgId(), body: 'x', threadRootId: root.id });
    const refusedMissing = await bobA.call('message:send', { conversationId, clientMsgId: clientMsgId(), body: 'x', threadRootId: randomUUID() });
    expect(refused).toMatchObject({ ok: false, error: { code: 'validation' } });
    expect(refused).toEqual(refusedMissing);

    expect((await carol.ok('thread:list', { conversationId })).threads.map((t) => t.rootId)).toEqual([root.id]);
    expect((await send(carol, conversationId, 'still open for others', root.id)).message.threadRootId).toBe(root.id);
  });

  it('unread per user per thread: others’ replies count, mine do not; the watermark moves forward only, capped at the last reply, and reaches my other device', async () => {
    const { alice, bobA, bobB, carol, conversationId } = await setUp();
    const { message: root } = await send(alice, conversationId, 'root');
    const { message: r1 } = await send(alice, conversationId, 'r1', root.id);
    const { message: r2 } = await send(carol, conversationId, 'r2', root.id);
    await send(bobA, conversationId, 'mine', root.id);

    expect(await bobA.ok('thread:fetch', { rootId: root.id })).toMatchObject({ lastReadSeq: 0, unreadCount: 2 });
    expect((await carol.ok('thread:fetch', { rootId: root.id })).unreadCount).toBe(2);

    const read = await bobA.ok('thread:mark-read', { rootId: root.id, seq: r1.seq });
    expect(read).toEqual({ conversationId, rootId: root.id, lastReadSeq: r1.seq, unreadCount: 1 });
    await eventually(() => expect(bobB.of('thread:read')).toEqual([read]));
    expect(bobA.of('thread:read')).toEqual([]);

    // Backwards changes nothing and tells nobody; past the last reply is capped.
    expect(await bobB.ok('thread:mark-read', { rootId: root.id, seq: 1 })).toEqual(read);
    const capped = await bobB.ok('thread:mark-read', { rootId: root.id, seq: 1_000_000 });
    expect(capped.unreadCount).toBe(0);
    expect(capped.lastReadSeq).toBe(r2.seq + 1);
    const { message: r4 } = await send(carol, conversationId, 'r4', root.id);
    expect(await bobB.ok('thread:fetch', { rootId: root.id })).toMatchObject({ lastReadSeq: capped.lastReadSeq, unreadCount: 1 });

    // A reply hidden for me or deleted for everyone no longer counts.
    await bobA.ok('message:delete', { messageId: r4.id, scope: 'me' });
    expect((await bobA.ok('thread:fetch', { rootId: root.id })).unreadCount).toBe(0);
    expect((await bobA.ok('thread:fetch', { rootId: root.id })).replies.map((m) => m.id)).not.toContain(r4.id);
    expect((await alice.ok('thread:fetch', { rootId: root.id })).unreadCount).toBe(3);
  });

  it('deleting a reply for everyone recounts its root under a new version, pushed to every member', async () => {
    const { alice, carol, bobB, conversationId } = await setUp();
    const { message: root } = await send(alice, conversationId, 'root');
    const { message: r1 } = await send(carol, conversationId, 'r1', root.id);
    const { message: r2 } = await send(carol, conversationId, 'r2', root.id);
    await eventually(() => expect(latest(bobB, root.id)?.thread?.replyCount).toBe(2));

    const { message: tombstone } = await carol.ok('message:delete', { messageId: r2.id, scope: 'everyone' });
    await eventually(() => expect(latest(bobB, root.id)?.thread).toEqual({ replyCount: 1, lastReplyAt: r1.createdAt }));
    expect(latest(bobB, root.id)!.version).toBeGreaterThan(tombstone!.version);
    const page = await bobB.ok('thread:fetch', { rootId: root.id });
    expect(page.replies.map((m) => [m.id, m.deletedAt !== null])).toEqual([
      [r1.id, false],
      [r2.id, true],
    ]);
    expect(page.unreadCount).toBe(1);
  });

  it('lists a conversation’s threads by last reply, paged, with my unread count in each', async () => {
    const { alice, carol, conversationId } = await setUp();
    const roots: Message[] = [];
    for (let i = 0; i < 5; i++) roots.push((await send(alice, conversationId, `root ${i}`)).message);
    await send(alice, conversationId, 'no thread here');
    // Replies in the order 2, 0, 4, 1, 3 (3 gets two): the listing is 3, 1, 4, 0, 2.
    for (const i of [2, 0, 4, 1, 3, 3]) await send(carol, conversationId, `reply to ${i}`, roots[i]!.id);

    const first = await alice.ok('thread:list', { conversationId, limit: 2 });
    expect(first.threads.map((t) => t.root.id)).toEqual([roots[3]!.id, roots[1]!.id]);
    expect(first.threads.map((t) => t.unreadCount)).toEqual([2, 1]);
    const rest = await alice.ok('thread:list', { conversationId, limit: 10, cursor: first.nextCursor! });
    expect(rest.threads.map((t) => t.root.id)).toEqual([roots[4]!.id, roots[0]!.id, roots[2]!.id]);
    expect(rest.nextCursor).toBeNull();
    expect((await carol.ok('thread:list', { conversationId })).threads.every((t) => t.unreadCount === 0)).toBe(true);

    const bad = await alice.call('thread:list', { conversationId, cursor: 'bm90IGEgY3Vyc29y' });
    expect(bad).toMatchObject({ ok: false, error: { code: 'validation' } });
  });

  it('REST: fetch, mark read and list, with the socket’s answers', async () => {
    const { alice, carol, conversationId } = await setUp();
    const { message: root } = await send(alice, conversationId, 'root');
    const { message: reply } = await send(carol, conversationId, 'reply', root.id);
    const headers = { authorization: `Bearer ${signToken({ sub: alice.userId, name: alice.userId })}` };

    const fetched = await nodeB.app.inject({ method: 'GET', url: `/v1/messages/${root.id}/thread?after=0&limit=10`, headers });
    expect(fetched.statusCode).toBe(200);
    expect(fetched.json()).toMatchObject({ replies: [{ id: reply.id }], unreadCount: 1 });

    const read = await nodeB.app.inject({ method: 'POST', url: `/v1/messages/${root.id}/thread/read`, headers, payload: { seq: reply.seq } });
    expect(read.statusCode).toBe(200);
    const { ok: _ok, ...state } = read.json();
    expect(state).toEqual({ conversationId, rootId: root.id, lastReadSeq: reply.seq, unreadCount: 0 });
    await eventually(() => expect(alice.of('thread:read')).toEqual([state]));

    const listed = await nodeA.app.inject({ method: 'GET', url: `/v1/conversations/${conversationId}/threads?limit=5`, headers });
    expect(listed.json()).toMatchObject({ threads: [{ rootId: root.id, unreadCount: 0, root: { thread: { replyCount: 1 } } }], nextCursor: null });

    const sentRest = await nodeA.app.inject({
      method: 'POST',
      url: `/v1/conversations/${conversationId}/messages`,
      headers,
      payload: { clientMsgId: clientMsgId(), body: 'over REST', threadRootId: root.id },
    });
    expect(sentRest.statusCode).toBe(201);
    expect(sentRest.json().message).toMatchObject({ threadRootId: root.id, seq: reply.seq + 1 });
  });
});
