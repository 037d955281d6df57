import type { Message, ThreadRead } from '@chat/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '@chat/testkit/eventually';
import { startNode, type TestNode } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { uniqueUser } from '@chat/testkit/users';
import { ChatClient } from '../src/index.ts';

// Threads through the SDK on two real nodes sharing this run's PostgreSQL and Redis: replies go
// through the outbox, roots come back as updates, and a thread read on one device reaches the other.
let nodeA: TestNode;
let nodeB: TestNode;
const clients: ChatClient[] = [];

beforeAll(async () => {
  [nodeA, nodeB] = await Promise.all([startNode({ NODE_ID: 'sdk-threads-a' }), startNode({ NODE_ID: 'sdk-threads-b' })]);
});
afterAll(async () => {
  for (const client of clients) client.close();
  await Promise.all([nodeA?.close(), nodeB?.close()]);
});

function connected(node: TestNode, userId: string) {
  const client = new ChatClient({ url: node.url, token: () => signToken({ sub: userId, name: userId }) });
  clients.push(client);
  const messages: Message[] = [];
  const updated: Message[] = [];
  const reads: ThreadRead[] = [];
  client.on('message', (message) => messages.push(message));
  client.on('messageUpdated', (message) => updated.push(message));
  client.on('threadRead', (read) => reads.push(read));
  return { client, messages, updated, reads, ready: client.connect() };
}

/** The latest state of a message among what a client reported (highest version). */
function latest(seen: { messages: Message[]; updated: Message[] }, id: string): Message | undefined {
  return [...seen.messages, ...seen.updated].filter((m) => m.id === id).sort((a, b) => b.version - a.version)[0];
}

describe('ChatClient: threads', () => {
  it('replies through the outbox, the root follows as an update, and fetch, list and mark-read reach my other device', async () => {
    const aliceId = uniqueUser('alice');
    const bobId = uniqueUser('bob');
    const alice = connected(nodeA, aliceId);
    const aliceLaptop = connected(nodeB, aliceId);
    const bob = connected(nodeB, bobId);
    await Promise.all([alice.ready, aliceLaptop.ready, bob.ready]);
    const { conversation } = await alice.client.request('conversation:open-direct', { userId: bobId });
    const root = await alice.client.send({ conversationId: conversation.id, body: 'lunch?' }).acked;

    // Bob replies in the thread: what goes on the wire carries the root, on every attempt.
    const outgoing = bob.client.send({ conversationId: conversation.id, body: 'yes, at noon', threadRootId: root.id });
    expect(outgoing.payload.threadRootId).toBe(root.id);
    const reply = await outgoing.acked;
    expect(reply).toMatchObject({ threadRootId: root.id, seq: root.seq + 1, thread: null });

    // Every device reports the reply as a message of the conversation, and the root again with its count.
    for (const device of [alice, aliceLaptop, bob]) {
      await eventually(() => expect(device.messages.map((m) => m.id)).toContain(reply.id));
      await eventually(() => expect(latest(device, root.id)?.thread).toEqual({ replyCount: 1, lastReplyAt: reply.createdAt }));
    }
    expect(alice.updated.filter((m) => m.id === root.id).at(-1)).toMatchObject({ body: 'lunch?', threadRootId: null });

    const page = await alice.client.fetchThread(root.id);
    expect(page).toMatchObject({ root: { id: root.id, thread: { replyCount: 1 } }, hasMore: false, lastReadSeq: 0, unreadCount: 1 });
    expect(page.replies.map((m) => m.id)).toEqual([reply.id]);

    // Two more (one of them mine): paging forward with `after` meets each reply once, in seq order.
    const more = [await bob.client.send({ conversationId: conversation.id, body: 'or one', threadRootId: root.id }).acked];
    more.push(await alice.client.send({ conversationId: conversation.id, body: 'noon it is', threadRootId: root.id }).acked);
    const paged: Message[] = [];
    let after: number | undefined;
    for (let pages = 0; pages < 5; pages++) {
      const next = await aliceLaptop.client.fetchThread(root.id, { limit: 2, ...(after !== undefined && { after }) });
      paged.push(...next.replies);
      after = next.replies.at(-1)?.seq;
      if (!next.hasMore) break;
    }
    expect(paged.map((m) => m.id)).toEqual([reply.id, ...more.map((m) => m.id)]);

    const listed = await alice.client.listThreads(conversation.id, { limit: 10 });
    expect(listed.nextCursor).toBeNull();
    expect(listed.threads).toHaveLength(1);
    expect(listed.threads[0]).toMatchObject({ conversationId: conversation.id, rootId: root.id, root: { thread: { replyCount: 3 } }, lastReadSeq: 0, unreadCount: 2 });

    // Reading on the phone: its answer is reported here, the server tells the laptop.
    const read = await alice.client.markThreadRead(root.id, more[1]!.seq);
    expect(read).toEqual({ conversationId: conversation.id, rootId: root.id, lastReadSeq: more[1]!.seq, unreadCount: 0 });
    expect(alice.reads).toEqual([read]);
    await eventually(() => expect(aliceLaptop.reads).toEqual([read]));
    expect(bob.reads).toEqual([]);
    expect((await aliceLaptop.client.listThreads(conversation.id)).threads[0]).toMatchObject({ lastReadSeq: read.lastReadSeq, unreadCount: 0 });
  });

  it('a reply written offline goes out on reconnect; a root that is itself a reply fails for good', async () => {
    const aliceId = uniqueUser('alice');
    const alice = connected(nodeA, aliceId);
    const bob = connected(nodeB, uniqueUser('bob'));
    await Promise.all([alice.ready, bob.ready]);
    const { conversation } = await alice.client.request('conversation:open-direct', { userId: bob.client.userId! });
    const root = await alice.client.send({ conversationId: conversation.id, body: 'root' }).acked;

    alice.client.disconnect();
    const offline = alice.client.send({ conversationId: conversation.id, body: 'written offline', threadRootId: root.id });
    expect(offline.state).toBe('sending');
    await alice.client.connect();
    const stored = await offline.acked;
    expect(stored).toMatchObject({ threadRootId: root.id, body: 'written offline' });
    await eventually(() => expect(latest(bob, root.id)?.thread?.replyCount).toBe(1));

    const nested = alice.client.send({ conversationId: conversation.id, body: 'nested', threadRootId: stored.id });
    await expect(nested.acked).rejects.toMatchObject({ code: 'validation', retryable: false });
    expect(nested).toMatchObject({ state: 'failed', attempts: 1 });
    await expect(alice.client.fetchThread(stored.id)).rejects.toMatchObject({ code: 'validation' });
  });
});
