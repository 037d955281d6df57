import { clientEventSchemas, type ClientEventName, type Message } from '@chat/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '@chat/testkit/eventually';
import { startNode, type TestNode } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { connectDevice, uniqueUser, type Device } from '@chat/testkit/users';

// Two real nodes on different ports sharing this run's PostgreSQL and Redis: every cross-node
// assertion below crosses the Redis adapter.
let nodeA: TestNode;
let nodeB: TestNode;
const devices: Device[] = [];

beforeAll(async () => {
  [nodeA, nodeB] = await Promise.all([startNode({ NODE_ID: 'node-a' }), startNode({ NODE_ID: 'node-b' })]);
});
afterAll(async () => {
  for (const device of devices) device.close();
  await Promise.all([nodeA?.close(), nodeB?.close()]);
});

async function device(node: TestNode, userId: string): Promise<Device> {
  const connected = await connectDevice(node.url, userId);
  devices.push(connected);
  return connected;
}

let clientMsgCounter = 0;
const clientMsgId = () => `cmid-${Date.now().toString(36)}-${++clientMsgCounter}`;

async function direct(a: Device, b: Device) {
  return (await a.ok('conversation:open-direct', { userId: b.userId })).conversation;
}

function seqsOf(messages: Message[]): number[] {
  return messages.map((message) => message.seq);
}

describe('conversations', () => {
  it('opens one direct conversation per pair, also when both sides race', async () => {
    const alice = await device(nodeA, uniqueUser('alice'));
    const bob = await device(nodeB, uniqueUser('bob'));
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? alice : bob).ok('conversation:open-direct', { userId: (i % 2 ? bob : alice).userId })));
    expect(new Set(results.map((r) => r.conversation.id)).size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(results[0]!.conversation).toMatchObject({ kind: 'direct', members: expect.arrayContaining([expect.objectContaining({ userId: alice.userId })]) });
    const rows = await nodeA.app.db.conversation.count({ where: { kind: 'direct', OR: [{ directLowId: alice.userId }, { directHighId: alice.userId }] } });
    expect(rows).toBe(1);
    expect(await alice.call('conversation:open-direct', { userId: alice.userId })).toMatchObject({ ok: false, error: { code: 'validation' } });
  });

  it('manages a group: every change is a system message and an event to the members', async () => {
    const owner = await device(nodeA, uniqueUser('owner'));
    const member = await device(nodeB, uniqueUser('member'));
    const late = await device(nodeB, uniqueUser('late'));
    const { conversation } = await owner.ok('conversation:create-group', { title: '  Team\u0007 ', memberIds: [member.userId] });
    expect(conversation).toMatchObject({ kind: 'group', title: 'Team', ownerId: owner.userId, lastSeq: 1 });

    await owner.ok('conversation:add-members', { conversationId: conversation.id, userIds: [late.userId] });
    await owner.ok('conversation:rename', { conversationId: conversation.id, title: 'Team 2' });
    expect(await member.call('conversation:rename', { conversationId: conversation.id, title: 'mine' })).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    await owner.ok('conversation:remove-member', { conversationId: conversation.id, userId: member.userId });

    await eventually(() => {
      expect(late.of('conversation:updated').at(-1)).toMatchObject({ title: 'Team 2', members: [expect.objectContaining({ userId: owner.userId }), expect.objectContaining({ userId: late.userId })] });
      expect(member.of('conversation:removed')).toEqual([{ conversationId: conversation.id }]);
      expect(
        late
          .of('message:new')
          .filter((m) => m.kind === 'system')
          .map((m) => m.seq),
      ).toEqual([2, 3, 4]); // from their own "added" on
    });
    const history = await owner.ok('history:fetch', { conversationId: conversation.id });
    expect(history.messages.map((m) => [m.seq, m.kind])).toEqual([
      [1, 'system'],
      [2, 'system'],
      [3, 'system'],
      [4, 'system'],
    ]);
    // The removed member has no access any more, and cannot tell the conversation exists.
    expect(await member.call('history:fetch', { conversationId: conversation.id })).toMatchObject({ ok: false, error: { code: 'not_found' } });

    await owner.ok('conversation:leave', { conversationId: conversation.id });
    const after = await late.ok('conversation:get', { conversationId: conversation.id });
    expect(after.conversation).toMatchObject({ ownerId: late.userId, members: [expect.objectContaining({ userId: late.userId, role: 'owner' })] });
  });

  it('lists my conversations by last activity with last message and unread count, paged', async () => {
    const me = await device(nodeA, uniqueUser('lister'));
    const others = await Promise.all([1, 2, 3].map((i) => device(nodeB, uniqueUser(`peer${i}`))));
    const conversations = [];
    for (const other of others) {
      const conversation = await direct(other, me);
      conversations.push(conversation);
      await other.ok('message:send', { conversationId: conversation.id, clientMsgId: clientMsgId(), body: `hi from ${other.userId}` });
    }
    await others[0]!.ok('message:send', { conversationId: conversations[0]!.id, clientMsgId: clientMsgId(), body: 'latest' });

    const first = await me.ok('conversation:list', { limit: 2 });
    expect(first.conversations.map((c) => c.id)).toEqual([conversations[0]!.id, conversations[2]!.id]);
    expect(first.conversations[0]).toMatchObject({ unreadCount: 2, lastMessage: { body: 'latest' } });
    expect(first.nextCursor).toEqual(expect.any(String));
    const second = await me.ok('conversation:list', { limit: 2, cursor: first.nextCursor! });
    expect(second.conversations.map((c) => c.id)).toEqual([conversations[1]!.id]);
    expect(second.nextCursor).toBeNull();

    await me.ok('receipt:mark', { conversationId: conversations[0]!.id, read: 2 });
    const again = await me.ok('conversation:list', { limit: 1 });
    expect(again.conversations[0]).toMatchObject({ unreadCount: 0 });
  });
});

describe('messages', () => {
  it("reaches every other device of every member on both nodes exactly once, the sender's other devices included", async () => {
    const aliceId = uniqueUser('alice');
    const bobId = uniqueUser('bob');
    const alice1 = await device(nodeA, aliceId);
    const alice2 = await device(nodeB, aliceId);
    const bob1 = await device(nodeB, bobId);
    const bob2 = await device(nodeA, bobId);
    const conversation = await direct(alice1, bob1);

    const { message, duplicate } = await alice1.ok('message:send', {
      conversationId: conversation.id,
      clientMsgId: clientMsgId(),
      body: '  <b>hello</b>\u0000 world  ',
      attachments: [{ url: 'https://files.example/cat.png', mime: 'image/png', size: 1234, name: 'cat.png' }],
      kind: 'image',
    });
    expect(duplicate).toBe(false);
    expect(message).toMatchObject({ seq: 1, senderId: aliceId, body: '<b>hello</b> world', kind: 'image', attachments: [{ name: 'cat.png' }] });

    for (const d of [alice2, bob1, bob2]) {
      await eventually(() => expect(d.of('message:new').map((m) => m.id)).toEqual([message.id]));
    }
    // The sending device has the message from its ack: no second copy as an event.
    expect(alice1.of('message:new')).toEqual([]);
    const persisted = await nodeB.app.db.message.findUniqueOrThrow({ where: { id: message.id }, include: { attachments: true } });
    expect(persisted).toMatchObject({ seq: 1, body: '<b>hello</b> world', attachments: [expect.objectContaining({ url: 'https://files.example/cat.png' })] });
  });

  it('gives 50 concurrent senders in one conversation gap-free, unique seqs', async () => {
    const senders = await Promise.all(Array.from({ length: 50 }, (_, i) => device(i % 2 ? nodeA : nodeB, uniqueUser(`s${i}`))));
    const { conversation } = await senders[0]!.ok('conversation:create-group', { title: 'busy', memberIds: senders.map((s) => s.userId) });
    const acks = await Promise.all(
      senders.flatMap((sender) => [1, 2, 3].map((n) => sender.ok('message:send', { conversationId: conversation.id, clientMsgId: clientMsgId(), body: `${sender.userId} #${n}` }))),
    );
    const seqs = acks.map((ack) => ack.message.seq).sort((a, b) => a - b);
    expect(seqs).toEqual(Array.from({ length: 150 }, (_, i) => i + 2)); // seq 1 is the "created" system message
    const rows = await nodeA.app.db.message.findMany({ where: { conversationId: conversation.id }, select: { seq: true }, orderBy: { seq: 'asc' } });
    expect(rows.map((row) => row.seq)).toEqual(Array.from({ length: 151 }, (_, i) => i + 1));
  });

  it('is idempotent per clientMsgId: retries, also concurrent ones, return the original and store one row', async () => {
    const alice = await device(nodeA, uniqueUser('alice'));
    const bob = await device(nodeB, uniqueUser('bob'));
    const conversation = await direct(alice, bob);
    const id = clientMsgId();
    const payload = { conversationId: conversation.id, clientMsgId: id, body: 'once' };
    const [first, ...retries] = await Promise.all([alice.ok('message:send', payload), alice.ok('message:send', payload), alice.ok('message:send', payload)]);
    const sequential = await alice.ok('message:send', payload);
    const all = [first!, ...retries, sequential];
    expect(new Set(all.map((r) => r.message.id)).size).toBe(1);
    expect(all.filter((r) => !r.duplicate)).toHaveLength(1);
    expect(all.every((r) => r.message.seq === 1)).toBe(true);
    expect(await nodeA.app.db.message.count({ where: { conversationId: conversation.id } })).toBe(1);
    const next = await alice.ok('message:send', { ...payload, clientMsgId: clientMsgId() });
    expect(next.message.seq).toBe(2); // no seq was burnt by the retries
    await eventually(() => expect(bob.of('message:new')).toHaveLength(2));
  });

  it('edits (sender only, with history), deletes for everyone (tombstone) and for me, reacts once per emoji, replies', async () => {
    const alice = await device(nodeA, uniqueUser('alice'));
    const bob = await device(nodeB, uniqueUser('bob'));
    const conversation = await direct(alice, bob);
    const send = (d: Device, body: string, extra = {}) => d.ok('message:send', { conversationId: conversation.id, clientMsgId: clientMsgId(), body, ...extra });
    const { message: original } = await send(alice, 'first');
    const { message: reply } = await send(bob, 'a reply', { replyToId: original.id });
    expect(reply.replyToId).toBe(original.id);
    expect(await bob.call('message:send', { conversationId: conversation.id, clientMsgId: clientMsgId(), body: 'x', replyToId: '0190a5f5-0000-7000-8000-000000000000' })).toMatchObject({
      ok: false,
      error: { code: 'validation' },
    });

    expect(await bob.call('message:edit', { messageId: original.id, body: 'hijack' })).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    const edited = (await alice.ok('message:edit', { messageId: original.id, body: 'first, edited' })).message;
    expect(edited).toMatchObject({ body: 'first, edited', editedAt: expect.any(String) });
    expect(edited.version).toBeGreaterThan(original.version);
    expect(await nodeA.app.db.messageEdit.findMany({ where: { messageId: original.id } })).toEqual([expect.objectContaining({ previousBody: 'first' })]);

    await bob.ok('message:react', { messageId: original.id, emoji: '👍', action: 'add' });
    await bob.ok('message:react', { messageId: original.id, emoji: '👍', action: 'add' });
    const reacted = (await alice.ok('message:react', { messageId: original.id, emoji: '🎉', action: 'add' })).message;
    expect(reacted.reactions).toEqual([
      { emoji: '👍', userId: bob.userId },
      { emoji: '🎉', userId: alice.userId },
    ]);
    const unreacted = (await bob.ok('message:react', { messageId: original.id, emoji: '👍', action: 'remove' })).message;
    expect(unreacted.reactions).toEqual([{ emoji: '🎉', userId: alice.userId }]);

    await bob.ok('message:delete', { messageId: reply.id, scope: 'me' });
    expect((await bob.ok('history:fetch', { conversationId: conversation.id })).messages.map((m) => m.id)).toEqual([original.id]);
    expect((await alice.ok('history:fetch', { conversationId: conversation.id })).messages.map((m) => m.id)).toEqual([original.id, reply.id]);

    expect(await bob.call('message:delete', { messageId: original.id, scope: 'everyone' })).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    const tombstone = (await alice.ok('message:delete', { messageId: original.id, scope: 'everyone' })).message!;
    expect(tombstone).toMatchObject({ body: '', attachments: [], reactions: [], deletedAt: expect.any(String) });
    const history = await bob.ok('history:fetch', { conversationId: conversation.id });
    expect(history.messages).toEqual([expect.objectContaining({ id: original.id, seq: 1, body: '', deletedAt: expect.any(String) })]);

    await eventually(() => {
      const updates = bob.of('message:updated').filter((m) => m.id === original.id);
      expect(updates.map((m) => m.version)).toEqual([...updates.map((m) => m.version)].sort((a, b) => a - b));
      expect(updates.at(-1)).toMatchObject({ deletedAt: expect.any(String) });
      expect(bob.of('message:hidden')).toEqual([{ conversationId: conversation.id, messageId: reply.id }]);
      expect(alice.of('message:hidden')).toEqual([]);
    });
  });

  it('cleans and limits bodies: control characters removed, empty or too long refused', async () => {
    const node = await startNode({ MESSAGE_MAX_LENGTH: '10' });
    try {
      const alice = await connectDevice(node.url, uniqueUser('alice'));
      const bob = await connectDevice(node.url, uniqueUser('bob'));
      const conversation = await direct(alice, bob);
      const send = (body: string) => alice.call('message:send', { conversationId: conversation.id, clientMsgId: clientMsgId(), body });
      expect(await send(' \u0001\u0002 ')).toMatchObject({ ok: false, error: { code: 'validation' } });
      expect(await send('x'.repeat(11))).toMatchObject({ ok: false, error: { code: 'validation', message: 'body: at most 10 characters' } });
      expect(await send('a\u200Bb\uD800c')).toMatchObject({ ok: true, message: { body: 'a\u200Bbc' } });
      alice.close();
      bob.close();
    } finally {
      await node.close();
    }
  });
});

describe('receipts', () => {
  it('move forward only, never past the last seq, and reach the sender', async () => {
    const alice = await device(nodeA, uniqueUser('alice'));
    const bob = await device(nodeB, uniqueUser('bob'));
    const conversation = await direct(alice, bob);
    for (const body of ['1', '2', '3']) await alice.ok('message:send', { conversationId: conversation.id, clientMsgId: clientMsgId(), body });

    expect((await bob.ok('receipt:mark', { conversationId: conversation.id, delivered: 3, read: 2 })).receipt).toEqual({
      conversationId: conversation.id,
      userId: bob.userId,
      lastDeliveredSeq: 3,
      lastReadSeq: 2,
    });
    expect((await bob.ok('receipt:mark', { conversationId: conversation.id, read: 1 })).receipt).toMatchObject({ lastDeliveredSeq: 3, lastReadSeq: 2 });
    expect((await bob.ok('receipt:mark', { conversationId: conversation.id, read: 99 })).receipt).toMatchObject({ lastDeliveredSeq: 3, lastReadSeq: 3 });

    await eventually(() =>
      expect(alice.of('receipt:updated').map((r) => [r.userId, r.lastDeliveredSeq, r.lastReadSeq])).toEqual([
        [bob.userId, 3, 2],
        [bob.userId, 3, 3],
      ]),
    );
    const { conversation: seen } = await alice.ok('conversation:get', { conversationId: conversation.id });
    expect(seen.members.find((m) => m.userId === bob.userId)).toMatchObject({ lastDeliveredSeq: 3, lastReadSeq: 3 });
  });

  it('stay exact when reports share a statement: concurrent reports of many members, devices and senders', async () => {
    // Receipts are group-committed: reports of one member merged into one statement must keep the
    // highest watermark, and receipt batches running beside message batches (which lock the same
    // member rows) must neither deadlock nor lose a report.
    const pairs = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const a = await device(i % 2 ? nodeA : nodeB, uniqueUser(`ra${i}`));
        const b = await device(i % 2 ? nodeB : nodeA, uniqueUser(`rb${i}`));
        const b2 = await device(i % 2 ? nodeA : nodeB, b.userId);
        return { a, b, b2, conversation: await direct(a, b) };
      }),
    );
    for (const { a, conversation } of pairs) {
      for (let n = 0; n < 10; n++) await a.ok('message:send', { conversationId: conversation.id, clientMsgId: clientMsgId(), body: `m${n}` });
    }
    const results = await Promise.all(
      pairs.flatMap(({ a, b, b2, conversation }) => [
        ...Array.from({ length: 10 }, (_, n) => (n % 2 ? b : b2).ok('receipt:mark', { conversationId: conversation.id, delivered: n + 1, read: n })),
        // The other side keeps sending (and so locking its own member row) and reading meanwhile.
        ...Array.from({ length: 5 }, (_, n) => a.ok('message:send', { conversationId: conversation.id, clientMsgId: clientMsgId(), body: `late${n}` })),
        a.ok('receipt:mark', { conversationId: conversation.id, read: 10 }),
      ]),
    );
    expect(results).toHaveLength(8 * 16);
    for (const { a, b, conversation } of pairs) {
      const { conversation: seen } = await a.ok('conversation:get', { conversationId: conversation.id });
      expect(seen.members.find((m) => m.userId === b.userId)).toMatchObject({ lastDeliveredSeq: 10, lastReadSeq: 9 });
      expect(seen.members.find((m) => m.userId === a.userId)).toMatchObject({ lastDeliveredSeq: 15, lastReadSeq: 15 });
      // The sender was told the final watermarks. (Pushes from b's two devices come from two nodes and
      // may cross on the way, so their order is not asserted: clients max-merge watermarks.)
      const toldA = () => a.of('receipt:updated').filter((r) => r.conversationId === conversation.id && r.userId === b.userId);
      await eventually(() => expect([Math.max(...toldA().map((r) => r.lastDeliveredSeq)), Math.max(...toldA().map((r) => r.lastReadSeq))]).toEqual([10, 9]));
    }
  });
});

describe('resync', () => {
  it('after a disconnect, returns exactly what was missed: new messages, edits, deletions, reactions, receipts', async () => {
    const alice = await device(nodeA, uniqueUser('alice'));
    const bobId = uniqueUser('bob');
    let bob = await device(nodeB, bobId);
    const conversation = await direct(alice, bob);
    const send = (body: string) => alice.ok('message:send', { conversationId: conversation.id, clientMsgId: clientMsgId(), body });
    const before = [await send('m1'), await send('m2'), await send('m3')].map((r) => r.message);
    const initial = await bob.ok('sync:changes', { since: [] });
    const held = Math.max(...initial.conversations.flatMap((c) => c.messages.map((m) => m.version)));
    expect(initial.conversations.find((c) => c.conversation.id === conversation.id)!.messages.map((m) => m.seq)).toEqual([1, 2, 3]);

    bob.close();
    const missed = [await send('m4'), await send('m5')].map((r) => r.message);
    await alice.ok('message:edit', { messageId: before[0]!.id, body: 'm1 edited' });
    await alice.ok('message:react', { messageId: before[1]!.id, emoji: '❤️', action: 'add' });
    await alice.ok('message:delete', { messageId: before[2]!.id, scope: 'everyone' });
    await alice.ok('receipt:mark', { conversationId: conversation.id, read: 5 });

    bob = await device(nodeA, bobId); // reconnects to the other node
    const changes = await bob.ok('sync:changes', { since: [{ conversationId: conversation.id, version: held }] });
    const entry = changes.conversations.find((c) => c.conversation.id === conversation.id)!;
    expect(entry.hasMore).toBe(false);
    const byId = new Map(entry.messages.map((m) => [m.id, m]));
    expect(byId.size).toBe(entry.messages.length); // nothing twice
    expect([...byId.keys()].sort()).toEqual([...before.map((m) => m.id), ...missed.map((m) => m.id)].sort());
    expect(byId.get(before[0]!.id)).toMatchObject({ body: 'm1 edited' });
    expect(byId.get(before[1]!.id)!.reactions).toEqual([{ emoji: '❤️', userId: alice.userId }]);
    expect(byId.get(before[2]!.id)).toMatchObject({ body: '', deletedAt: expect.any(String) });
    expect(changes.receipts).toContainEqual({ conversationId: conversation.id, userId: alice.userId, lastDeliveredSeq: 5, lastReadSeq: 5 });

    // Holding everything now, a further sync returns nothing for this conversation.
    const latest = Math.max(...entry.messages.map((m) => m.version), entry.conversation.version);
    const nothing = await bob.ok('sync:changes', { since: [{ conversationId: conversation.id, version: latest }] });
    expect(nothing.conversations.find((c) => c.conversation.id === conversation.id)).toBeUndefined();
  });

  it('pages large gaps with hasMore and reports conversations the user was removed from', async () => {
    const owner = await device(nodeA, uniqueUser('owner'));
    const member = await device(nodeB, uniqueUser('member'));
    const { conversation } = await owner.ok('conversation:create-group', { title: 'paging', memberIds: [member.userId] });
    for (let i = 0; i < 7; i++) await owner.ok('message:send', { conversationId: conversation.id, clientMsgId: clientMsgId(), body: `n${i}` });
    const seen: number[] = [];
    let version = 0;
    for (;;) {
      const page = await member.ok('sync:changes', { since: [{ conversationId: conversation.id, version }], limit: 3 });
      const entry = page.conversations.find((c) => c.conversation.id === conversation.id);
      if (!entry) break;
      seen.push(...seqsOf(entry.messages));
      version = Math.max(...entry.messages.map((m) => m.version));
      if (!entry.hasMore) break;
    }
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);

    await owner.ok('conversation:remove-member', { conversationId: conversation.id, userId: member.userId });
    const removed = await member.ok('sync:changes', { since: [{ conversationId: conversation.id, version }] });
    expect(removed.removedConversationIds).toEqual([conversation.id]);
  });
});

describe('authorization', () => {
  let insider: Device;
  let other: Device;
  let outsider: Device;
  let conversationId: string;
  let messageId: string;
  beforeAll(async () => {
    insider = await device(nodeA, uniqueUser('insider'));
    other = await device(nodeA, uniqueUser('other'));
    outsider = await device(nodeB, uniqueUser('outsider'));
    conversationId = (await insider.ok('conversation:create-group', { title: 'private', memberIds: [other.userId] })).conversation.id;
    messageId = (await insider.ok('message:send', { conversationId, clientMsgId: clientMsgId(), body: 'secret' })).message.id;
  });

  it('refuses a non-member every socket operation on the conversation with not_found, like a missing one', async () => {
    const attempts: Array<[ClientEventName, object]> = [
      ['conversation:get', { conversationId }],
      ['conversation:rename', { conversationId, title: 'x' }],
      ['conversation:add-members', { conversationId, userIds: [outsider.userId] }],
      ['conversation:remove-member', { conversationId, userId: insider.userId }],
      ['conversation:leave', { conversationId }],
      ['message:send', { conversationId, clientMsgId: clientMsgId(), body: 'let me in' }],
      ['message:edit', { messageId, body: 'x' }],
      ['message:delete', { messageId, scope: 'everyone' }],
      ['message:delete', { messageId, scope: 'me' }],
      ['message:react', { messageId, emoji: '👀', action: 'add' }],
      ['receipt:mark', { conversationId, read: 1 }],
      ['history:fetch', { conversationId }],
      ['typing:set', { conversationId, typing: true }],
      ['typing:list', { conversationId }],
      ['conversation:mute', { conversationId, muted: true }],
    ];
    for (const [event, payload] of attempts) {
      const ack = await outsider.call(event, payload as never);
      expect(ack, event).toMatchObject({ ok: false, error: { code: 'not_found' } });
    }
    const missing = await outsider.call('conversation:get', { conversationId: '0190a5f5-0000-7000-8000-000000000001' });
    expect(missing).toEqual(await outsider.call('conversation:get', { conversationId }).then((ack) => ({ ...ack })));
    const sync = await outsider.ok('sync:changes', { since: [{ conversationId, version: 0 }] });
    expect(sync.conversations.map((c) => c.conversation.id)).not.toContain(conversationId);
    expect(outsider.of('message:new')).toEqual([]);
    expect(await nodeA.app.db.message.count({ where: { conversationId } })).toBe(2);
  });

  it('refuses a non-member and an unauthenticated caller on REST', async () => {
    const token = signToken({ sub: outsider.userId });
    const routes: Array<[string, string, object?]> = [
      ['GET', `/v1/conversations/${conversationId}`],
      ['GET', `/v1/conversations/${conversationId}/messages`],
      ['POST', `/v1/conversations/${conversationId}/messages`, { clientMsgId: clientMsgId(), body: 'x' }],
      ['POST', `/v1/conversations/${conversationId}/receipts`, { read: 1 }],
      ['PATCH', `/v1/messages/${messageId}`, { body: 'x' }],
      ['DELETE', `/v1/messages/${messageId}`],
      ['PUT', `/v1/messages/${messageId}/reactions/${encodeURIComponent('👀')}`],
      ['GET', `/v1/conversations/${conversationId}/typing`],
      ['PUT', `/v1/conversations/${conversationId}/mute`, { muted: true }],
    ];
    for (const [method, url, payload] of routes) {
      const asOutsider = await nodeB.app.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${token}` }, ...(payload && { payload }) });
      expect([asOutsider.statusCode, asOutsider.json().error?.code], `${method} ${url}`).toEqual([404, 'not_found']);
      const anonymous = await nodeB.app.inject({ method: method as 'GET', url, ...(payload && { payload }) });
      expect([anonymous.statusCode, anonymous.json().error?.code], `${method} ${url}`).toEqual([401, 'token_missing']);
    }
  });

  it("refuses others' notifications and calls with not_found, like missing ones", async () => {
    const notificationId = (
      await eventually(async () => {
        const { notifications } = await other.ok('notification:list', {});
        expect(notifications).toHaveLength(1);
        return notifications[0]!;
      })
    ).id;
    const { call } = await insider.ok('call:invite', { calleeId: other.userId, media: 'audio' });
    const missing = '0190a5f5-0000-7000-8000-000000000002';
    const attempts: Array<[ClientEventName, object, object]> = [
      ['notification:delete', { notificationId }, { notificationId: missing }],
      ['call:get', { callId: call.id }, { callId: missing }],
      ['call:accept', { callId: call.id }, { callId: missing }],
      ['call:reject', { callId: call.id }, { callId: missing }],
      ['call:cancel', { callId: call.id }, { callId: missing }],
      ['call:end', { callId: call.id }, { callId: missing }],
      ['call:signal', { callId: call.id, signal: { type: 'offer', sdp: 'v=0' } }, { callId: missing, signal: { type: 'offer', sdp: 'v=0' } }],
    ];
    for (const [event, theirs, absent] of attempts) {
      const ack = await outsider.call(event, theirs as never);
      expect(ack, event).toMatchObject({ ok: false, error: { code: 'not_found' } });
      expect(ack, event).toEqual(await outsider.call(event, absent as never));
    }
    expect(await outsider.ok('notification:mark-read', { notificationIds: [notificationId] })).toMatchObject({ notificationIds: [] });
    expect((await other.ok('notification:list', { unreadOnly: true })).notifications.map((n) => n.id)).toEqual([notificationId]);
    expect((await insider.ok('call:get', { callId: call.id })).call.state).toBe('ringing');
    await insider.ok('call:cancel', { callId: call.id });
  });

  it('takes the sender from the token, whatever the payload says', async () => {
    const ack = await insider.call('message:send', { conversationId, clientMsgId: clientMsgId(), body: 'x', senderId: outsider.userId } as never);
    expect(ack).toMatchObject({ ok: false, error: { code: 'validation' } });
  });
});

describe('REST', () => {
  it('shares the domain and the real-time events with sockets, and documents itself at /docs', async () => {
    const aliceId = uniqueUser('alice');
    const bob = await device(nodeB, uniqueUser('bob'));
    const auth = { authorization: `Bearer ${signToken({ sub: aliceId, name: 'Alice' })}` };
    const opened = await nodeA.app.inject({ method: 'POST', url: '/v1/conversations/direct', headers: auth, payload: { userId: bob.userId } });
    expect(opened.statusCode).toBe(201);
    const conversationId = opened.json().conversation.id as string;

    const sent = await nodeA.app.inject({ method: 'POST', url: `/v1/conversations/${conversationId}/messages`, headers: auth, payload: { clientMsgId: 'rest-1-abcdef', body: 'over REST' } });
    expect(sent.statusCode).toBe(201);
    const retried = await nodeA.app.inject({ method: 'POST', url: `/v1/conversations/${conversationId}/messages`, headers: auth, payload: { clientMsgId: 'rest-1-abcdef', body: 'over REST' } });
    expect([retried.statusCode, retried.json().duplicate]).toEqual([200, true]);
    await eventually(() => expect(bob.of('message:new').map((m) => m.body)).toEqual(['over REST']));

    const messageId = sent.json().message.id as string;
    const reacted = await nodeA.app.inject({ method: 'PUT', url: `/v1/messages/${messageId}/reactions/${encodeURIComponent('🔥')}`, headers: auth });
    expect(reacted.json().message.reactions).toEqual([{ emoji: '🔥', userId: aliceId }]);
    const history = await nodeA.app.inject({ method: 'GET', url: `/v1/conversations/${conversationId}/messages?limit=10`, headers: auth });
    expect(history.json()).toMatchObject({ ok: true, hasMore: false, messages: [{ id: messageId }] });
    const list = await nodeA.app.inject({ method: 'GET', url: '/v1/conversations', headers: auth });
    expect(list.json().conversations[0]).toMatchObject({ id: conversationId, unreadCount: 0 });

    const bad = await nodeA.app.inject({ method: 'GET', url: `/v1/conversations/${conversationId}/messages?limit=1000`, headers: auth });
    expect([bad.statusCode, bad.json().error.code]).toEqual([400, 'validation']);
    const extra = await nodeA.app.inject({
      method: 'POST',
      url: `/v1/conversations/${conversationId}/messages`,
      headers: auth,
      payload: { clientMsgId: 'rest-2-abcdef', body: 'x', senderId: 'mallory' },
    });
    expect([extra.statusCode, extra.json().error.code]).toEqual([400, 'validation']);

    const docs = await nodeA.app.inject({ url: '/docs/json' });
    const spec = docs.json() as { paths: Record<string, Record<string, { requestBody?: unknown }>> };
    expect(Object.keys(spec.paths)).toEqual(expect.arrayContaining(['/v1/conversations', '/v1/conversations/{conversationId}/messages', '/v1/sync']));
    expect(spec.paths['/v1/conversations/{conversationId}/messages']!['post']!.requestBody).toBeDefined();
    expect((await nodeA.app.inject({ url: '/docs' })).statusCode).toBeLessThan(400);
  });
});

describe('malformed payloads', () => {
  it('get a validation error for every event, and the node keeps serving', async () => {
    const user = await device(nodeA, uniqueUser('fuzz'));
    const samples: unknown[] = [
      null,
      0,
      'x',
      [],
      {},
      { conversationId: 'not-a-uuid' },
      { conversationId: 42, body: {} },
      { since: 'all' },
      { messageId: [], emoji: '' },
      JSON.parse('{"__proto__":{"x":1},"constructor":{"prototype":{}}}'),
      { all: false },
      { notificationIds: [] },
      { limit: 0, unreadOnly: 'yes' },
      { calleeId: 'x', media: 'hologram' },
      { callId: '0190a5f5-0000-7000-8000-000000000003', signal: { type: 'offer' } },
      { callId: '0190a5f5-0000-7000-8000-000000000003', signal: { type: 'ice', candidate: 'x'.repeat(5000) } },
    ];
    let checked = 0;
    for (const event of Object.keys(clientEventSchemas) as ClientEventName[]) {
      for (const payload of samples) {
        if (clientEventSchemas[event].safeParse(payload).success) continue;
        const ack = await user.call(event, payload as never);
        expect(ack, `${event} ${JSON.stringify(payload)}`).toMatchObject({ ok: false, error: { code: 'validation', retryable: false, message: expect.any(String) } });
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(200);
    expect(await user.ok('session:info', {})).toMatchObject({ user: { id: user.userId } });
  });
});

describe('typing', () => {
  it('broadcasts transitions to the other members only, stops on send, on disconnect and by itself', async () => {
    const aliceId = uniqueUser('alice');
    let alice = await device(nodeA, aliceId);
    const bob = await device(nodeB, uniqueUser('bob'));
    const conversationId = (await direct(alice, bob)).id;

    await alice.ok('typing:set', { conversationId, typing: true });
    await alice.ok('typing:set', { conversationId, typing: true }); // a refresh: no second event
    await eventually(() => expect(bob.of('typing:updated')).toEqual([{ conversationId, userId: aliceId, typing: true }]));
    expect((await bob.ok('typing:list', { conversationId })).userIds).toEqual([aliceId]);
    expect((await alice.ok('typing:list', { conversationId })).userIds).toEqual([]);

    await alice.ok('message:send', { conversationId, clientMsgId: clientMsgId(), body: 'done typing' });
    await eventually(async () => expect((await bob.ok('typing:list', { conversationId })).userIds).toEqual([]));

    await alice.ok('typing:set', { conversationId, typing: true });
    alice.close();
    await eventually(() => expect(bob.of('typing:updated').at(-1)).toEqual({ conversationId, userId: aliceId, typing: false }));
    expect(alice.of('typing:updated')).toEqual([]);

    alice = await device(nodeA, aliceId);
    await alice.ok('typing:set', { conversationId, typing: false });
    expect(bob.of('typing:updated').filter((e) => !e.typing)).toHaveLength(1); // stopping when not typing is silent
  });

  it('expires typing state after TYPING_TTL_MS without a refresh', async () => {
    const node = await startNode({ TYPING_TTL_MS: '1000' });
    try {
      const alice = await connectDevice(node.url, uniqueUser('alice'));
      const bob = await connectDevice(node.url, uniqueUser('bob'));
      const conversationId = (await direct(alice, bob)).id;
      await alice.ok('typing:set', { conversationId, typing: true });
      expect((await bob.ok('typing:list', { conversationId })).userIds).toEqual([alice.userId]);
      await eventually(async () => expect((await bob.ok('typing:list', { conversationId })).userIds).toEqual([]), { timeoutMs: 4000 });
      alice.close();
      bob.close();
    } finally {
      await node.close();
    }
  });
});
