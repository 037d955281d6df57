// The operator's console over the nodes (GET /v1/admin/nodes, /v1/admin/nodes/history, POST
// /v1/admin/nodes/:id/drain) on real nodes: in-process ones on this run's Redis, a spawned process
// killed with SIGKILL, a node without Redis, and nodes on a private Redis Cluster.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { AdminNodeSample, AdminNodeStatus } from '@chat/protocol';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { startPrivateRedisCluster, type PrivateRedisCluster } from '@chat/testkit/services';
import serverPackage from '../package.json' with { type: 'json' };
import { MemoryNodeStatusStore, type NodeReport, type NodeStatusStore } from '../src/state/node-status.ts';
import { RedisNodeStatusStore } from '../src/state/node-status-redis.ts';
import { eventually } from '@chat/testkit/eventually';
import { spawnNode, testEnv, testNode, type TestNode } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { testDevice, uniqueUser } from '@chat/testkit/users';

const ADMIN_KEY = `admin-${randomUUID()}`;
// Dead nodes leave the list after 3 s; reports go every 1.5 s (twice per TTL).
const TTL_MS = 3000;
const env = (id: string, overrides: Record<string, string | undefined> = {}) => ({ NODE_ID: id, ADMIN_API_KEYS: `ops:${ADMIN_KEY}`, PRESENCE_NODE_TTL_MS: String(TTL_MS), ...overrides });
const nodeId = (name: string) => `${name}-${randomUUID().slice(0, 6)}`;
const clientMsgId = () => randomUUID();

async function admin<T>(node: { url: string }, path: string, method = 'GET'): Promise<{ status: number; body: T }> {
  const response = await fetch(`${node.url}${path}`, { method, headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  return { status: response.status, body: (await response.json()) as T };
}
const listed = async (node: { url: string }) => (await admin<{ ok: boolean; nodes: AdminNodeStatus[] }>(node, '/v1/admin/nodes')).body.nodes;
const ids = async (node: { url: string }) => (await listed(node)).map((n) => n.id);
const history = async (node: { url: string }) => (await admin<{ ok: boolean; intervalMs: number; nodes: Record<string, AdminNodeSample[]> }>(node, '/v1/admin/nodes/history')).body;

/** Two nodes, a group with a member on each, one message sent from `a`. */
async function twoNodesWithTraffic(overrides: Record<string, string | undefined> = {}) {
  const [idA, idB] = [nodeId('adm-a'), nodeId('adm-b')];
  const a = await testNode(env(idA, overrides));
  const b = await testNode(env(idB, overrides));
  const alice = await testDevice(a.url, uniqueUser('alice'));
  const bob = await testDevice(b.url, uniqueUser('bob'));
  const { conversation } = await alice.ok('conversation:create-group', { title: 'console', memberIds: [bob.userId] });
  const { message } = await alice.ok('message:send', { conversationId: conversation.id, clientMsgId: clientMsgId(), body: 'hello' });
  await eventually(() => expect(bob.of('message:new').map((m) => m.id)).toContain(message.id));
  return { a, b, idA, idB, alice, bob, conversation };
}

function expectSane(status: AdminNodeStatus, id: string): void {
  expect(status).toEqual({
    id,
    version: serverPackage.version,
    startedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    uptimeSeconds: expect.any(Number),
    ready: true,
    draining: false,
    sockets: 1,
    users: 1,
    eventLoopLagMs: expect.any(Number),
    heapUsedBytes: expect.any(Number),
    msgsInPerSecond: expect.any(Number),
    msgsOutPerSecond: expect.any(Number),
    ackP99Ms: expect.any(Number),
    lastHeartbeatAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
  });
  expect(status.uptimeSeconds).toBeGreaterThanOrEqual(0);
  expect(status.eventLoopLagMs).toBeGreaterThanOrEqual(0);
  expect(status.eventLoopLagMs).toBeLessThan(10_000);
  expect(status.heapUsedBytes).toBeGreaterThan(1_000_000);
  expect(Date.now() - Date.parse(status.lastHeartbeatAt)).toBeLessThan(TTL_MS + 1000);
  expect(Date.parse(status.startedAt)).toBeLessThanOrEqual(Date.now());
}

describe('GET /v1/admin/nodes on Redis', () => {
  it('lists every live node from any node, sorted by id, with its sockets, users and traffic', async () => {
    const { a, b, idA, idB, bob, conversation } = await twoNodesWithTraffic();
    const overRest = await fetch(`${b.url}/v1/conversations/${conversation.id}/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${signToken({ sub: bob.userId })}`, 'content-type': 'application/json' },
      body: JSON.stringify({ clientMsgId: clientMsgId(), body: 'over REST' }),
    });
    expect(overRest.status).toBe(201);
    for (const node of [a, b]) {
      await eventually(
        async () => {
          const nodes = (await listed(node)).filter((n) => n.id === idA || n.id === idB);
          expect(nodes.map((n) => n.id)).toEqual([idA, idB].sort());
          const [statusA, statusB] = [nodes.find((n) => n.id === idA)!, nodes.find((n) => n.id === idB)!];
          expectSane(statusA, idA);
          expectSane(statusB, idB);
        },
        { timeoutMs: 10_000 },
      );
    }
    const all = await listed(a);
    expect(all.map((n) => n.id)).toEqual([...all.map((n) => n.id)].sort());
    // The socket message: in and acked on a, out on both (a's fan-out, b's received frame); the REST one: in on b.
    await eventually(
      async () => {
        const samples = (await history(b)).nodes;
        expect(samples[idA]!.some((s) => s.msgsInPerSecond > 0 && s.ackP99Ms > 0 && s.msgsOutPerSecond > 0)).toBe(true);
        expect(samples[idB]!.some((s) => s.msgsInPerSecond > 0 && s.msgsOutPerSecond > 0)).toBe(true);
      },
      { timeoutMs: 10_000 },
    );
  });

  it('drops a node that stops at once, and a node that dies after the TTL, removing its entries', async () => {
    const a = await testNode(env(nodeId('adm-stay')));
    const stopping = await testNode(env(nodeId('adm-stop')));
    const dying = await spawnNode(testEnv(env(nodeId('adm-die'), { LOG_LEVEL: 'info' })));
    const dyingId = (await (await fetch(`${dying.url}/healthz`)).json()) as { node: string };
    try {
      await eventually(async () => expect(await ids(a)).toEqual(expect.arrayContaining([stopping.app.nodeId, dyingId.node])), { timeoutMs: 10_000 });
      await stopping.close();
      expect(await ids(a)).not.toContain(stopping.app.nodeId);

      const lastSeen = Date.parse((await listed(a)).find((n) => n.id === dyingId.node)!.lastHeartbeatAt);
      dying.kill('SIGKILL');
      await dying.exited;
      await eventually(async () => expect(await ids(a)).not.toContain(dyingId.node), { timeoutMs: TTL_MS + 5000 });
      // Listed until the TTL had passed since a heartbeat no earlier than the one seen before the kill (Redis and this process share a clock).
      expect(Date.now()).toBeGreaterThanOrEqual(lastSeen + TTL_MS - 5);
      // Cleaned up, not only hidden.
      const redis = new Redis(inject('redisUrl'));
      try {
        const prefix = `${testEnv()['REDIS_KEY_PREFIX']}admin:{~admin}`;
        expect(await redis.zscore(`${prefix}nodes`, dyingId.node)).toBeNull();
        expect(await redis.hget(`${prefix}status`, dyingId.node)).toBeNull();
        expect(await redis.exists(`${prefix}history:${dyingId.node}`)).toBe(0);
      } finally {
        redis.disconnect();
      }
    } finally {
      dying.kill('SIGKILL');
    }
  });
});

describe('GET /v1/admin/nodes/history', () => {
  it('accumulates one sample per interval for each live node, oldest first', async () => {
    const { a, idA, idB } = await twoNodesWithTraffic();
    await eventually(
      async () => {
        const { intervalMs, nodes } = await history(a);
        expect(intervalMs).toBe(TTL_MS / 2);
        for (const id of [idA, idB]) {
          const samples = nodes[id]!;
          expect(samples.length).toBeGreaterThanOrEqual(3);
          for (const [i, sample] of samples.entries()) {
            expect(sample).toEqual({ at: expect.any(Number), sockets: expect.any(Number), msgsInPerSecond: expect.any(Number), msgsOutPerSecond: expect.any(Number), ackP99Ms: expect.any(Number) });
            // One per tick of the node's timer: in order, never two at once (a loaded box delays ticks, so no spacing is asserted).
            if (i > 0) expect(sample.at).toBeGreaterThan(samples[i - 1]!.at);
          }
          expect(samples.at(-1)!.sockets).toBe(1);
        }
      },
      { timeoutMs: 15_000, intervalMs: 250 },
    );
  });

  const report = (id: string, sockets: number): NodeReport => ({
    id,
    version: '1',
    startedAt: new Date().toISOString(),
    uptimeSeconds: 1,
    ready: true,
    draining: false,
    sockets,
    users: 0,
    eventLoopLagMs: 0,
    heapUsedBytes: 0,
    msgsInPerSecond: 0,
    msgsOutPerSecond: 0,
    ackP99Ms: 0,
  });
  const stores: Array<[string, () => { store: NodeStatusStore; close(): void }]> = [
    ['memory', () => ({ store: new MemoryNodeStatusStore({ ttlMs: 60_000 }), close: () => {} })],
    [
      'Redis',
      () => {
        const redis = new Redis(inject('redisUrl'));
        return { store: new RedisNodeStatusStore(redis, { keyPrefix: `${inject('redisPrefix')}history-${randomUUID().slice(0, 8)}:`, ttlMs: 60_000 }), close: () => redis.disconnect() };
      },
    ],
  ];
  it.each(stores)('keeps at most 300 samples per node, the newest (%s store)', async (_name, make) => {
    const { store, close } = make();
    try {
      for (let i = 1; i <= 310; i++) await store.publish(report('capped', i));
      await store.publish(report('other', 1));
      const samples = await store.history();
      expect(samples['capped']!.map((s) => s.sockets)).toEqual(Array.from({ length: 300 }, (_, i) => i + 11));
      expect(samples['other']!.map((s) => s.sockets)).toEqual([1]);
      expect((await store.list()).map((s) => [s.id, s.sockets])).toEqual([
        ['capped', 310],
        ['other', 1],
      ]);
      await store.remove('capped');
      expect(Object.keys(await store.history())).toEqual(['other']);
    } finally {
      close();
    }
  });
});

describe('without Redis', () => {
  it('a node lists itself, with its history', async () => {
    const id = nodeId('adm-solo');
    const node = await testNode(env(id, { REDIS_URL: undefined }));
    expect(node.app.redis).toBeNull();
    await testDevice(node.url, uniqueUser('solo'));
    await eventually(async () => expectSane((await listed(node))[0]!, id), { timeoutMs: 10_000 });
    expect(await ids(node)).toEqual([id]);
    expect(Object.keys((await history(node)).nodes)).toEqual([id]);
  });
});

describe('POST /v1/admin/nodes/:id/drain', () => {
  it('drains another node through Redis (idempotent), or the node itself; unknown ids are not found', async () => {
    const a = await testNode(env(nodeId('adm-asker')));
    const b = await testNode(env(nodeId('adm-drained'), { DRAIN_DELAY_MS: '1000' }));
    const c = await testNode(env(nodeId('adm-self')));
    const bob = await testDevice(b.url, uniqueUser('bob'));
    const ending = new Promise((resolve) => bob.socket.once('session:ending', resolve));
    await eventually(async () => expect(await ids(a)).toEqual(expect.arrayContaining([b.app.nodeId, c.app.nodeId])), { timeoutMs: 10_000 });

    expect(await admin(a, `/v1/admin/nodes/${b.app.nodeId}/drain`, 'POST')).toEqual({ status: 202, body: { ok: true, node: b.app.nodeId, draining: true } });
    await eventually(() => expect(b.app.lifecycle.draining).toBe(true));
    expect(await admin(a, `/v1/admin/nodes/${b.app.nodeId}/drain`, 'POST')).toEqual({ status: 202, body: { ok: true, node: b.app.nodeId, draining: true } });
    await eventually(async () => expect((await listed(a)).find((n) => n.id === b.app.nodeId)).toMatchObject({ draining: true, ready: false }));
    expect(await ending).toEqual({ reason: 'server_draining', message: expect.any(String) });
    await eventually(async () => expect(await ids(a)).not.toContain(b.app.nodeId), { timeoutMs: 10_000 });
    expect((await admin<{ ok: false; error: { code: string } }>(a, `/v1/admin/nodes/${b.app.nodeId}/drain`, 'POST')).status).toBe(404);

    expect((await admin(c, `/v1/admin/nodes/${c.app.nodeId}/drain`, 'POST')).status).toBe(202);
    await eventually(async () => expect(await ids(a)).not.toContain(c.app.nodeId), { timeoutMs: 10_000 });

    expect(await admin(a, '/v1/admin/nodes/no-such-node/drain', 'POST')).toEqual({ status: 404, body: { ok: false, error: expect.objectContaining({ code: 'not_found' }) } });
    expect(await admin(a, `/v1/admin/nodes/${encodeURIComponent('{bad}')}/drain`, 'POST')).toEqual({ status: 400, body: { ok: false, error: expect.objectContaining({ code: 'validation' }) } });
    expect(a.app.lifecycle.draining).toBe(false);
  });
});

describe('on a Redis Cluster', () => {
  let redis: PrivateRedisCluster | undefined;
  afterAll(async () => {
    await redis?.destroy();
  });
  const clusterEnv = (id: string, overrides: Record<string, string> = {}) => env(id, { REDIS_URL: undefined, REDIS_CLUSTER_NODES: redis!.nodes, ...overrides });

  it('lists both nodes from either, and drains one through sharded pub/sub', async () => {
    redis = await startPrivateRedisCluster();
    const a: TestNode = await testNode(clusterEnv(nodeId('adm-rc-a')));
    const b: TestNode = await testNode(clusterEnv(nodeId('adm-rc-b')));
    await testDevice(a.url, uniqueUser('rc-alice'));
    await testDevice(b.url, uniqueUser('rc-bob'));
    for (const node of [a, b]) {
      await eventually(
        async () => {
          const nodes = await listed(node);
          expect(nodes.map((n) => n.id)).toEqual([a.app.nodeId, b.app.nodeId].sort());
          for (const status of nodes) expectSane(status, status.id);
        },
        { timeoutMs: 15_000 },
      );
    }
    await eventually(async () => expect(Object.keys((await history(a)).nodes).sort()).toEqual([a.app.nodeId, b.app.nodeId].sort()));

    expect((await admin(a, `/v1/admin/nodes/${b.app.nodeId}/drain`, 'POST')).status).toBe(202);
    await eventually(() => expect(b.app.lifecycle.draining).toBe(true));
    await eventually(async () => expect(await ids(a)).toEqual([a.app.nodeId]), { timeoutMs: 10_000 });
  }, 90_000);
});
