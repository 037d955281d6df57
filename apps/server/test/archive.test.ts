import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '@chat/testkit/eventually';
import { startNode, type TestNode } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { testDevice, uniqueUser, type Device } from '@chat/testkit/users';

// Two real nodes sharing this run's PostgreSQL and Redis; each user's second device sits on the other node.
let nodeA: TestNode;
let nodeB: TestNode;

beforeAll(async () => {
  [nodeA, nodeB] = await Promise.all([startNode({ NODE_ID: 'archive-a' }), startNode({ NODE_ID: 'archive-b' })]);
});
afterAll(async () => {
  await Promise.all([nodeA?.close(), nodeB?.close()]);
});

let counter = 0;
const send = (from: Device, conversationId: string, body: string) => from.ok('message:send', { conversationId, clientMsgId: `ar-${Date.now().toString(36)}-${++counter}`, body });
const listed = async (device: Device, archived?: boolean) => (await device.ok('conversation:list', archived === undefined ? {} : { archived })).conversations.map((c) => c.id);

function rest(node: TestNode, userId: string, method: 'GET' | 'PUT', url: string, payload?: object) {
  return node.app.inject({ method, url, headers: { authorization: `Bearer ${signToken({ sub: userId, name: userId })}` }, ...(payload && { payload }) });
}

/** Alice and Bob (two devices, one per node) in a direct conversation, and a second one Bob keeps. */
async function setUp() {
  const alice = await testDevice(nodeA.url, uniqueUser('alice'));
  const bobA = await testDevice(nodeA.url, uniqueUser('bob'));
  const bobB = await testDevice(nodeB.url, bobA.userId);
  const { conversation } = await alice.ok('conversation:open-direct', { userId: bobA.userId });
  const { conversation: other } = await alice.ok('conversation:create-group', { title: 'kept', memberIds: [bobA.userId] });
  return { alice, bobA, bobB, conversationId: conversation.id, otherId: other.id };
}

describe('archive', () => {
  it('moves the conversation to my archived list only, and tells my other device on another node', async () => {
    const { alice, bobA, bobB, conversationId, otherId } = await setUp();
    expect(await bobA.ok('conversation:archive', { conversationId, archived: true })).toEqual({ conversationId, archived: true });
    await eventually(() => expect(bobB.of('conversation:archived')).toEqual([{ conversationId, archived: true }]));
    expect(bobA.of('conversation:archived')).toEqual([]);

    expect(await listed(bobB)).toEqual([otherId]);
    const archived = await bobB.ok('conversation:list', { archived: true });
    expect(archived.conversations.map((c) => [c.id, c.archived])).toEqual([[conversationId, true]]);
    expect((await bobB.ok('conversation:list', { archived: false })).conversations.every((c) => !c.archived)).toBe(true);
    // Other members are unaffected.
    expect((await listed(alice)).sort()).toEqual([conversationId, otherId].sort());
    expect(await listed(alice, true)).toEqual([]);
    expect(alice.of('conversation:archived')).toEqual([]);

    // Idempotent, and unarchiving brings it back.
    await bobB.ok('conversation:archive', { conversationId, archived: true });
    await bobB.ok('conversation:archive', { conversationId, archived: false });
    await eventually(() =>
      expect(bobA.of('conversation:archived')).toEqual([
        { conversationId, archived: true },
        { conversationId, archived: false },
      ]),
    );
    expect((await listed(bobA)).sort()).toEqual([conversationId, otherId].sort());
  });

  it('a new message from another member unarchives it on all my devices; my own does not', async () => {
    const { alice, bobA, bobB, conversationId } = await setUp();
    await bobA.ok('conversation:archive', { conversationId, archived: true });
    await send(bobA, conversationId, 'my own message keeps it archived');
    expect(await listed(bobA, true)).toEqual([conversationId]);

    const { message } = await send(alice, conversationId, 'wake up');
    for (const device of [bobA, bobB]) {
      await eventually(() => expect(device.received.filter((r) => r.event === 'message:new' && (r.payload as { id: string }).id === message.id)).toHaveLength(1));
      const events = device.received.filter((r) => r.event === 'conversation:archived' || (r.event === 'message:new' && (r.payload as { id: string }).id === message.id)).map((r) => r.event);
      // The unarchive comes before the message that caused it.
      expect(events.slice(-2)).toEqual(['conversation:archived', 'message:new']);
      expect(device.of('conversation:archived').at(-1)).toEqual({ conversationId, archived: false });
    }
    expect(await listed(bobB, true)).toEqual([]);
    expect(await listed(bobB)).toContain(conversationId);
    expect(alice.of('conversation:archived')).toEqual([]);
  });

  it('stays archived on new messages while I muted it', async () => {
    const { alice, bobA, bobB, conversationId } = await setUp();
    await bobA.ok('conversation:mute', { conversationId, muted: true });
    await bobA.ok('conversation:archive', { conversationId, archived: true });
    await eventually(() => expect(bobB.of('conversation:archived')).toHaveLength(1));
    const { message } = await send(alice, conversationId, 'muted, so no unarchive');
    await eventually(() => expect(bobB.of('message:new').map((m) => m.id)).toContain(message.id));
    expect(await listed(bobB, true)).toEqual([conversationId]);
    expect(bobB.of('conversation:archived')).toEqual([{ conversationId, archived: true }]);

    // Unmuted again: the next message unarchives.
    await bobA.ok('conversation:mute', { conversationId, muted: false });
    await send(alice, conversationId, 'now it does');
    await eventually(() => expect(bobB.of('conversation:archived').at(-1)).toEqual({ conversationId, archived: false }));
    expect(await listed(bobB, true)).toEqual([]);
  });

  it('unarchives every archiver once when several messages land in one statement', async () => {
    const { alice, bobA, bobB, conversationId } = await setUp();
    await bobA.ok('conversation:archive', { conversationId, archived: true });
    await Promise.all(Array.from({ length: 8 }, (_, i) => send(alice, conversationId, `burst ${i}`)));
    await eventually(() => expect(bobB.of('message:new').filter((m) => m.conversationId === conversationId)).toHaveLength(8));
    await eventually(() =>
      expect(bobB.of('conversation:archived')).toEqual([
        { conversationId, archived: true },
        { conversationId, archived: false },
      ]),
    );
    expect(bobA.of('conversation:archived')).toEqual([{ conversationId, archived: false }]);
    expect(await listed(bobA, true)).toEqual([]);
  });

  it('an archiver sending beside another member: their own watermark moves and the other message unarchives', async () => {
    const { alice, bobA, bobB, conversationId, otherId } = await setUp();
    await bobA.ok('conversation:archive', { conversationId, archived: true });
    // The filler holds the node's one statement in flight, so the next two usually share one.
    const [, fromAlice, fromBob] = await Promise.all([send(alice, otherId, 'filler'), send(alice, conversationId, 'from alice'), send(bobA, conversationId, 'from bob')]);
    const member = await nodeA.app.db.conversationMember.findUniqueOrThrow({ where: { conversationId_userId: { conversationId, userId: bobA.userId } } });
    expect(member.archivedAt).toBeNull();
    expect(member.lastReadSeq).toBeGreaterThanOrEqual(fromBob.message.seq);
    expect(member.lastDeliveredSeq).toBeGreaterThanOrEqual(fromBob.message.seq);
    expect(fromAlice.message.seq).not.toBe(fromBob.message.seq);
    await eventually(() =>
      expect(bobB.of('conversation:archived')).toEqual([
        { conversationId, archived: true },
        { conversationId, archived: false },
      ]),
    );
  });

  it('a stranger and a missing id get the same not_found, over the socket and REST alike', async () => {
    const { bobA, conversationId } = await setUp();
    const stranger = await testDevice(nodeB.url, uniqueUser('stranger'));
    const asStranger = await stranger.call('conversation:archive', { conversationId, archived: true });
    const missing = await stranger.call('conversation:archive', { conversationId: randomUUID(), archived: true });
    expect(asStranger).toEqual(missing);
    expect(asStranger).toMatchObject({ ok: false, error: { code: 'not_found' } });
    const restStranger = await rest(nodeB, stranger.userId, 'PUT', `/v1/conversations/${conversationId}/archive`, { archived: true });
    const restMissing = await rest(nodeB, stranger.userId, 'PUT', `/v1/conversations/${randomUUID()}/archive`, { archived: true });
    expect(restStranger.statusCode).toBe(restMissing.statusCode);
    expect(restStranger.json()).toEqual(restMissing.json());
    expect(restStranger.json()).toMatchObject({ ok: false, error: { code: 'not_found' } });
    expect(await listed(bobA, true)).toEqual([]);

    expect(await stranger.call('conversation:archive', { conversationId, archived: 'yes' } as never)).toMatchObject({ ok: false, error: { code: 'validation' } });
  });

  it('REST and the socket agree, and resync reports the archived state', async () => {
    const { alice, bobA, bobB, conversationId, otherId } = await setUp();
    const put = await rest(nodeB, bobA.userId, 'PUT', `/v1/conversations/${conversationId}/archive`, { archived: true });
    expect(put.statusCode).toBe(200);
    expect(put.json()).toEqual({ ok: true, conversationId, archived: true });
    // A REST call has no origin device: every socket of mine hears it.
    await eventually(() => expect([bobA, bobB].map((d) => d.of('conversation:archived'))).toEqual([[{ conversationId, archived: true }], [{ conversationId, archived: true }]]));

    const viaRest = (await rest(nodeA, bobA.userId, 'GET', '/v1/conversations?archived=true')).json() as { conversations: Array<{ id: string; archived: boolean }> };
    expect(viaRest.conversations.map((c) => [c.id, c.archived])).toEqual([[conversationId, true]]);
    const defaultRest = (await rest(nodeA, bobA.userId, 'GET', '/v1/conversations')).json() as { conversations: Array<{ id: string }> };
    expect(defaultRest.conversations.map((c) => c.id)).toEqual(await listed(bobA));
    expect(defaultRest.conversations.map((c) => c.id)).toEqual([otherId]);

    const sync = await bobB.ok('sync:changes', { since: [] });
    expect(sync.archivedConversationIds).toEqual([conversationId]);
    expect((await alice.ok('sync:changes', { since: [] })).archivedConversationIds).toEqual([]);
    const restSync = (await rest(nodeA, bobA.userId, 'PUT', '/v1/conversations/x/archive', { archived: true })).json();
    expect(restSync).toMatchObject({ ok: false, error: { code: 'validation' } });

    await send(alice, conversationId, 'back');
    expect((await bobB.ok('sync:changes', { since: [] })).archivedConversationIds).toEqual([]);
  });
});
