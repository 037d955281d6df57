import { randomUUID } from 'node:crypto';
import { limits, SYSTEM_SENDER_ID, type Conversation, type Message, type Presence, type WireError } from '@chat/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '@chat/testkit/eventually';
import { connectError, startNode, type TestNode } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { connectDevice, uniqueUser, type Device } from '@chat/testkit/users';

/**
 * The backend API as a customer's server uses it: two real nodes on this run's PostgreSQL and Redis,
 * real sockets of the users it acts for. Node B enforces the per-user budgets (a tight message
 * budget), to show a backend does not spend them.
 */
const SERVER_KEY = `server-secret-${randomUUID()}`;
const MESSAGE_BUDGET = 3;

let nodeA: TestNode;
let nodeB: TestNode;
const devices: Device[] = [];

beforeAll(async () => {
  const env = { SERVER_API_KEYS: `backend:${SERVER_KEY}` };
  [nodeA, nodeB] = await Promise.all([
    startNode({ ...env, NODE_ID: 'server-api-a' }),
    startNode({ ...env, NODE_ID: 'server-api-b', RATE_LIMITS: 'true', RATE_LIMIT_MESSAGE: `${MESSAGE_BUDGET}/60s` }),
  ]);
});
afterAll(async () => {
  for (const device of devices) device.close();
  await Promise.all([nodeA?.close(), nodeB?.close()]);
});

async function device(node: TestNode, userId: string): Promise<Device> {
  const connected = await connectDevice(node.url, userId);
  devices.push(connected);
  await eventually(async () => expect((await node.app.state.presence.get([userId], { selfView: true }))[0]?.online).toBe(true));
  return connected;
}

type Answer = { ok: boolean; error?: WireError; [field: string]: unknown };

/** A call of the backend API with the server key. */
async function backend(node: TestNode, method: 'POST' | 'DELETE', path: string, body?: object): Promise<{ status: number; body: Answer }> {
  const response = await fetch(`${node.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${SERVER_KEY}`, ...(body && { 'content-type': 'application/json' }) },
    ...(body && { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as Answer };
}

/** A user's own REST call, with their token. */
async function asUser(node: TestNode, userId: string, method: 'GET' | 'POST', path: string, body?: object): Promise<{ status: number; body: Answer }> {
  const response = await fetch(`${node.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${signToken({ sub: userId, name: userId })}`, ...(body && { 'content-type': 'application/json' }) },
    ...(body && { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as Answer };
}

let counter = 0;
const clientMsgId = () => `srv-${Date.now().toString(36)}-${++counter}`;

async function post(node: TestNode, conversationId: string, as: string, body: string, id = clientMsgId()) {
  return backend(node, 'POST', `/v1/server/conversations/${conversationId}/messages`, { as, clientMsgId: id, body });
}

async function createGroup(node: TestNode, ownerId: string, memberIds: string[], title = 'from the backend'): Promise<Conversation> {
  const created = await backend(node, 'POST', '/v1/server/conversations/groups', { ownerId, title, memberIds });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  return created.body['conversation'] as Conversation;
}

const settled = () => Promise.all([nodeA.app.services.notifications.idle(), nodeB.app.services.notifications.idle()]);

describe('backend API', () => {
  it('creates a group for users; posts as a member and as system land between socket sends, in seq order on every device of both nodes, and notify an offline member', async () => {
    const alice = await device(nodeA, uniqueUser('alice'));
    const bobB = await device(nodeB, uniqueUser('bob'));
    const bobA = await device(nodeA, bobB.userId);
    const carolId = uniqueUser('carol');

    const conversation = await createGroup(nodeB, alice.userId, [bobB.userId, carolId]);
    expect(conversation).toMatchObject({ kind: 'group', ownerId: alice.userId, title: 'from the backend', lastSeq: 1 });
    expect(conversation.members.map((m) => m.userId).sort()).toEqual([alice.userId, bobB.userId, carolId].sort());
    for (const member of [alice, bobA, bobB]) await eventually(() => expect(member.of('conversation:updated').map((c) => c.id)).toContain(conversation.id));

    const sent: Message[] = [];
    sent.push((await alice.ok('message:send', { conversationId: conversation.id, clientMsgId: clientMsgId(), body: 'one (socket)' })).message);
    const asBob = await post(nodeA, conversation.id, bobB.userId, 'two (backend as bob)');
    expect(asBob.status).toBe(201);
    sent.push(asBob.body['message'] as Message);
    const asSystem = await post(nodeB, conversation.id, SYSTEM_SENDER_ID, 'three (backend as system)');
    expect(asSystem.status).toBe(201);
    sent.push(asSystem.body['message'] as Message);
    sent.push((await alice.ok('message:send', { conversationId: conversation.id, clientMsgId: clientMsgId(), body: 'four (socket)' })).message);

    // One gap-free sequence, whoever wrote: the seqs a socket send would have got.
    expect(sent.map((m) => m.seq)).toEqual([2, 3, 4, 5]);
    expect(sent.map((m) => m.senderId)).toEqual([alice.userId, bobB.userId, SYSTEM_SENDER_ID, alice.userId]);
    expect(asSystem.body).toMatchObject({ ok: true, duplicate: false, message: { kind: 'text', senderId: SYSTEM_SENDER_ID } });

    const ofConversation = (member: Device) => member.of('message:new').filter((m) => m.conversationId === conversation.id && m.kind !== 'system');
    for (const bob of [bobA, bobB]) await eventually(() => expect(ofConversation(bob)).toEqual(sent));
    // The sender's own socket had its sends in its acks; it gets the backend's.
    await eventually(() => expect(ofConversation(alice)).toEqual([sent[1], sent[2]]));

    const history = await alice.ok('history:fetch', { conversationId: conversation.id });
    expect(history.messages.map((m) => [m.seq, m.senderId])).toEqual([[1, alice.userId], ...sent.map((m) => [m.seq, m.senderId])]);

    // Carol has no device: a notification for each message, the system's with the system as actor.
    await settled();
    const carol = await device(nodeA, carolId);
    const { notifications } = await carol.ok('notification:list', { limit: 10 });
    expect(
      notifications
        .filter((n) => n.kind === 'message')
        .map((n) => [n.messageId, n.actorId])
        .reverse(),
    ).toEqual(sent.map((m) => [m.id, m.senderId]));

    // A reaction to the system's message updates it for the members; the system has no one to notify.
    await bobB.ok('message:react', { messageId: sent[2]!.id, emoji: '👍', action: 'add' });
    await eventually(() => expect(alice.of('message:updated').map((m) => m.reactions)).toEqual([[{ emoji: '👍', userId: bobB.userId }]]));
    await settled();
    expect(await nodeA.app.db.notification.count({ where: { recipientId: SYSTEM_SENDER_ID } })).toBe(0);
  });

  it('answers a retry with the same clientMsgId with the original message (200) and stores nothing new, for a member and for system', async () => {
    const alice = await device(nodeA, uniqueUser('alice'));
    const bob = await device(nodeB, uniqueUser('bob'));
    const conversation = await createGroup(nodeA, alice.userId, [bob.userId]);

    const firsts: Message[] = [];
    for (const as of [bob.userId, SYSTEM_SENDER_ID]) {
      const id = clientMsgId();
      const first = await post(nodeA, conversation.id, as, `first from ${as}`, id);
      expect(first.status).toBe(201);
      // The retry lands on the other node, with another body: the original is the answer.
      const retry = await post(nodeB, conversation.id, as, 'the retry', id);
      expect([retry.status, retry.body]).toEqual([200, { ok: true, duplicate: true, message: first.body['message'] }]);
      firsts.push(first.body['message'] as Message);
    }
    const last = await post(nodeB, conversation.id, SYSTEM_SENDER_ID, 'after the retries');
    await eventually(() =>
      expect(
        alice
          .of('message:new')
          .filter((m) => m.kind !== 'system')
          .map((m) => m.id),
      ).toEqual([...firsts.map((m) => m.id), (last.body['message'] as Message).id]),
    );
    const { conversation: now } = await alice.ok('conversation:get', { conversationId: conversation.id });
    expect(now.lastSeq).toBe(4);
    // The system's clientMsgIds are its own across conversations: reusing one elsewhere is a conflict.
    const other = await createGroup(nodeA, alice.userId, []);
    const reused = await post(nodeA, other.id, SYSTEM_SENDER_ID, 'elsewhere', firsts[1]!.clientMsgId);
    expect([reused.status, reused.body.error?.code]).toEqual([409, 'conflict']);
  });

  it("adds and removes members as the owner: the change reaches the members' devices", async () => {
    const alice = await device(nodeA, uniqueUser('alice'));
    const bob = await device(nodeB, uniqueUser('bob'));
    const dave = await device(nodeB, uniqueUser('dave'));
    const conversation = await createGroup(nodeA, alice.userId, [bob.userId]);
    const path = `/v1/server/conversations/${conversation.id}/members`;

    const added = await backend(nodeA, 'POST', path, { as: alice.userId, userIds: [dave.userId] });
    expect(added.status, JSON.stringify(added.body)).toBe(200);
    expect((added.body['conversation'] as Conversation).members.map((m) => m.userId)).toContain(dave.userId);
    await eventually(() => expect(dave.of('conversation:updated').map((c) => c.id)).toContain(conversation.id));
    await eventually(() => expect(dave.of('message:new')).toMatchObject([{ conversationId: conversation.id, kind: 'system', senderId: alice.userId }]));
    await eventually(() =>
      expect(
        bob
          .of('conversation:updated')
          .at(-1)
          ?.members.map((m) => m.userId),
      ).toContain(dave.userId),
    );

    const removed = await backend(nodeB, 'DELETE', `${path}/${dave.userId}?as=${alice.userId}`);
    expect(removed.status, JSON.stringify(removed.body)).toBe(200);
    await eventually(() => expect(dave.of('conversation:removed')).toEqual([{ conversationId: conversation.id }]));
    await eventually(() =>
      expect(
        bob
          .of('conversation:updated')
          .at(-1)
          ?.members.map((m) => m.userId),
      ).not.toContain(dave.userId),
    );

    // The owner's rules, as for the users themselves.
    const byMember = await backend(nodeA, 'POST', path, { as: bob.userId, userIds: [dave.userId] });
    expect([byMember.status, byMember.body.error?.code]).toEqual([403, 'forbidden']);
    const systemMember = await backend(nodeA, 'POST', path, { as: alice.userId, userIds: [SYSTEM_SENDER_ID] });
    expect([systemMember.status, systemMember.body.error?.code]).toEqual([400, 'validation']);
    const systemActs = await backend(nodeA, 'POST', path, { as: SYSTEM_SENDER_ID, userIds: [dave.userId] });
    expect([systemActs.status, systemActs.body.error?.code]).toEqual([400, 'validation']);
  });

  it('opens a direct conversation once for a pair', async () => {
    const alice = await device(nodeA, uniqueUser('alice'));
    const eve = await device(nodeB, uniqueUser('eve'));
    const first = await backend(nodeA, 'POST', '/v1/server/conversations/direct', { userIds: [alice.userId, eve.userId] });
    const again = await backend(nodeB, 'POST', '/v1/server/conversations/direct', { userIds: [eve.userId, alice.userId] });
    expect([first.status, again.status]).toEqual([201, 200]);
    const { id } = first.body['conversation'] as Conversation;
    expect((again.body['conversation'] as Conversation).id).toBe(id);
    for (const member of [alice, eve]) await eventually(() => expect(member.of('conversation:updated').map((c) => c.id)).toEqual([id]));
    const self = await backend(nodeA, 'POST', '/v1/server/conversations/direct', { userIds: [alice.userId, alice.userId] });
    expect([self.status, self.body.error?.code]).toEqual([400, 'validation']);
  });

  it('acts as a user who is not in the conversation: not_found, as for that user; system into a missing conversation: not_found', async () => {
    const alice = await device(nodeA, uniqueUser('alice'));
    const eve = await device(nodeB, uniqueUser('eve'));
    const conversation = await createGroup(nodeA, alice.userId, []);
    const own = await asUser(nodeA, eve.userId, 'POST', `/v1/conversations/${conversation.id}/messages`, { clientMsgId: clientMsgId(), body: 'hi' });
    expect([own.status, own.body.error?.code]).toEqual([404, 'not_found']);

    const refusals = [
      await post(nodeA, conversation.id, eve.userId, 'hi'),
      await backend(nodeA, 'POST', `/v1/server/conversations/${conversation.id}/members`, { as: eve.userId, userIds: [eve.userId] }),
      await backend(nodeA, 'DELETE', `/v1/server/conversations/${conversation.id}/members/${alice.userId}?as=${eve.userId}`),
      await post(nodeA, randomUUID(), SYSTEM_SENDER_ID, 'into nowhere'),
    ];
    expect(refusals.map((r) => [r.status, r.body.error?.code])).toEqual(Array(4).fill([404, 'not_found']));
    const { conversation: now } = await alice.ok('conversation:get', { conversationId: conversation.id });
    expect(now.lastSeq).toBe(1);
  });

  it('lists presence of any users, each as others see them', async () => {
    const alice = await device(nodeA, uniqueUser('alice'));
    const eve = await device(nodeB, uniqueUser('eve'));
    const frank = await device(nodeA, uniqueUser('frank'));
    await frank.ok('presence:set-status', { status: 'invisible' });
    const gone = await device(nodeB, uniqueUser('gone'));
    gone.close();
    await eventually(async () => expect((await nodeA.app.state.presence.get([gone.userId]))[0]?.online).toBe(false));
    const never = uniqueUser('never');
    await eve.ok('presence:set-status', { status: 'dnd' });

    const userIds = [alice.userId, eve.userId, frank.userId, gone.userId, never];
    const answer = await backend(nodeB, 'POST', '/v1/server/presence', { userIds });
    expect(answer.status).toBe(200);
    const presence = answer.body['presence'] as Presence[];
    expect(presence.map((p) => [p.userId, p.online, p.status])).toEqual([
      [alice.userId, true, 'online'],
      [eve.userId, true, 'dnd'],
      [frank.userId, false, 'offline'],
      [gone.userId, false, 'offline'],
      [never, false, 'offline'],
    ]);
    expect(presence[3]!.lastSeenAt).not.toBeNull();
    expect(presence[4]!.lastSeenAt).toBeNull();
    // A user's own token sees only the users it shares a conversation with.
    expect(await alice.ok('presence:get', { userIds: [eve.userId] })).toEqual({ presence: [] });

    const tooMany = await backend(nodeA, 'POST', '/v1/server/presence', { userIds: Array.from({ length: limits.presenceQuery + 1 }, (_, i) => `u${i}`) });
    expect([tooMany.status, tooMany.body.error?.code]).toEqual([400, 'validation']);
  });

  it("does not spend the acting user's rate-limit budget; the user's own calls still have it", async () => {
    const grace = uniqueUser('grace');
    const conversation = await createGroup(nodeB, grace, []);
    for (let i = 0; i < MESSAGE_BUDGET * 2; i++) expect((await post(nodeB, conversation.id, grace, `backend ${i}`)).status).toBe(201);
    const own = [];
    for (let i = 0; i <= MESSAGE_BUDGET; i++) own.push(await asUser(nodeB, grace, 'POST', `/v1/conversations/${conversation.id}/messages`, { clientMsgId: clientMsgId(), body: `own ${i}` }));
    expect(own.map((r) => r.status)).toEqual([...Array<number>(MESSAGE_BUDGET).fill(201), 429]);
  });

  it('refuses tokens whose subject is the system sender, on sockets and REST', async () => {
    const token = signToken({ sub: SYSTEM_SENDER_ID, name: 'System' });
    expect((await connectError(nodeA.url, token)).code).toBe('token_claims');
    const response = await fetch(`${nodeA.url}/v1/conversations`, { headers: { authorization: `Bearer ${token}` } });
    expect([response.status, ((await response.json()) as Answer).error?.code]).toEqual([401, 'token_claims']);
  });
});
