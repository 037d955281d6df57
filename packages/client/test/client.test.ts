import { SYSTEM_SENDER_ID, type Conversation, type Message, type Receipt, type SessionEnding } from '@chat/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '@chat/testkit/eventually';
import { startNode, type TestNode } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { uniqueUser } from '@chat/testkit/users';
import { silentFanout } from '@chat/server/domain/fanout';
import { MessageService } from '@chat/server/domain/messages';
import { ChatClient, type ChatClientEvents, type ChatClientOptions, type StatusEvent, type TypingEvent } from '../src/index.ts';
import { validateSend } from '../src/validate.ts';

// Two real nodes on different ports sharing this run's PostgreSQL and Redis: a client on node A and
// one on node B only meet through the Redis adapter.
let nodeA: TestNode;
let nodeB: TestNode;
const clients: ChatClient[] = [];

beforeAll(async () => {
  [nodeA, nodeB] = await Promise.all([startNode({ NODE_ID: 'client-a' }), startNode({ NODE_ID: 'client-b' })]);
});
afterAll(async () => {
  for (const client of clients) client.close();
  await Promise.all([nodeA?.close(), nodeB?.close()]);
});

/** Everything a client reported, in order. */
interface Recording {
  messages: Message[];
  updated: Message[];
  hidden: Array<{ conversationId: string; messageId: string }>;
  statuses: StatusEvent[];
  receipts: Receipt[];
  typing: TypingEvent[];
  connected: Array<{ reconnect: boolean }>;
  disconnected: Array<{ reason: string; willReconnect: boolean; ending: SessionEnding | null }>;
  synced: Array<{ initial: boolean }>;
  errors: Error[];
}

function chatClient(node: TestNode, userId: string, options: Partial<ChatClientOptions> = {}): { client: ChatClient; seen: Recording } {
  const client = new ChatClient({ url: node.url, token: () => signToken({ sub: userId, name: userId }), ...options });
  clients.push(client);
  const seen: Recording = { messages: [], updated: [], hidden: [], statuses: [], receipts: [], typing: [], connected: [], disconnected: [], synced: [], errors: [] };
  client.on('message', (message) => seen.messages.push(message));
  client.on('messageUpdated', (message) => seen.updated.push(message));
  client.on('messageHidden', (event) => seen.hidden.push(event));
  client.on('status', (event) => seen.statuses.push(event));
  client.on('receipt', (receipt) => seen.receipts.push(receipt));
  client.on('typing', (event) => seen.typing.push(event));
  client.on('connected', (event) => seen.connected.push(event));
  client.on('disconnected', (event) => seen.disconnected.push(event));
  client.on('synced', (event) => seen.synced.push(event));
  client.on('error', (error) => seen.errors.push(error));
  return { client, seen };
}

function next<E extends keyof ChatClientEvents>(client: ChatClient, event: E): Promise<ChatClientEvents[E]> {
  return new Promise((resolve) => client.once(event, (...args) => resolve(args)));
}

async function direct(client: ChatClient, otherId: string): Promise<Conversation> {
  return (await client.request('conversation:open-direct', { userId: otherId })).conversation;
}

const ids = (messages: Message[]) => messages.map((message) => message.id);
const statesOf = (seen: Recording, clientMsgId: string) => seen.statuses.filter((event) => event.clientMsgId === clientMsgId).map((event) => event.state);

describe('ChatClient', () => {
  it('delivers a message exactly once to every device and follows it to read', async () => {
    const aliceId = uniqueUser('alice');
    const bobId = uniqueUser('bob');
    const alice = chatClient(nodeA, aliceId);
    const alicePhone = chatClient(nodeB, aliceId);
    const bob = chatClient(nodeB, bobId);
    await Promise.all([alice.client.connect(), alicePhone.client.connect(), bob.client.connect()]);
    expect(alice.client.userId).toBe(aliceId);
    expect(alice.seen.synced).toEqual([{ initial: true }]);

    const conversation = await direct(alice.client, bobId);
    const outgoing = alice.client.send({ conversationId: conversation.id, body: 'hello bob' });
    expect(outgoing.state).toBe('sending');
    expect(outgoing.clientMsgId).toMatch(/^[A-Za-z0-9_-]{8,64}$/);
    const message = await outgoing.acked;
    expect(outgoing).toMatchObject({ state: 'sent', attempts: 1, message: { seq: 1, body: 'hello bob', senderId: aliceId } });

    // Bob's client reports delivered by itself; read is his decision.
    await eventually(() => expect(alice.client.statusOf(outgoing).state).toBe('delivered'));
    await bob.client.markRead(conversation.id, message.seq);
    await eventually(() => expect(alice.client.statusOf(outgoing)).toEqual({ state: 'read', deliveredCount: 1, readCount: 1, of: 1 }));
    expect(statesOf(alice.seen, outgoing.clientMsgId)).toEqual(['sending', 'sent', 'delivered', 'read']);
    // Alice's other device derives the same from the same watermarks.
    await eventually(() => expect(alicePhone.client.statusOf(message).state).toBe('read'));
    expect(statesOf(alicePhone.seen, outgoing.clientMsgId)).toEqual(['delivered', 'read']);

    for (const { seen } of [alice, alicePhone, bob]) {
      expect(ids(seen.messages)).toEqual([message.id]);
      expect(seen.updated).toEqual([]);
    }
    // One coalesced delivered mark from bob's client, then his read.
    expect(bob.seen.receipts.filter((r) => r.userId === bobId).map((r) => [r.lastDeliveredSeq, r.lastReadSeq])).toEqual([
      [0, 0],
      [1, 0],
      [1, 1],
    ]);
    // Sending moved alice's own watermarks; bob's client knows it from the message alone.
    expect(bob.client.receipts(conversation.id).find((r) => r.userId === aliceId)).toMatchObject({ lastDeliveredSeq: 1, lastReadSeq: 1 });
    for (const { seen } of [alice, alicePhone, bob]) expect(seen.errors).toEqual([]);
  });

  it('reports a message of the system sender without counting the system among the readers', async () => {
    const aliceId = uniqueUser('alice');
    const alice = chatClient(nodeA, aliceId);
    const bob = chatClient(nodeB, uniqueUser('bob'));
    await Promise.all([alice.client.connect(), bob.client.connect()]);
    const conversation = await direct(alice.client, bob.client.userId!);
    const outgoing = alice.client.send({ conversationId: conversation.id, body: 'hello bob' });
    await outgoing.acked;
    await eventually(() => expect(alice.client.statusOf(outgoing).state).toBe('delivered'));

    const { message } = await nodeB.app.services.messages.send(SYSTEM_SENDER_ID, { conversationId: conversation.id, clientMsgId: uniqueUser('system-msg'), body: 'maintenance tonight' });
    for (const { seen } of [alice, bob]) await eventually(() => expect(ids(seen.messages).at(-1)).toBe(message.id));
    expect(alice.client.statusOf(outgoing)).toEqual({ state: 'delivered', deliveredCount: 1, readCount: 0, of: 1 });
    for (const { client } of [alice, bob]) expect(client.receipts(conversation.id).map((r) => r.userId)).not.toContain(SYSTEM_SENDER_ID);
  });

  it('retries a send with the same clientMsgId: one row, one seq, the original message', async () => {
    const aliceId = uniqueUser('alice');
    const alice = chatClient(nodeA, aliceId);
    await alice.client.connect();
    const conversation = await direct(alice.client, uniqueUser('bob'));

    // Acks cannot come back within 1 ms: every attempt times out after the server has committed.
    alice.client.ackTimeoutMs = 1;
    const outgoing = alice.client.send({ conversationId: conversation.id, body: 'only once' });
    await eventually(async () => {
      expect(await nodeA.app.db.message.count({ where: { conversationId: conversation.id } })).toBe(1);
      expect(outgoing.attempts).toBeGreaterThanOrEqual(2);
    });
    expect(outgoing.state).toBe('sending');
    alice.client.ackTimeoutMs = 10_000;
    const message = await outgoing.acked;

    const rows = await nodeA.app.db.message.findMany({ where: { conversationId: conversation.id } });
    expect(rows).toHaveLength(1);
    expect(message).toMatchObject({ id: rows[0]!.id, seq: 1, clientMsgId: outgoing.clientMsgId });
    expect(ids(alice.seen.messages)).toEqual([message.id]);
    expect(statesOf(alice.seen, outgoing.clientMsgId)).toEqual(['sending', 'sent']);

    // Sent while offline: it waits for the connection instead of burning attempts.
    alice.client.disconnect();
    const offline = alice.client.send({ conversationId: conversation.id, body: 'from the tunnel' });
    expect(offline.state).toBe('sending');
    await alice.client.connect();
    await expect(offline.acked).resolves.toMatchObject({ seq: 2 });
    expect(offline.attempts).toBe(1);
    expect(await nodeA.app.db.message.count({ where: { conversationId: conversation.id } })).toBe(2);
  });

  it('resyncs after a disconnect: each missed change once, new messages in seq order', async () => {
    const aliceId = uniqueUser('alice');
    const bobId = uniqueUser('bob');
    const alice = chatClient(nodeA, aliceId);
    const bob = chatClient(nodeB, bobId);
    await Promise.all([alice.client.connect(), bob.client.connect()]);
    const conversation = await direct(alice.client, bobId);
    const seenBefore = [await alice.client.send({ conversationId: conversation.id, body: 'before 1' }).acked, await alice.client.send({ conversationId: conversation.id, body: 'before 2' }).acked];
    await eventually(() => expect(ids(bob.seen.messages)).toEqual(ids(seenBefore)));

    bob.client.disconnect();
    expect(bob.client.connected).toBe(false);
    const missed: Message[] = [];
    for (let i = 1; i <= 5; i++) missed.push(await alice.client.send({ conversationId: conversation.id, body: `missed ${i}` }).acked);
    await alice.client.request('message:edit', { messageId: seenBefore[0]!.id, body: 'before 1, edited' });
    await alice.client.request('message:react', { messageId: seenBefore[1]!.id, emoji: '👍', action: 'add' });
    await alice.client.request('message:react', { messageId: missed[1]!.id, emoji: '🎉', action: 'add' });
    await alice.client.request('message:edit', { messageId: missed[2]!.id, body: 'missed 3, edited' });
    await alice.client.request('message:delete', { messageId: missed[3]!.id, scope: 'everyone' });
    bob.seen.messages.length = 0;

    const synced = next(bob.client, 'synced');
    const reconnecting = bob.client.connect();
    // Sent while bob's client is resyncing: it must show up once, after the ones it missed.
    const racing = alice.client.send({ conversationId: conversation.id, body: 'during the resync' });
    await reconnecting;
    expect(await synced).toEqual([{ initial: false }]);
    const racer = await racing.acked;
    await eventually(() => expect(ids(bob.seen.messages)).toContain(racer.id));

    expect(bob.seen.messages.map((m) => m.seq)).toEqual([3, 4, 5, 6, 7, 8]);
    expect(ids(bob.seen.messages)).toEqual([...ids(missed), racer.id]);
    // Missed messages arrive in their latest state and are not reported again as updates.
    expect(bob.seen.messages[1]!.reactions).toEqual([{ emoji: '🎉', userId: aliceId }]);
    expect(bob.seen.messages[2]!).toMatchObject({ body: 'missed 3, edited', editedAt: expect.any(String) });
    expect(bob.seen.messages[3]!).toMatchObject({ body: '', deletedAt: expect.any(String) });
    expect(bob.seen.updated.map((m) => [m.id, m.body, m.reactions.length])).toEqual([
      [seenBefore[0]!.id, 'before 1, edited', 0],
      [seenBefore[1]!.id, 'before 2', 1],
    ]);
    // Bob's client reported the missed messages delivered, in one mark.
    await eventually(() => expect(alice.client.statusOf(racer).state).toBe('delivered'));
    expect(bob.seen.errors).toEqual([]);
  });

  it('reports new messages in seq order: one whose push was lost is fetched, and what overtook it waits', async () => {
    const aliceId = uniqueUser('alice');
    const bobId = uniqueUser('bob');
    const { client: alice } = chatClient(nodeA, aliceId);
    const { client: bob, seen } = chatClient(nodeB, bobId);
    await Promise.all([alice.connect(), bob.connect()]);
    const conversation = await direct(alice, bobId);
    await alice.send({ conversationId: conversation.id, body: 'one' }).acked;
    await eventually(() => expect(seen.messages.map((m) => m.body)).toEqual(['one']));

    // Committed, but its fan-out never happens: what a publish lost during a Redis outage looks like.
    const silent = new MessageService(nodeA.app.db, nodeA.app.sql, silentFanout, { maxBodyLength: 4000 });
    await silent.send(aliceId, { conversationId: conversation.id, clientMsgId: `lost-${Date.now().toString(36)}`, body: 'lost on the way' });
    await alice.send({ conversationId: conversation.id, body: 'three' }).acked;
    await alice.send({ conversationId: conversation.id, body: 'four' }).acked;

    await eventually(() => expect(seen.messages.map((m) => m.body)).toEqual(['one', 'lost on the way', 'three', 'four']));
    expect(seen.messages.map((m) => m.seq)).toEqual([1, 2, 3, 4]);
    expect(seen.errors).toEqual([]);
  });

  it('retries a resync that failed, while the connection lasts, instead of staying behind', async () => {
    const aliceId = uniqueUser('alice');
    const bobId = uniqueUser('bob');
    const alice = chatClient(nodeA, aliceId);
    const bob = chatClient(nodeB, bobId);
    await Promise.all([alice.client.connect(), bob.client.connect()]);
    const conversation = await direct(alice.client, bobId);
    bob.client.disconnect();
    const missed = await alice.client.send({ conversationId: conversation.id, body: 'missed while away' }).acked;

    // Every request of the reconnect's set-up times out at first (an overloaded server, as far as the
    // client can tell); once the first timeout is seen, requests get their normal time again.
    bob.client.ackTimeoutMs = 1;
    bob.client.once('error', () => {
      bob.client.ackTimeoutMs = 10_000;
    });
    const synced = next(bob.client, 'synced');
    await bob.client.connect();
    expect(await synced).toEqual([{ initial: false }]);
    expect(bob.seen.errors.map((error) => (error as { code?: string }).code)).toContain('timeout');
    await eventually(() => expect(ids(bob.seen.messages)).toEqual([missed.id]));
  });

  it('asks the token callback again on every reconnect, also after the token expired', async () => {
    const userId = uniqueUser('refresh');
    let calls = 0;
    const { client, seen } = chatClient(nodeA, userId, {
      token: () => {
        calls += 1;
        return signToken({ sub: userId, name: userId });
      },
    });
    await client.connect();
    expect(calls).toBe(1);
    // A network drop: socket.io-client reconnects by itself, through the auth callback.
    const resynced = next(client, 'synced');
    client.socket.io.engine.close();
    await resynced;
    expect(calls).toBe(2);
    expect(seen.connected).toEqual([{ reconnect: false }, { reconnect: true }]);

    // The server ends a session whose token expired; only a fresh token brings the client back.
    let expiring = 0;
    const short = chatClient(nodeB, userId, {
      token: () => {
        expiring += 1;
        return signToken({ sub: userId, name: userId }, { expiresInSeconds: expiring === 1 ? 1 : 3600 });
      },
    });
    await short.client.connect();
    await eventually(() => expect(short.seen.connected).toEqual([{ reconnect: false }, { reconnect: true }]), { timeoutMs: 8000 });
    // The SDK reports what the server said before it closed.
    expect(short.seen.disconnected[0]).toEqual({ reason: 'io server disconnect', willReconnect: true, ending: { reason: 'token_expired', message: expect.any(String) } });
    expect(expiring).toBe(2);
    const info = await short.client.request('session:info', {});
    expect(Date.parse(info.expiresAt!)).toBeGreaterThan(Date.now() + 3000_000);
  });

  it('rejects connect() with the catalogued refusal and sends its sticky id on every connection', async () => {
    const refused = new ChatClient({ url: nodeA.url, token: 'not-a-token' });
    clients.push(refused);
    await expect(refused.connect()).rejects.toMatchObject({ name: 'ChatError', code: 'token_malformed', retryable: false });
    expect(refused.connected).toBe(false);

    const unreachable = new ChatClient({ url: 'http://127.0.0.1:9', token: 'unused' });
    clients.push(unreachable);
    await expect(unreachable.connect()).rejects.toMatchObject({ code: 'unavailable', retryable: true });

    const polling = chatClient(nodeB, uniqueUser('polling'), { transports: ['polling'] });
    await polling.client.connect();
    const [socket] = await nodeB.app.io.in(`user:${polling.client.userId}`).fetchSockets();
    expect(socket?.handshake.query['sticky']).toBe(polling.client.sticky);
    expect(polling.client.sticky).not.toBe(refused.sticky);
  });

  it('fails a send to a conversation the user is not in, without retrying', async () => {
    const alice = chatClient(nodeA, uniqueUser('alice'));
    const bob = chatClient(nodeB, uniqueUser('bob'));
    await Promise.all([alice.client.connect(), bob.client.connect()]);
    const theirs = await direct(bob.client, uniqueUser('carol'));

    const outgoing = alice.client.send({ conversationId: theirs.id, body: 'let me in' });
    await expect(outgoing.acked).rejects.toMatchObject({ name: 'ChatError', code: 'not_found', retryable: false });
    expect(outgoing).toMatchObject({ state: 'failed', attempts: 1, error: { code: 'not_found' } });
    expect(alice.client.statusOf(outgoing).state).toBe('failed');
    expect(statesOf(alice.seen, outgoing.clientMsgId)).toEqual(['sending', 'failed']);

    // An explicit retry tries once more, same id, and fails the same way.
    expect(alice.client.retry(outgoing.clientMsgId)).toBe(outgoing);
    await expect(outgoing.acked).rejects.toMatchObject({ code: 'not_found' });
    expect(outgoing.attempts).toBe(2);
    // Without a validator the server's schema is the check: an invalid message fails after one attempt.
    const empty = alice.client.send({ conversationId: theirs.id, body: ' \u0007 ' });
    await expect(empty.acked).rejects.toMatchObject({ code: 'validation', retryable: false });
    expect(empty).toMatchObject({ state: 'failed', attempts: 1, error: { code: 'validation' } });
    // With the opt-in zod validator it fails locally, before any attempt.
    const checked = chatClient(nodeA, alice.client.userId ?? '', { validate: validateSend });
    await checked.client.connect();
    const local = checked.client.send({ conversationId: theirs.id, body: ' \u0007 ' });
    expect(local).toMatchObject({ state: 'failed', attempts: 0, error: { code: 'validation' } });
    expect(local.error?.message).toMatch(/^body: /);
  });

  it('debounces typing and clears indicators on idle and on send', async () => {
    const aliceId = uniqueUser('alice');
    const alice = chatClient(nodeA, aliceId, { typingIdleMs: 300 });
    const bob = chatClient(nodeB, uniqueUser('bob'));
    await Promise.all([alice.client.connect(), bob.client.connect()]);
    const conversation = await direct(alice.client, bob.client.userId!);
    const typing = (value: boolean) => ({ conversationId: conversation.id, userId: aliceId, typing: value });

    for (let i = 0; i < 5; i++) alice.client.typing(conversation.id);
    await eventually(() => expect(bob.seen.typing).toEqual([typing(true), typing(false)]));

    alice.client.typing(conversation.id);
    await eventually(() => expect(bob.client.typingIn(conversation.id)).toEqual([aliceId]));
    await alice.client.send({ conversationId: conversation.id, body: 'done typing' }).acked;
    await eventually(() => expect(bob.seen.typing).toEqual([typing(true), typing(false), typing(true), typing(false)]));
    expect(bob.client.typingIn(conversation.id)).toEqual([]);
    expect(alice.seen.errors).toEqual([]);
  });
});

describe('ChatClient: notifications, presence and calls', () => {
  it('forwards presence, notification pushes and the unread count, with typed helpers', async () => {
    const aliceId = uniqueUser('alice');
    const bobId = uniqueUser('bob');
    const alice = chatClient(nodeA, aliceId);
    const bobPhone = chatClient(nodeB, bobId);
    const bobLaptop = chatClient(nodeA, bobId);
    await Promise.all([alice.client.connect(), bobPhone.client.connect()]);
    const presence: unknown[] = [];
    alice.client.on('presence', (p) => presence.push(p));
    const added = next(bobPhone.client, 'notification');
    const { conversation } = await alice.client.request('conversation:create-group', { title: 'sdk', memberIds: [bobId] });
    await bobLaptop.client.connect();
    await bobLaptop.client.request('presence:set-status', { status: 'away' });
    await eventually(() => expect(presence).toContainEqual(expect.objectContaining({ userId: bobId, status: 'away' })));

    const [{ notification, unreadCount }] = await added;
    expect([notification.kind, notification.conversationId, unreadCount]).toEqual(['group_added', conversation.id, 1]);
    expect(bobPhone.client.unreadNotifications).toBe(1);
    expect((await bobLaptop.client.listNotifications()).notifications.map((n) => n.id)).toEqual([notification.id]);
    expect(bobLaptop.client.unreadNotifications).toBe(1);

    const read = next(bobPhone.client, 'notificationsRead');
    await bobLaptop.client.markNotificationsRead('all');
    expect((await read)[0]).toMatchObject({ all: true, unreadCount: 0 });
    expect(bobPhone.client.unreadNotifications).toBe(0);
    const deleted = next(bobPhone.client, 'notificationDeleted');
    await bobLaptop.client.deleteNotification(notification.id);
    expect((await deleted)[0]).toEqual({ notificationId: notification.id, unreadCount: 0 });

    const muted = next(bobPhone.client, 'conversationMuted');
    await bobLaptop.client.muteConversation(conversation.id);
    expect((await muted)[0]).toEqual({ conversationId: conversation.id, muted: true });
  });

  it('archives on one device, the other follows; a message from the other member unarchives; a fresh client knows it from its baseline', async () => {
    const aliceId = uniqueUser('alice');
    const bobId = uniqueUser('bob');
    const alice = chatClient(nodeA, aliceId);
    const bobPhone = chatClient(nodeB, bobId);
    const bobLaptop = chatClient(nodeA, bobId);
    await Promise.all([alice.client.connect(), bobPhone.client.connect(), bobLaptop.client.connect()]);
    const conversation = await direct(alice.client, bobId);

    const phoneHears = next(bobPhone.client, 'conversationArchived');
    expect(await bobLaptop.client.archive(conversation.id)).toEqual({ conversationId: conversation.id, archived: true });
    expect((await phoneHears)[0]).toEqual({ conversationId: conversation.id, archived: true });
    expect([bobLaptop.client.isArchived(conversation.id), bobPhone.client.isArchived(conversation.id), alice.client.isArchived(conversation.id)]).toEqual([true, true, false]);
    expect((await bobPhone.client.listConversations()).conversations.map((c) => c.id)).not.toContain(conversation.id);
    expect((await bobPhone.client.listConversations({ archived: true })).conversations.map((c) => c.id)).toEqual([conversation.id]);

    // A client that connects now learns the archived conversation from its baseline.
    const bobTablet = chatClient(nodeB, bobId);
    await bobTablet.client.connect();
    expect(bobTablet.client.archivedConversationIds()).toEqual([conversation.id]);
    expect(bobTablet.client.cursors().map((c) => c.conversationId)).toContain(conversation.id);

    const unarchived = Promise.all([bobPhone, bobLaptop, bobTablet].map(({ client }) => next(client, 'conversationArchived')));
    alice.client.send({ conversationId: conversation.id, body: 'come back' });
    for (const [event] of await unarchived) expect(event).toEqual({ conversationId: conversation.id, archived: false });
    expect(bobPhone.client.isArchived(conversation.id)).toBe(false);

    // Resync carries the state: archived while the tablet was away.
    bobTablet.client.disconnect();
    await bobLaptop.client.archive(conversation.id);
    const resynced = next(bobTablet.client, 'synced');
    await bobTablet.client.connect();
    await resynced;
    expect(bobTablet.client.isArchived(conversation.id)).toBe(true);
  });

  it('searches my conversations with highlight ranges, paging with the cursor', async () => {
    const aliceId = uniqueUser('alice');
    const bobId = uniqueUser('bob');
    const alice = chatClient(nodeA, aliceId);
    const bob = chatClient(nodeB, bobId);
    await Promise.all([alice.client.connect(), bob.client.connect()]);
    const conversation = await direct(alice.client, bobId);
    for (const body of ['sdk search <b>marmalade</b>', 'more marmalade', 'no match here']) {
      await alice.client.request('message:send', { conversationId: conversation.id, clientMsgId: `sdk-search-${crypto.randomUUID()}`, body });
    }
    const first = await bob.client.search('marmalade', { limit: 1 });
    expect(first.results).toHaveLength(1);
    const second = await bob.client.search('marmalade', { limit: 1, cursor: first.nextCursor! });
    const hits = [...first.results, ...second.results];
    expect(hits.map((hit) => hit.message.body).sort()).toEqual(['more marmalade', 'sdk search <b>marmalade</b>']);
    for (const hit of hits) expect(hit.snippet.highlights.map(([start, end]) => hit.snippet.text.slice(start, end))).toEqual(['marmalade']);
    await expect(bob.client.search('marmalade', { conversationId: crypto.randomUUID() })).rejects.toMatchObject({ code: 'not_found' });
  });

  it('places, rings, answers on one device, relays signals and hangs up', async () => {
    const aliceId = uniqueUser('alice');
    const bobId = uniqueUser('bob');
    const alice = chatClient(nodeA, aliceId);
    const bobPhone = chatClient(nodeB, bobId);
    const bobLaptop = chatClient(nodeA, bobId);
    await Promise.all([alice.client.connect(), bobPhone.client.connect(), bobLaptop.client.connect()]);
    expect(alice.client.deviceId).toBe(alice.client.socket.id);
    // Calls ring only someone the caller shares a conversation with.
    await direct(alice.client, bobId);

    const ringPhone = next(bobPhone.client, 'callRinging');
    const ringLaptop = next(bobLaptop.client, 'callRinging');
    const call = await alice.client.invite(bobId, 'video');
    expect(call).toMatchObject({ state: 'ringing', callerDeviceId: alice.client.deviceId });
    expect([(await ringPhone)[0].id, (await ringLaptop)[0].id]).toEqual([call.id, call.id]);

    const stopRinging = next(bobLaptop.client, 'callUpdated');
    const answered = next(alice.client, 'callUpdated');
    expect(await bobPhone.client.acceptCall(call.id)).toMatchObject({ state: 'accepted', calleeDeviceId: bobPhone.client.deviceId });
    expect((await stopRinging)[0]).toMatchObject({ id: call.id, state: 'accepted', calleeDeviceId: bobPhone.client.deviceId });
    expect((await answered)[0].calleeDeviceId).not.toBe(bobLaptop.client.deviceId);
    await expect(bobLaptop.client.acceptCall(call.id)).rejects.toMatchObject({ code: 'conflict' });

    const offer = next(bobPhone.client, 'callSignal');
    await alice.client.signal(call.id, { type: 'offer', sdp: 'v=0\r\n' });
    expect((await offer)[0]).toEqual({ callId: call.id, fromUserId: aliceId, signal: { type: 'offer', sdp: 'v=0\r\n' } });

    const hungUp = next(alice.client, 'callUpdated');
    await bobPhone.client.endCall(call.id);
    expect((await hungUp)[0]).toMatchObject({ id: call.id, state: 'ended', endedBy: bobId });
    expect((await alice.client.getCall(call.id)).state).toBe('ended');
  });
});
