import type { Message } from '@chat/protocol';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { startPrivateRedis, type PrivateRedis } from '@chat/testkit/services';
import { eventually } from '@chat/testkit/eventually';
import { startNode, type TestNode } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { uniqueUser } from '@chat/testkit/users';
import { ChatClient } from '../src/index.ts';

// Two nodes on a Redis of this file's own, which is restarted: a fan-out published while it is down
// never reaches the other node, and the connected client must notice the hole and fetch it.
let redis: PrivateRedis;
let nodeA: TestNode;
let nodeB: TestNode;

beforeAll(async () => {
  redis = await startPrivateRedis();
  const env = { REDIS_URL: redis.url, PRESENCE_NODE_TTL_MS: '2000' };
  [nodeA, nodeB] = await Promise.all([startNode({ ...env, NODE_ID: 'gap-a' }), startNode({ ...env, NODE_ID: 'gap-b' })]);
}, 60_000);
afterAll(async () => {
  await Promise.all([nodeA?.close(), nodeB?.close()]);
  await redis?.destroy();
});

function client(node: TestNode, userId: string): { client: ChatClient; messages: Message[] } {
  const chat = new ChatClient({ url: node.url, token: () => signToken({ sub: userId, name: userId }) });
  onTestFinished(() => chat.close());
  const messages: Message[] = [];
  chat.on('message', (message) => messages.push(message));
  chat.on('error', () => {});
  return { client: chat, messages };
}

describe('a live fan-out that never arrived', () => {
  it('is fetched once a later message shows the hole: every message once, in seq order, without reconnecting', async () => {
    const alice = client(nodeA, uniqueUser('alice'));
    const bobId = uniqueUser('bob');
    const bob = client(nodeB, bobId);
    await Promise.all([alice.client.connect(), bob.client.connect()]);
    const { conversation } = await alice.client.request('conversation:open-direct', { userId: bobId });
    const first = await alice.client.send({ conversationId: conversation.id, body: 'before' }).acked;
    await eventually(() => expect(bob.messages.map((m) => m.id)).toContain(first.id));

    await redis.stop();
    await eventually(async () => expect((await nodeA.app.inject({ url: '/readyz' })).statusCode).toBe(503), { timeoutMs: 5000 });
    // Committed, acked, and its fan-out to node B lost with the bus.
    const lost = await alice.client.send({ conversationId: conversation.id, body: 'during the outage' }).acked;
    await eventually(async () => expect((await nodeA.app.inject({ url: '/metrics' })).body).toMatch(/^chat_cluster_publish_failures_total\{node="gap-a"\} [1-9]/m), { timeoutMs: 10_000 });
    await redis.start();
    const after = await eventually(
      async () => {
        const message = await alice.client.send({ conversationId: conversation.id, body: `after ${Date.now()}` }).acked;
        await eventually(() => expect(bob.messages.map((m) => m.id)).toContain(message.id), { timeoutMs: 1500 });
        return message;
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );

    await eventually(() => expect(bob.messages.map((m) => m.id)).toContain(lost.id), { timeoutMs: 10_000 });
    expect(bob.client.connected).toBe(true);
    const ids = bob.messages.filter((m) => m.kind !== 'system').map((m) => m.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toContain(after.id);
    // The later message waited for the fetched one: the SDK reports new messages in seq order.
    const seqs = bob.messages.map((m) => m.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(bob.messages.findIndex((m) => m.id === lost.id)).toBeLessThan(bob.messages.findIndex((m) => m.id === after.id));
  });
});
