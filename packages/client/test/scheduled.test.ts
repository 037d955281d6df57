import type { Message, ScheduledMessage } from '@chat/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '@chat/testkit/eventually';
import { startNode, type TestNode } from '@chat/testkit/nodes';
import { ownDatabase, type OwnDatabase } from '@chat/testkit/own-database';
import { signToken } from '@chat/testkit/tokens';
import { uniqueUser } from '@chat/testkit/users';
import { ChatClient, ChatError } from '../src/index.ts';

// Two real nodes on a database of their own (on the run's shared one, other files' nodes would send
// these messages and fan them out where these clients never hear them).
let db: OwnDatabase;
let nodeA: TestNode;
let nodeB: TestNode;
const clients: ChatClient[] = [];

beforeAll(async () => {
  db = await ownDatabase('sdk_scheduled');
  const env = { DATABASE_URL: db.url, SCHEDULER_POLL_MS: '100' };
  [nodeA, nodeB] = await Promise.all([startNode({ ...env, NODE_ID: 'sdk-sched-a' }), startNode({ ...env, NODE_ID: 'sdk-sched-b' })]);
});
afterAll(async () => {
  for (const client of clients) client.close();
  await Promise.all([nodeA?.close(), nodeB?.close()]);
  await db?.drop();
});

function connected(node: TestNode, userId: string) {
  const client = new ChatClient({ url: node.url, token: () => signToken({ sub: userId, name: userId }) });
  clients.push(client);
  const updates: ScheduledMessage[] = [];
  const messages: Message[] = [];
  client.on('scheduledUpdated', (scheduled) => updates.push(scheduled));
  client.on('message', (message) => messages.push(message));
  return { client, updates, messages, ready: client.connect() };
}

describe('ChatClient: scheduled messages', () => {
  it('schedules, edits, lists and cancels; every device of mine follows, and the message arrives when due', async () => {
    const aliceId = uniqueUser('alice');
    const bobId = uniqueUser('bob');
    const phone = connected(nodeA, aliceId);
    const laptop = connected(nodeB, aliceId);
    const bob = connected(nodeB, bobId);
    await Promise.all([phone.ready, laptop.ready, bob.ready]);
    const { conversation } = await phone.client.request('conversation:open-direct', { userId: bobId });

    const { scheduled: later } = await phone.client.schedule({ conversationId: conversation.id, body: 'draft', sendAt: new Date(Date.now() + 60_000) });
    const { scheduled: never } = await phone.client.schedule({ conversationId: conversation.id, body: 'never', sendAt: new Date(Date.now() + 60_000) });
    // Mine from the acks, the other device's from the server.
    expect(phone.updates.map((s) => s.id)).toEqual([later.id, never.id]);
    await eventually(() => expect(laptop.updates.map((s) => s.id)).toEqual([later.id, never.id]));

    const sendAt = new Date(Date.now() + 1000);
    expect(await laptop.client.editScheduled(later.id, { body: 'on time', sendAt })).toMatchObject({ id: later.id, body: 'on time', sendAt: sendAt.toISOString(), status: 'pending' });
    expect(await laptop.client.cancelScheduled(never.id)).toMatchObject({ id: never.id, status: 'canceled' });
    const changes = [
      [later.id, 'pending', 'on time'],
      [never.id, 'canceled', 'never'],
    ];
    expect(laptop.updates.slice(2).map((s) => [s.id, s.status, s.body])).toEqual(changes);
    await eventually(() => expect(phone.updates.slice(2).map((s) => [s.id, s.status, s.body])).toEqual(changes));
    expect((await phone.client.listScheduled({ conversationId: conversation.id })).scheduled.map((s) => s.id)).toEqual([later.id]);

    await eventually(() => expect(bob.messages.map((m) => m.body)).toEqual(['on time']), { timeoutMs: 5000 });
    for (const device of [phone, laptop]) {
      await eventually(() => expect(device.updates.filter((s) => s.id === later.id).at(-1)).toMatchObject({ status: 'sent', messageId: bob.messages[0]!.id }));
      await eventually(() => expect(device.messages.map((m) => m.body)).toContain('on time'));
    }
    expect((await phone.client.listScheduled()).scheduled).toEqual([]);

    const refused = await phone.client.cancelScheduled(later.id).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ChatError);
    expect(refused).toMatchObject({ code: 'scheduled_not_pending', retryable: false });
    const past = await phone.client.schedule({ conversationId: conversation.id, body: 'too late', sendAt: new Date(Date.now() - 60_000) }).catch((error: unknown) => error);
    expect(past).toMatchObject({ code: 'send_at_out_of_range' });
    // A retry with the same clientMsgId answers the stored one.
    const input = { conversationId: conversation.id, body: 'once', sendAt: new Date(Date.now() + 60_000), clientMsgId: `retry-${Date.now()}` };
    const first = await phone.client.schedule(input);
    expect(await laptop.client.schedule(input)).toEqual({ scheduled: first.scheduled, duplicate: true });
  });
});
