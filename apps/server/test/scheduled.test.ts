import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ScheduledMessage } from '@chat/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '@chat/testkit/eventually';
import { startNode, type TestNode } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { connectDevice, testDevice, uniqueUser, type Device } from '@chat/testkit/users';
import { ownDatabase, type OwnDatabase } from '@chat/testkit/own-database';

// Two real nodes on a database of their own and this run's Redis; the sender's second device sits on
// the other node. Both poll, so either may send a due message. (On the run's shared database the
// nodes of other files would send some, and fan them out in their own files' Redis scope.)
let db: OwnDatabase;
let nodeA: TestNode;
let nodeB: TestNode;

beforeAll(async () => {
  db = await ownDatabase('scheduled');
  const env = { DATABASE_URL: db.url, SCHEDULER_POLL_MS: '100' };
  [nodeA, nodeB] = await Promise.all([startNode({ ...env, NODE_ID: 'scheduled-a' }), startNode({ ...env, NODE_ID: 'scheduled-b' })]);
});
afterAll(async () => {
  await Promise.all([nodeA?.close(), nodeB?.close()]);
  await db?.drop();
});

const inMs = (ms: number) => new Date(Date.now() + ms).toISOString();
const clientMsgId = () => `sch-${randomUUID()}`;

function rest(node: TestNode, userId: string, method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: object) {
  return node.app.inject({ method, url, headers: { authorization: `Bearer ${signToken({ sub: userId, name: userId })}` }, ...(payload && { payload }) });
}

/** Alice (two devices, one per node) and Bob in a group. */
async function setUp() {
  const aliceA = await testDevice(nodeA.url, uniqueUser('alice'));
  const aliceB = await testDevice(nodeB.url, aliceA.userId);
  const bob = await testDevice(nodeB.url, uniqueUser('bob'));
  const { conversation } = await aliceA.ok('conversation:create-group', { title: 'later', memberIds: [bob.userId] });
  return { aliceA, aliceB, bob, conversationId: conversation.id };
}

const updates = (device: Device, id: string) => device.of('message:scheduled-updated').filter((s) => s.id === id);
const statusOf = async (node: TestNode, id: string) => (await node.app.db.scheduledMessage.findUniqueOrThrow({ where: { id } })).status;

describe('scheduled messages', () => {
  it('schedules, lists, and sends at sendAt through the normal send path, telling all my devices', async () => {
    const { aliceA, aliceB, bob, conversationId } = await setUp();
    const id = clientMsgId();
    const sendAt = inMs(1500);
    const { scheduled, duplicate } = await aliceA.ok('message:schedule', { conversationId, clientMsgId: id, body: 'good morning', sendAt });
    expect(duplicate).toBe(false);
    expect(scheduled).toMatchObject({ conversationId, clientMsgId: id, body: 'good morning', attachments: [], sendAt, status: 'pending', messageId: null, error: null });
    // My other device hears of it; the one that asked has it in its ack.
    await eventually(() => expect(updates(aliceB, scheduled.id)).toEqual([scheduled]));
    expect(updates(aliceA, scheduled.id)).toEqual([]);
    // A retry answers the stored one.
    expect(await aliceB.ok('message:schedule', { conversationId, clientMsgId: id, body: 'good morning', sendAt })).toEqual({ scheduled, duplicate: true });
    expect((await aliceB.ok('message:scheduled-list', {})).scheduled).toEqual([scheduled]);
    expect((await aliceB.ok('message:scheduled-list', { conversationId })).scheduled).toEqual([scheduled]);
    expect((await bob.ok('message:scheduled-list', { conversationId })).scheduled).toEqual([]);

    const message = await eventually(
      () => {
        const [received] = bob.of('message:new').filter((m) => m.clientMsgId === id);
        expect(received).toBeDefined();
        return received!;
      },
      { timeoutMs: 5000 },
    );
    expect(message).toMatchObject({ senderId: aliceA.userId, body: 'good morning', conversationId });
    expect(Date.parse(message.createdAt)).toBeGreaterThanOrEqual(Date.parse(sendAt));
    // The sender's devices get the message (nobody's ack holds it) and the scheduled message's end.
    for (const device of [aliceA, aliceB]) {
      await eventually(() => expect(device.of('message:new').map((m) => m.id)).toContain(message.id));
      await eventually(() => expect(updates(device, scheduled.id).at(-1)).toMatchObject({ status: 'sent', messageId: message.id }));
    }
    expect((await aliceA.ok('message:scheduled-list', {})).scheduled).toEqual([]);
    const { messages } = await bob.ok('history:fetch', { conversationId });
    expect(messages.filter((m) => m.clientMsgId === id)).toHaveLength(1);
    // Scheduling it again after it was sent is still the same one.
    expect((await aliceA.ok('message:schedule', { conversationId, clientMsgId: id, body: 'good morning', sendAt })).scheduled).toMatchObject({ status: 'sent', messageId: message.id });
  });

  it('edits body and time while pending; a canceled one is never sent', async () => {
    const { aliceA, aliceB, bob, conversationId } = await setUp();
    const edited = (await aliceA.ok('message:schedule', { conversationId, clientMsgId: clientMsgId(), body: 'draft', sendAt: inMs(60_000) })).scheduled;
    const canceled = (await aliceA.ok('message:schedule', { conversationId, clientMsgId: clientMsgId(), body: 'never', sendAt: inMs(800) })).scheduled;
    const sendAt = inMs(1000);
    const { scheduled: changed } = await aliceB.ok('message:scheduled-edit', { scheduledId: edited.id, body: 'final', sendAt });
    expect(changed).toMatchObject({ id: edited.id, body: 'final', sendAt, status: 'pending' });
    const { scheduled: gone } = await aliceB.ok('message:scheduled-cancel', { scheduledId: canceled.id });
    expect(gone).toMatchObject({ id: canceled.id, status: 'canceled' });
    await eventually(() => expect(updates(aliceA, canceled.id).at(-1)).toMatchObject({ status: 'canceled' }));
    expect((await aliceA.ok('message:scheduled-list', { conversationId })).scheduled.map((s) => s.id)).toEqual([edited.id]);

    await eventually(() => expect(bob.of('message:new').map((m) => m.body)).toContain('final'), { timeoutMs: 5000 });
    // Well past the canceled one's time too: still nothing.
    await eventually(async () => expect(await statusOf(nodeA, edited.id)).toBe('sent'));
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(bob.of('message:new').map((m) => m.body)).not.toContain('never');
    expect(await statusOf(nodeA, canceled.id)).toBe('canceled');
    expect(await nodeA.app.db.message.count({ where: { clientMsgId: canceled.clientMsgId } })).toBe(0);

    // Finished ones are not pending any more.
    for (const scheduledId of [edited.id, canceled.id]) {
      expect(await aliceA.call('message:scheduled-edit', { scheduledId, body: 'too late' })).toMatchObject({ ok: false, error: { code: 'scheduled_not_pending', retryable: false } });
      expect(await aliceA.call('message:scheduled-cancel', { scheduledId })).toMatchObject({ ok: false, error: { code: 'scheduled_not_pending' } });
    }
  });

  it('refuses a sendAt in the past or too far ahead, and bad input, with catalogued errors', async () => {
    const { aliceA, conversationId } = await setUp();
    const at = (sendAt: string) => aliceA.call('message:schedule', { conversationId, clientMsgId: clientMsgId(), body: 'x', sendAt });
    expect(await at(inMs(-5000))).toMatchObject({ ok: false, error: { code: 'send_at_out_of_range', retryable: false } });
    expect(await at(inMs(31 * 24 * 3600_000))).toMatchObject({ ok: false, error: { code: 'send_at_out_of_range' } });
    expect(await at('tomorrow')).toMatchObject({ ok: false, error: { code: 'validation' } });
    expect(await at(inMs(-200))).toMatchObject({ ok: true });
    const { scheduled } = await aliceA.ok('message:schedule', { conversationId, clientMsgId: clientMsgId(), body: 'x', sendAt: inMs(60_000) });
    expect(await aliceA.call('message:scheduled-edit', { scheduledId: scheduled.id, sendAt: inMs(-60_000) })).toMatchObject({ ok: false, error: { code: 'send_at_out_of_range' } });
    expect(await aliceA.call('message:scheduled-edit', { scheduledId: scheduled.id })).toMatchObject({ ok: false, error: { code: 'validation' } });
    expect(await aliceA.call('message:scheduled-edit', { scheduledId: randomUUID(), body: 'y' })).toMatchObject({ ok: false, error: { code: 'not_found' } });
    const reused = await aliceA.call('message:schedule', {
      conversationId: (await aliceA.ok('conversation:create-group', { title: 'other', memberIds: [] })).conversation.id,
      clientMsgId: scheduled.clientMsgId,
      body: 'x',
      sendAt: inMs(60_000),
    });
    expect(reused).toMatchObject({ ok: false, error: { code: 'conflict' } });
    const { message } = await aliceA.ok('message:send', { conversationId, clientMsgId: clientMsgId(), body: 'sent now' });
    expect(await aliceA.call('message:schedule', { conversationId, clientMsgId: message.clientMsgId, body: 'x', sendAt: inMs(60_000) })).toMatchObject({ ok: false, error: { code: 'conflict' } });
    expect(await aliceA.call('message:scheduled-list', { cursor: 'not-a-cursor' })).toMatchObject({ ok: false, error: { code: 'validation' } });
  });

  it('a stranger gets what a missing id gets, over the socket and REST alike', async () => {
    const { aliceA, conversationId } = await setUp();
    const { scheduled } = await aliceA.ok('message:schedule', { conversationId, clientMsgId: clientMsgId(), body: 'mine', sendAt: inMs(60_000) });
    const stranger = await testDevice(nodeB.url, uniqueUser('stranger'));
    for (const [real, missing] of [
      [await stranger.call('message:scheduled-edit', { scheduledId: scheduled.id, body: 'pwned' }), await stranger.call('message:scheduled-edit', { scheduledId: randomUUID(), body: 'pwned' })],
      [await stranger.call('message:scheduled-cancel', { scheduledId: scheduled.id }), await stranger.call('message:scheduled-cancel', { scheduledId: randomUUID() })],
      [
        await stranger.call('message:schedule', { conversationId, clientMsgId: clientMsgId(), body: 'in', sendAt: inMs(60_000) }),
        await stranger.call('message:schedule', { conversationId: randomUUID(), clientMsgId: clientMsgId(), body: 'in', sendAt: inMs(60_000) }),
      ],
    ]) {
      expect(real).toMatchObject({ ok: false, error: { code: 'not_found' } });
      expect(real).toEqual(missing);
    }
    const restReal = await rest(nodeA, stranger.userId, 'DELETE', `/v1/scheduled-messages/${scheduled.id}`);
    const restMissing = await rest(nodeA, stranger.userId, 'DELETE', `/v1/scheduled-messages/${randomUUID()}`);
    expect([restReal.statusCode, restReal.json()]).toEqual([restMissing.statusCode, restMissing.json()]);
    expect(restReal.statusCode).toBe(404);
    expect((await stranger.ok('message:scheduled-list', { conversationId })).scheduled).toEqual([]);
    expect(await statusOf(nodeA, scheduled.id)).toBe('pending');
  });

  it('REST and the socket agree: schedule, list, edit, cancel', async () => {
    const { aliceA, aliceB, conversationId } = await setUp();
    const id = clientMsgId();
    const created = await rest(nodeB, aliceA.userId, 'POST', `/v1/conversations/${conversationId}/scheduled-messages`, { clientMsgId: id, body: 'via rest', sendAt: inMs(60_000) });
    expect(created.statusCode).toBe(201);
    const scheduled = created.json().scheduled as ScheduledMessage;
    // No origin device: every device of mine hears it.
    await eventually(() => expect([aliceA, aliceB].map((d) => updates(d, scheduled.id).length)).toEqual([1, 1]));
    const again = await rest(nodeB, aliceA.userId, 'POST', `/v1/conversations/${conversationId}/scheduled-messages`, { clientMsgId: id, body: 'via rest', sendAt: inMs(60_000) });
    expect([again.statusCode, again.json().duplicate]).toEqual([200, true]);
    const listed = await rest(nodeA, aliceA.userId, 'GET', `/v1/scheduled-messages?conversationId=${conversationId}&limit=5`);
    expect(listed.json()).toEqual({ ok: true, scheduled: [scheduled], nextCursor: null });
    const patched = await rest(nodeA, aliceA.userId, 'PATCH', `/v1/scheduled-messages/${scheduled.id}`, { body: 'edited' });
    expect([patched.statusCode, patched.json().scheduled.body]).toEqual([200, 'edited']);
    const deleted = await rest(nodeA, aliceA.userId, 'DELETE', `/v1/scheduled-messages/${scheduled.id}`);
    expect([deleted.statusCode, deleted.json().scheduled.status]).toEqual([200, 'canceled']);
    const late = await rest(nodeA, aliceA.userId, 'DELETE', `/v1/scheduled-messages/${scheduled.id}`);
    expect([late.statusCode, late.json().error.code]).toEqual([409, 'scheduled_not_pending']);
    const past = await rest(nodeA, aliceA.userId, 'POST', `/v1/conversations/${conversationId}/scheduled-messages`, { clientMsgId: clientMsgId(), body: 'x', sendAt: inMs(-60_000) });
    expect([past.statusCode, past.json().error.code]).toEqual([400, 'send_at_out_of_range']);
  });

  it('pages the list soonest first', async () => {
    const { aliceA, conversationId } = await setUp();
    const times = [5, 3, 4, 1, 2].map((minutes) => inMs(minutes * 60_000));
    for (const sendAt of times) await aliceA.ok('message:schedule', { conversationId, clientMsgId: clientMsgId(), body: sendAt, sendAt });
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await aliceA.ok('message:scheduled-list', { limit: 2, ...(cursor && { cursor }) });
      seen.push(...page.scheduled.map((s) => s.sendAt));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(seen).toEqual([...times].sort());
  });

  it('fails a due message whose sender left the conversation, and tells their devices why', async () => {
    const { aliceA, aliceB, bob, conversationId } = await setUp();
    const { scheduled } = await aliceA.ok('message:schedule', { conversationId, clientMsgId: clientMsgId(), body: 'after I left', sendAt: inMs(800) });
    await aliceA.ok('conversation:leave', { conversationId });
    // Leaving does not cancel it: it stays pending (visible, cancelable) until due, then fails.
    expect((await aliceB.ok('message:scheduled-list', {})).scheduled.map((s) => s.id)).toEqual([scheduled.id]);
    expect(await aliceA.call('message:schedule', { conversationId, clientMsgId: clientMsgId(), body: 'more', sendAt: inMs(60_000) })).toMatchObject({ ok: false, error: { code: 'not_found' } });
    for (const device of [aliceA, aliceB]) {
      await eventually(() => expect(updates(device, scheduled.id).at(-1)).toMatchObject({ status: 'failed', error: 'not_found', messageId: null }), { timeoutMs: 5000 });
    }
    expect(bob.of('message:new').map((m) => m.body)).not.toContain('after I left');
    expect(await nodeA.app.db.message.count({ where: { clientMsgId: scheduled.clientMsgId } })).toBe(0);
  });

  it('counts what the scheduler did in the metrics', async () => {
    const metrics = `${(await nodeA.app.inject({ url: '/metrics' })).body}\n${(await nodeB.app.inject({ url: '/metrics' })).body}`;
    expect(metrics).toMatch(/^chat_scheduled_messages_total\{[^}]*outcome="sent"[^}]*\} [1-9]/m);
    expect(metrics).toMatch(/^chat_scheduler_rounds_total\{[^}]*\} [1-9]/m);
    expect(metrics).toMatch(/^chat_scheduler_lag_seconds_count\{[^}]*\} [1-9]/m);
  });
});

describe('scheduled messages on the embedded PGlite database', () => {
  it('claims, sends and records them like PostgreSQL', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'chat-scheduled-embedded-'));
    const embedded = await startNode({ DATABASE_URL: undefined, REDIS_URL: undefined, DATA_DIR: dataDir, SCHEDULER_POLL_MS: '100' });
    const devices: Device[] = [];
    try {
      const [me, peer] = await Promise.all([connectDevice(embedded.url, 'embedded-me'), connectDevice(embedded.url, 'embedded-peer')]);
      devices.push(me, peer);
      const { conversation } = await me.ok('conversation:open-direct', { userId: peer.userId });
      const attachments = [{ url: 'https://files.example/a.png', mime: 'image/png', size: 10, name: 'a.png' }];
      const { scheduled } = await me.ok('message:schedule', { conversationId: conversation.id, clientMsgId: 'embedded-later-1', body: 'from the embedded node', attachments, sendAt: inMs(500) });
      await eventually(() => expect(peer.of('message:new').map((m) => [m.body, m.attachments])).toEqual([['from the embedded node', attachments]]), { timeoutMs: 10_000 });
      await eventually(() => expect(me.of('message:scheduled-updated').at(-1)).toMatchObject({ id: scheduled.id, status: 'sent', messageId: peer.of('message:new')[0]!.id }));
    } finally {
      for (const device of devices) device.close();
      await embedded.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
    // Booting migrates a fresh PGlite through the wasm schema engine: seconds alone, much more on a busy machine.
  }, 180_000);
});
