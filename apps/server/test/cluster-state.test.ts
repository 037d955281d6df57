import type { Presence } from '@chat/protocol';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startPrivateRedis } from '@chat/testkit/services';
import { eventually } from '@chat/testkit/eventually';
import { spawnNode, testEnv, testNode } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { testDevice, uniqueUser, type Device } from '@chat/testkit/users';

let counter = 0;
const clientMsgId = () => `cs-${Date.now().toString(36)}-${++counter}`;

const node = testNode;
const device = testDevice;
const lastPresence = (d: Device, userId: string): Presence | undefined =>
  d
    .of('presence:updated')
    .filter((p) => p.userId === userId)
    .at(-1);

describe('presence', () => {
  it('is online while any device on any node is connected, offline with lastSeenAt after the last', async () => {
    const [a, b] = [await node({ NODE_ID: 'pa' }), await node({ NODE_ID: 'pb' })];
    const aliceId = uniqueUser('alice');
    const bob = await device(b.url, uniqueUser('bob'));
    const first = await device(a.url, aliceId);
    await first.ok('conversation:open-direct', { userId: bob.userId });
    const second = await device(b.url, aliceId);

    expect((await bob.ok('presence:get', { userIds: [aliceId, 'stranger-x'] })).presence).toEqual([{ userId: aliceId, online: true, status: 'online', lastSeenAt: null }]);
    first.close();
    await eventually(async () => expect((await bob.ok('presence:get', { userIds: [aliceId] })).presence[0]).toMatchObject({ online: true }));
    second.close();
    await eventually(() => expect(lastPresence(bob, aliceId)).toMatchObject({ online: false, status: 'offline', lastSeenAt: expect.any(String) }));
    const stored = await a.app.db.user.findUniqueOrThrow({ where: { id: aliceId } });
    expect(stored.lastSeenAt).not.toBeNull();
    expect(bob.of('presence:updated').filter((p) => p.userId === aliceId && !p.online)).toHaveLength(1);
  });

  it('announces status changes to contacts; invisible looks offline to others but not to the user', async () => {
    const n = await node();
    const alice = await device(n.url, uniqueUser('alice'));
    const bob = await device(n.url, uniqueUser('bob'));
    await alice.ok('conversation:open-direct', { userId: bob.userId });
    await alice.ok('presence:set-status', { status: 'dnd' });
    await eventually(() => expect(lastPresence(bob, alice.userId)).toMatchObject({ online: true, status: 'dnd' }));
    await alice.ok('presence:set-status', { status: 'invisible' });
    await eventually(() => expect(lastPresence(bob, alice.userId)).toMatchObject({ online: false, status: 'offline' }));
    expect((await bob.ok('presence:get', { userIds: [alice.userId] })).presence[0]).toMatchObject({ online: false, status: 'offline' });
    expect((await alice.ok('presence:get', { userIds: [alice.userId] })).presence[0]).toMatchObject({ online: true, status: 'invisible' });
    expect(await alice.call('presence:set-status', { status: 'busy' } as never)).toMatchObject({ ok: false, error: { code: 'validation' } });
  });

  it('shows the users of a SIGKILLed node offline within the bound, except those who reconnected elsewhere', async () => {
    const survivor = await node({ NODE_ID: 'survivor', PRESENCE_NODE_TTL_MS: '2000' });
    const doomed = await spawnNode(testEnv({ NODE_ID: `doomed-${Date.now()}`, PRESENCE_NODE_TTL_MS: '2000' }));
    onTestFinished(() => doomed.kill('SIGKILL'));
    const watcher = await device(survivor.url, uniqueUser('watcher'));
    const ghost = await device(doomed.url, uniqueUser('ghost'));
    const mover = await device(doomed.url, uniqueUser('mover'));
    await watcher.ok('conversation:open-direct', { userId: ghost.userId });
    await watcher.ok('conversation:open-direct', { userId: mover.userId });
    await device(survivor.url, mover.userId); // mover's second device, on the surviving node

    const killedAt = Date.now();
    doomed.kill('SIGKILL');
    await doomed.exited;
    await eventually(() => expect(lastPresence(watcher, ghost.userId)).toMatchObject({ online: false }), { timeoutMs: 8000 });
    const boundMs = 2000 + 500 + 1500; // TTL + one reaping interval + scheduling slack
    expect(Date.now() - killedAt).toBeLessThan(boundMs);
    expect((await watcher.ok('presence:get', { userIds: [mover.userId] })).presence[0]).toMatchObject({ online: true });
    expect(watcher.of('presence:updated').filter((p) => p.userId === mover.userId && !p.online)).toEqual([]);
  });
});

describe('rate limits', () => {
  it('share one budget per user and class across nodes, answer rate_limited with retryAfterMs, and disconnect flooders', async () => {
    const limits = { RATE_LIMITS: 'true', RATE_LIMIT_MESSAGE: '3/10s', RATE_LIMIT_FLOOD_DISCONNECT: '5', RATE_LIMIT_SYNC_MS: '20' };
    const [a, b] = [await node({ ...limits, NODE_ID: 'ra' }), await node({ ...limits, NODE_ID: 'rb' })];
    const userId = uniqueUser('sender');
    const onA = await device(a.url, userId);
    const onB = await device(b.url, userId);
    const peer = await device(b.url, uniqueUser('peer'));
    const { conversation } = await onA.ok('conversation:open-direct', { userId: peer.userId });
    const send = (d: Device) => d.call('message:send', { conversationId: conversation.id, clientMsgId: clientMsgId(), body: 'hi' });

    expect((await send(onA)).ok).toBe(true);
    expect((await send(onA)).ok).toBe(true);
    // Node B has not heard this budget yet: it grants one send on trust, then waits for the shared
    // level (SyncedRateLimiter), which node A's two sends and its own leave at 0.
    expect((await send(onB)).ok).toBe(true);
    const refused = await send(onB);
    expect(refused).toMatchObject({ ok: false, error: { code: 'rate_limited', retryable: true, retryAfterMs: expect.any(Number) } });
    expect(!refused.ok && refused.error.retryAfterMs).toBeGreaterThan(0);
    expect((await peer.call('message:send', { conversationId: conversation.id, clientMsgId: clientMsgId(), body: 'my own budget' })).ok).toBe(true);

    let ended: unknown;
    const ending = new Promise((resolve) =>
      onA.socket.once('session:ending', (event) => {
        ended = event;
        resolve(event);
      }),
    );
    // Node A last heard the shared level before B's send, so it may grant one more before it hears
    // the debt (the documented k−1 overshoot); then five refusals disconnect the flooder.
    for (let i = 0; i < 7 && ended === undefined; i++) await send(onA);
    expect(await ending).toMatchObject({ reason: 'rate_limited' });
    await eventually(() => expect(onA.socket.connected).toBe(false));
    const metrics = (await a.app.inject({ url: '/metrics' })).body;
    expect(metrics).toMatch(/^chat_flood_disconnects_total\{node="ra"\} 1$/m);
  });

  it('limits REST per address with the same error shape', async () => {
    const n = await node({ REST_RATE_LIMIT_PER_MINUTE: '3', REDIS_KEY_PREFIX: `${testEnv()['REDIS_KEY_PREFIX']}rl-${Date.now()}:` });
    const headers = { authorization: `Bearer ${signToken({ sub: uniqueUser('rest') })}` };
    for (let i = 0; i < 3; i++) expect((await n.app.inject({ url: '/v1/conversations', headers })).statusCode).toBe(200);
    const limited = await n.app.inject({ url: '/v1/conversations', headers });
    expect(limited.statusCode).toBe(429);
    expect(limited.json()).toMatchObject({ ok: false, error: { code: 'rate_limited', retryable: true, retryAfterMs: expect.any(Number) } });
    expect((await n.app.inject({ url: '/healthz' })).statusCode).toBe(200);
    // Behind a trusted (here: loopback) proxy each client address has its own budget.
    const viaProxy = await n.app.inject({ url: '/v1/conversations', headers: { ...headers, 'x-forwarded-for': '203.0.113.7' } });
    expect(viaProxy.statusCode).toBe(200);
  });
});

describe('the Redis bus', () => {
  it('fans out across nodes with the sharded adapter (SSUBSCRIBE/SPUBLISH)', async () => {
    const [a, b] = [await node({ REDIS_ADAPTER: 'sharded' }), await node({ REDIS_ADAPTER: 'sharded' })];
    const alice = await device(a.url, uniqueUser('alice'));
    const bob = await device(b.url, uniqueUser('bob'));
    const { conversation } = await alice.ok('conversation:open-direct', { userId: bob.userId });
    const { message } = await alice.ok('message:send', { conversationId: conversation.id, clientMsgId: clientMsgId(), body: 'sharded' });
    await eventually(() => expect(bob.of('message:new').map((m) => m.id)).toEqual([message.id]));
  });

  it('survives a Redis restart: local sockets keep being served, readiness reflects it, the bus comes back', async () => {
    const redis = await startPrivateRedis();
    onTestFinished(() => redis.destroy());
    const env = { REDIS_URL: redis.url };
    const [a, b] = [await node({ ...env, NODE_ID: 'outage-a' }), await node({ ...env, NODE_ID: 'outage-b' })];
    const alice = await device(a.url, uniqueUser('alice'));
    const bob = await device(b.url, uniqueUser('bob'));
    const carol = await device(a.url, uniqueUser('carol'));
    const toBob = (await alice.ok('conversation:open-direct', { userId: bob.userId })).conversation.id;
    const toCarol = (await alice.ok('conversation:open-direct', { userId: carol.userId })).conversation.id;

    await redis.stop();
    await eventually(async () => expect((await a.app.inject({ url: '/readyz' })).statusCode).toBe(503), { timeoutMs: 5000 });
    // PostgreSQL still takes the write, and same-node delivery needs no Redis.
    const { message: local } = await alice.ok('message:send', { conversationId: toCarol, clientMsgId: clientMsgId(), body: 'during the outage' });
    await eventually(() => expect(carol.of('message:new').map((m) => m.id)).toEqual([local.id]));
    expect((await alice.call('message:send', { conversationId: toBob, clientMsgId: clientMsgId(), body: 'stored, bus down' })).ok).toBe(true);
    // The fan-out that could not be published is counted and logged, never thrown.
    await eventually(async () => expect((await a.app.inject({ url: '/metrics' })).body).toMatch(/^chat_cluster_publish_failures_total\{node="outage-a"\} [1-9]/m), { timeoutMs: 10_000 });

    await redis.start();
    await eventually(async () => expect((await a.app.inject({ url: '/readyz' })).statusCode).toBe(200), { timeoutMs: 10_000 });
    await eventually(async () => expect((await b.app.inject({ url: '/readyz' })).statusCode).toBe(200), { timeoutMs: 10_000 });
    // Subscriptions are restored: cross-node fan-out works again.
    await eventually(
      async () => {
        const { message } = await alice.ok('message:send', { conversationId: toBob, clientMsgId: clientMsgId(), body: 'after' });
        await eventually(() => expect(bob.of('message:new').map((m) => m.id)).toContain(message.id), { timeoutMs: 1000 });
      },
      { timeoutMs: 10_000, intervalMs: 200 },
    );
  });
});
