import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Notification } from '@chat/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signWebhook, WebhookSender, webhookHeaders, type WebhookOutcome } from '../src/transport/webhook.ts';
import { eventually } from '@chat/testkit/eventually';
import { startNode, type TestNode } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { connectDevice, uniqueUser, type Device } from '@chat/testkit/users';

// Two real nodes sharing this run's PostgreSQL and Redis, both posting to a real webhook receiver on
// loopback that refuses the first attempts of every delivery.
const WEBHOOK_SECRET = 'webhook-test-secret-0123456789';
const RETRY_BASE_MS = 100;
const FAILURES_PER_DELIVERY = 2;

interface Attempt {
  at: number;
  headers: IncomingHttpHeaders;
  body: string;
  status: number;
}

let receiver: Server;
const attempts: Attempt[] = [];
/** While set, the receiver holds requests open until the test releases them. */
let holding: Array<{ response: ServerResponse; attempt: Attempt }> | null = null;

let nodeA: TestNode;
let nodeB: TestNode;
const devices: Device[] = [];

beforeAll(async () => {
  receiver = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const id = String(request.headers[webhookHeaders.id]);
      const earlier = attempts.filter((a) => String(a.headers[webhookHeaders.id]) === id).length;
      const attempt: Attempt = { at: Date.now(), headers: request.headers, body: Buffer.concat(chunks).toString('utf8'), status: earlier < FAILURES_PER_DELIVERY ? 503 : 204 };
      attempts.push(attempt);
      if (holding) holding.push({ response, attempt });
      else response.writeHead(attempt.status).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const env = {
    NOTIFY_WEBHOOK_URL: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/push`,
    NOTIFY_WEBHOOK_SECRET: WEBHOOK_SECRET,
    NOTIFY_WEBHOOK_RETRY_BASE_MS: String(RETRY_BASE_MS),
    NOTIFY_WEBHOOK_MAX_ATTEMPTS: '5',
  };
  [nodeA, nodeB] = await Promise.all([startNode({ ...env, NODE_ID: 'notify-a' }), startNode({ ...env, NODE_ID: 'notify-b' })]);
});
afterAll(async () => {
  for (const device of devices) device.close();
  await Promise.all([nodeA?.close(), nodeB?.close()]);
  await new Promise((resolve) => receiver?.close(resolve));
});

async function device(node: TestNode, userId: string): Promise<Device> {
  const connected = await connectDevice(node.url, userId);
  devices.push(connected);
  // Presence registers right after the handshake; notifications depend on it.
  await eventually(async () => expect((await node.app.state.presence.get([userId], { viewerId: userId }))[0]?.online).toBe(true));
  return connected;
}

let counter = 0;
const clientMsgId = () => `nt-${Date.now().toString(36)}-${++counter}`;
const send = (from: Device, conversationId: string, body: string) => from.ok('message:send', { conversationId, clientMsgId: clientMsgId(), body });

/** Notifications as the database holds them for a user, oldest first. */
async function stored(userId: string) {
  return nodeA.app.db.notification.findMany({ where: { recipientId: userId }, orderBy: { id: 'asc' } });
}

/** Both nodes wrote everything reported so far. */
async function settled(): Promise<void> {
  await Promise.all([nodeA.app.services.notifications.idle(), nodeB.app.services.notifications.idle()]);
}

const rest = (node: TestNode, userId: string, method: 'GET' | 'POST' | 'DELETE' | 'PUT', url: string, payload?: object) =>
  node.app.inject({ method, url, headers: { authorization: `Bearer ${signToken({ sub: userId, name: userId })}` }, ...(payload && { payload }) });

describe('notifications per kind', () => {
  it('a message to a recipient with no connected device, and none while one is connected', async () => {
    const alice = await device(nodeA, uniqueUser('alice'));
    const bobId = uniqueUser('bob');
    const { conversation } = await alice.ok('conversation:open-direct', { userId: bobId });
    const first = await send(alice, conversation.id, 'are you there?');
    await eventually(async () =>
      expect(await stored(bobId)).toMatchObject([{ type: 'message', conversationId: conversation.id, messageId: first.message.id, actorId: alice.userId, preview: 'are you there?', readAt: null }]),
    );
    expect(await stored(alice.userId)).toEqual([]);

    const bob = await device(nodeB, bobId);
    await send(alice, conversation.id, 'now you are');
    // Invisible looks offline to others, but the device is connected: still no notification.
    await bob.ok('presence:set-status', { status: 'invisible' });
    await send(alice, conversation.id, 'even invisible');
    await settled();
    expect(await stored(bobId)).toHaveLength(1);
    expect(bob.of('notification:new')).toEqual([]);
    await eventually(() => expect(bob.of('message:new').map((m) => m.body)).toEqual(['now you are', 'even invisible']));
  });

  it('a mention in a group by @userId or @displayName, to every device of the mentioned on both nodes', async () => {
    const alice = await device(nodeA, uniqueUser('alice'));
    const bobA = await device(nodeA, uniqueUser('bob'));
    const bobB = await device(nodeB, bobA.userId);
    const dave = await device(nodeB, uniqueUser('dave'));
    // Carol has no device; her display name comes from her token's `name` on a REST call.
    const carolId = uniqueUser('carol');
    expect((await rest(nodeA, carolId, 'GET', '/v1/me')).statusCode).toBe(200);
    await nodeA.app.db.user.update({ where: { id: carolId }, data: { displayName: 'Carol Smith' } });
    const { conversation } = await alice.ok('conversation:create-group', { title: 'plans', memberIds: [bobA.userId, carolId, dave.userId] });
    await settled();

    const sent = await send(alice, conversation.id, `hey @${bobA.userId}, and @carol smith: lunch? (not @${dave.userId}x)`);
    for (const bob of [bobA, bobB]) {
      await eventually(() =>
        expect(bob.of('notification:new').filter((n) => n.notification.kind === 'mention')).toMatchObject([
          { notification: { kind: 'mention', messageId: sent.message.id, actorId: alice.userId, conversationId: conversation.id, readAt: null } },
        ]),
      );
    }
    await eventually(async () => expect((await stored(carolId)).map((n) => n.type)).toEqual(['group_added', 'mention']));
    await settled();
    // Dave was not mentioned (a longer name is not his) and is online: nothing for the message.
    expect(dave.of('notification:new').map((n) => n.notification.kind)).toEqual(['group_added']);
    expect(alice.of('notification:new')).toEqual([]);
  });

  it('a reaction to my message (not my own), and being added to a group', async () => {
    const alice = await device(nodeA, uniqueUser('alice'));
    const bob = await device(nodeB, uniqueUser('bob'));
    const carol = await device(nodeB, uniqueUser('carol'));
    const { conversation } = await alice.ok('conversation:create-group', { title: 'Team', memberIds: [bob.userId] });
    await eventually(() =>
      expect(bob.of('notification:new')).toMatchObject([{ notification: { kind: 'group_added', conversationId: conversation.id, actorId: alice.userId, preview: 'Team' }, unreadCount: 1 }]),
    );
    await alice.ok('conversation:add-members', { conversationId: conversation.id, userIds: [carol.userId] });
    await eventually(() => expect(carol.of('notification:new')).toMatchObject([{ notification: { kind: 'group_added', conversationId: conversation.id } }]));

    const { message } = await send(alice, conversation.id, 'ship it');
    await alice.ok('message:react', { messageId: message.id, emoji: '👍', action: 'add' });
    await bob.ok('message:react', { messageId: message.id, emoji: '🎉', action: 'add' });
    await bob.ok('message:react', { messageId: message.id, emoji: '🎉', action: 'remove' });
    await eventually(() => expect(alice.of('notification:new')).toMatchObject([{ notification: { kind: 'reaction', messageId: message.id, actorId: bob.userId, preview: '🎉' }, unreadCount: 1 }]));
    await settled();
    expect(alice.of('notification:new')).toHaveLength(1);
    expect(bob.of('notification:new')).toHaveLength(1);
  });

  it('a system notice (a missed call) through the same path', async () => {
    const bob = await device(nodeB, uniqueUser('bob'));
    nodeA.app.services.notifications.system(bob.userId, 'Maintenance at noon');
    await eventually(() => expect(bob.of('notification:new')).toMatchObject([{ notification: { kind: 'system', preview: 'Maintenance at noon', conversationId: null, actorId: null } }]));
  });
});

describe('mute', () => {
  it('silences a conversation for me only, syncs my devices and shows in my list', async () => {
    const alice = await device(nodeA, uniqueUser('alice'));
    const bobA = await device(nodeA, uniqueUser('bob'));
    const bobB = await device(nodeB, bobA.userId);
    const { conversation } = await alice.ok('conversation:create-group', { title: 'noisy', memberIds: [bobA.userId] });
    await eventually(() => expect(bobB.of('notification:new')).toHaveLength(1));

    expect(await bobA.ok('conversation:mute', { conversationId: conversation.id, muted: true })).toEqual({ conversationId: conversation.id, muted: true });
    await eventually(() => expect(bobB.of('conversation:muted')).toEqual([{ conversationId: conversation.id, muted: true }]));
    expect(bobA.of('conversation:muted')).toEqual([]);
    const listed = await bobB.ok('conversation:list', {});
    expect(listed.conversations.find((c) => c.id === conversation.id)).toMatchObject({ muted: true });
    expect((await alice.ok('conversation:list', {})).conversations.find((c) => c.id === conversation.id)).toMatchObject({ muted: false });

    await send(alice, conversation.id, `@${bobA.userId} muted?`);
    const { message } = await send(alice, conversation.id, 'react to this');
    await bobA.ok('message:react', { messageId: message.id, emoji: '👀', action: 'add' });
    await settled();
    expect(bobB.of('notification:new')).toHaveLength(1);

    await bobB.ok('conversation:mute', { conversationId: conversation.id, muted: false });
    await send(alice, conversation.id, `@${bobA.userId} and now?`);
    await eventually(() => expect(bobA.of('notification:new').map((n) => n.notification.kind)).toEqual(['group_added', 'mention']));
    expect((await rest(nodeA, bobA.userId, 'PUT', `/v1/conversations/${conversation.id}/mute`, { muted: true })).json()).toEqual({ ok: true, conversationId: conversation.id, muted: true });
    const outsider = await device(nodeA, uniqueUser('outsider'));
    expect(await outsider.call('conversation:mute', { conversationId: conversation.id, muted: true })).toMatchObject({ ok: false, error: { code: 'not_found' } });
  });
});

describe('reading notifications', () => {
  it('pages newest first with the unread count, and syncs read and deleted state to every device', async () => {
    const alice = await device(nodeA, uniqueUser('alice'));
    const bobA = await device(nodeA, uniqueUser('bob'));
    const bobB = await device(nodeB, bobA.userId);
    const { conversation } = await bobA.ok('conversation:open-direct', { userId: alice.userId });
    for (let i = 0; i < 7; i++) {
      const { message } = await send(bobA, conversation.id, `message ${i}`);
      await alice.ok('message:react', { messageId: message.id, emoji: '❤️', action: 'add' });
    }
    await eventually(() => expect(bobB.of('notification:new')).toHaveLength(7));
    expect(bobB.of('notification:new').map((n) => n.unreadCount)).toEqual([1, 2, 3, 4, 5, 6, 7]);

    const pages: Notification[][] = [];
    let cursor: string | undefined;
    do {
      const page = await bobA.ok('notification:list', { limit: 3, ...(cursor !== undefined && { cursor }) });
      expect(page.unreadCount).toBe(7);
      pages.push(page.notifications);
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
    expect(pages.map((p) => p.length)).toEqual([3, 3, 1]);
    const all = pages.flat();
    expect(all.map((n) => n.id)).toEqual(
      bobB
        .of('notification:new')
        .map((n) => n.notification.id)
        .reverse(),
    );

    const read = await bobA.ok('notification:mark-read', { notificationIds: [all[0]!.id, all[1]!.id, all[1]!.id] });
    expect(read).toMatchObject({ all: false, notificationIds: expect.arrayContaining([all[0]!.id, all[1]!.id]), unreadCount: 5 });
    await eventually(() => expect(bobB.of('notification:read')).toEqual([read]));
    expect(bobA.of('notification:read')).toEqual([]);
    // Marking again changes nothing and tells nobody.
    expect(await bobA.ok('notification:mark-read', { notificationIds: [all[0]!.id] })).toMatchObject({ notificationIds: [], unreadCount: 5 });
    const unread = await bobB.ok('notification:list', { unreadOnly: true });
    expect(unread.notifications.map((n) => n.id)).toEqual(all.slice(2).map((n) => n.id));

    expect(await bobB.ok('notification:delete', { notificationId: all[2]!.id })).toEqual({ notificationId: all[2]!.id, unreadCount: 4 });
    await eventually(() => expect(bobA.of('notification:deleted')).toEqual([{ notificationId: all[2]!.id, unreadCount: 4 }]));
    expect(await bobB.call('notification:delete', { notificationId: all[2]!.id })).toMatchObject({ ok: false, error: { code: 'not_found' } });

    // Not the recipient: someone else's notification is invisible, exactly like a missing one.
    expect(await alice.call('notification:delete', { notificationId: all[3]!.id })).toEqual(await alice.call('notification:delete', { notificationId: '0190a5f5-0000-7000-8000-000000000009' }));
    expect(await alice.ok('notification:mark-read', { notificationIds: [all[3]!.id] })).toMatchObject({ notificationIds: [], unreadCount: 0 });
    expect((await alice.ok('notification:list', {})).notifications).toEqual([]);

    const allRead = await bobB.ok('notification:mark-read', { all: true });
    expect(allRead).toMatchObject({ all: true, notificationIds: [], unreadCount: 0 });
    await eventually(() => expect(bobA.of('notification:read').at(-1)).toEqual(allRead));
    expect((await bobA.ok('notification:list', { unreadOnly: true })).notifications).toEqual([]);
    expect((await bobA.ok('notification:list', {})).notifications.every((n) => n.readAt !== null)).toBe(true);
  });

  it('over REST: list with paging and unreadOnly, mark read, delete', async () => {
    const alice = await device(nodeA, uniqueUser('alice'));
    const bobId = uniqueUser('bob');
    const { conversation } = await alice.ok('conversation:open-direct', { userId: bobId });
    for (let i = 0; i < 3; i++) await send(alice, conversation.id, `offline ${i}`);
    await eventually(async () => expect(await stored(bobId)).toHaveLength(3));

    const page = await rest(nodeB, bobId, 'GET', '/v1/notifications?limit=2&unreadOnly=true');
    expect(page.statusCode).toBe(200);
    expect(page.json()).toMatchObject({ ok: true, unreadCount: 3, nextCursor: expect.any(String) });
    const [newest] = page.json().notifications as Notification[];
    expect(newest).toMatchObject({ kind: 'message', preview: 'offline 2' });
    const read = await rest(nodeB, bobId, 'POST', '/v1/notifications/read', { notificationIds: [newest!.id] });
    expect(read.json()).toMatchObject({ ok: true, notificationIds: [newest!.id], unreadCount: 2 });
    expect((await rest(nodeB, bobId, 'DELETE', `/v1/notifications/${newest!.id}`)).json()).toEqual({ ok: true, notificationId: newest!.id, unreadCount: 2 });
    expect((await rest(nodeB, bobId, 'POST', '/v1/notifications/read', { all: true })).json()).toMatchObject({ ok: true, all: true, unreadCount: 0 });
    const bad = await rest(nodeB, bobId, 'POST', '/v1/notifications/read', {});
    expect([bad.statusCode, bad.json().error.code]).toEqual([400, 'validation']);
    const stranger = await rest(nodeB, alice.userId, 'DELETE', `/v1/notifications/${(page.json().notifications as Notification[])[1]!.id}`);
    expect([stranger.statusCode, stranger.json().error.code]).toEqual([404, 'not_found']);
  });
});

describe('webhook for recipients without a connected device', () => {
  it('posts a signed payload, retries with back-off until accepted, and never holds up the send', async () => {
    const alice = await device(nodeA, uniqueUser('alice'));
    const bobId = uniqueUser('bob');
    const { conversation } = await alice.ok('conversation:open-direct', { userId: bobId });
    const mine = () => attempts.filter((a) => JSON.parse(a.body).recipientId === bobId);

    // The receiver answers nothing until released: the send is acked regardless.
    holding = [];
    const { message } = await send(alice, conversation.id, 'wake up');
    await eventually(() => expect(mine()).toHaveLength(1));
    expect(message.body).toBe('wake up');
    const held = holding;
    holding = null;
    for (const { response, attempt } of held) response.writeHead(attempt.status).end();

    await eventually(() => expect(mine().map((a) => a.status)).toEqual([503, 503, 204]), { timeoutMs: 10_000 });
    const tries = mine();
    const ids = new Set(tries.map((a) => a.headers[webhookHeaders.id]));
    expect(ids.size).toBe(1);
    for (const attempt of tries) {
      const timestamp = String(attempt.headers[webhookHeaders.timestamp]);
      expect(Math.abs(Number(timestamp) - Date.now() / 1000)).toBeLessThan(60);
      expect(attempt.headers[webhookHeaders.signature]).toBe(signWebhook(WEBHOOK_SECRET, timestamp, attempt.body));
      expect(attempt.headers['content-type']).toBe('application/json');
    }
    expect(tries[0]!.headers[webhookHeaders.signature]).not.toBe(signWebhook('another-secret-of-some-length', String(tries[0]!.headers[webhookHeaders.timestamp]), tries[0]!.body));
    // Exponential back-off with jitter: the n-th retry waits 50-100% of base * 2^(n-1).
    expect(tries[2]!.at - tries[1]!.at).toBeGreaterThanOrEqual(RETRY_BASE_MS - 5);
    expect(JSON.parse(tries[2]!.body)).toMatchObject({ type: 'notification', recipientId: bobId, unreadCount: 1, notification: { kind: 'message', messageId: message.id, preview: 'wake up' } });
    await eventually(async () => expect(await nodeA.app.metrics.registry.getSingleMetricAsString('chat_webhook_deliveries_total')).toMatch(/outcome="delivered"[^\n]* [1-9]/));

    // An incoming call to a callee without a connected device is pushed too.
    const ring = (await alice.ok('call:invite', { calleeId: bobId, media: 'video' })).call;
    await eventually(() => expect(mine().map((a) => JSON.parse(a.body))).toContainEqual({ type: 'call', recipientId: bobId, call: ring }));
    await alice.ok('call:cancel', { callId: ring.id });

    // A recipient with a connected device gets no push.
    const carol = await device(nodeB, uniqueUser('carol'));
    const group = await alice.ok('conversation:create-group', { title: 'online', memberIds: [carol.userId] });
    await eventually(() => expect(carol.of('notification:new')).toHaveLength(1));
    await settled();
    expect(attempts.filter((a) => JSON.parse(a.body).recipientId === carol.userId)).toEqual([]);
    expect(group.conversation.title).toBe('online');
  });
});

describe('WebhookSender', () => {
  /** A receiver answering each attempt with the next status of the list (the last one repeats). */
  async function receiverAnswering(statuses: number[]) {
    const seen: number[] = [];
    const server = createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        seen.push(Date.now());
        response.writeHead(statuses[Math.min(seen.length - 1, statuses.length - 1)]!).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, seen, close: () => new Promise((resolve) => server.close(resolve)) };
  }
  const sender = (url: string, outcomes: WebhookOutcome[], options: Partial<ConstructorParameters<typeof WebhookSender>[0]> = {}) =>
    new WebhookSender({ url, secret: WEBHOOK_SECRET, maxAttempts: 4, retryBaseMs: 20, retryMaxMs: 40, timeoutMs: 2000, ...options }, { onOutcome: (outcome) => outcomes.push(outcome) });

  it('gives up on a refusal at once, and after maxAttempts on failures, with delays capped at retryMaxMs', async () => {
    const refusing = await receiverAnswering([400]);
    const failing = await receiverAnswering([500]);
    const outcomes: WebhookOutcome[] = [];
    const refused = sender(refusing.url, outcomes);
    const failed = sender(failing.url, outcomes);
    refused.send({ n: 1 });
    failed.send({ n: 2 });
    await eventually(() => expect(outcomes.filter((o) => o === 'failed')).toHaveLength(2));
    expect(refusing.seen).toHaveLength(1);
    expect(failing.seen).toHaveLength(4);
    expect(outcomes.filter((o) => o === 'retried')).toHaveLength(3);
    const gaps = failing.seen.slice(1).map((at, i) => at - failing.seen[i]!);
    expect(Math.max(...gaps)).toBeLessThan(1000);
    await Promise.all([refused.close(), failed.close(), refusing.close(), failing.close()]);
  });

  it('retries an unreachable receiver, and close() drops what is still waiting instead of blocking', async () => {
    const gone = await receiverAnswering([204]);
    await gone.close();
    const outcomes: WebhookOutcome[] = [];
    const webhook = sender(gone.url, outcomes, { maxAttempts: 100, retryBaseMs: 60_000, retryMaxMs: 60_000 });
    webhook.send({ n: 1 });
    await eventually(() => expect(outcomes).toEqual(['retried']));
    await webhook.close();
    expect(outcomes).toEqual(['retried', 'dropped']);
    webhook.send({ n: 2 });
    expect(outcomes).toEqual(['retried', 'dropped']);
  });
});
