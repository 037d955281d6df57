import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ChatClient } from '@chat/client';
import type { SessionEnding } from '@chat/protocol';
import { createSigner } from 'fast-jwt';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { startPrivateRedisCluster } from '@chat/testkit/services';
import { eventually } from '@chat/testkit/eventually';
import { connectError, spawnNode, startNode, testEnv, testNode, type TestNode } from '@chat/testkit/nodes';
import { signToken, TEST_JWT_SECRET } from '@chat/testkit/tokens';
import { connectDevice, uniqueUser, type Device } from '@chat/testkit/users';

/**
 * The admin API's user routes across two nodes (in-process, real Redis and PostgreSQL): a lookup sees
 * each device on the node that holds it with its own transport, a disconnect ends every session with
 * its reason, and a revocation refuses the old tokens on every node, on sockets and REST, including a
 * node started after it.
 */
const ADMIN_KEY = `admin-secret-${randomUUID()}`;
const ENV = { ADMIN_API_KEYS: `ops:${ADMIN_KEY}` };

let a: TestNode;
let b: TestNode;

beforeAll(async () => {
  a = await startNode({ ...ENV, NODE_ID: `users-a-${randomUUID().slice(0, 6)}` });
  b = await startNode({ ...ENV, NODE_ID: `users-b-${randomUUID().slice(0, 6)}` });
});
afterAll(async () => {
  await a?.close();
  await b?.close();
});

/** An admin route's JSON answer; the assertions read its fields by shape. */
// biome-ignore lint/suspicious/noExplicitAny: several routes' bodies, read field by field by toMatchObject-style assertions
type AdminAnswer = Record<string, any>;

async function admin(node: TestNode, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; json: AdminAnswer }> {
  const response = await fetch(`${node.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  return { status: response.status, json: (await response.json()) as AdminAnswer };
}

/** Resolves with the `session:ending` the device got and Socket.IO's disconnect reason. */
function ended(device: Device): Promise<{ ending: SessionEnding | undefined; reason: string }> {
  return new Promise((resolve) => {
    let ending: SessionEnding | undefined;
    device.socket.on('session:ending', (payload) => (ending = payload));
    device.socket.once('disconnect', (reason) => resolve({ ending, reason }));
  });
}

async function restCode(node: TestNode, token: string): Promise<{ status: number; code: string | undefined }> {
  const response = await fetch(`${node.url}/v1/conversations`, { headers: { authorization: `Bearer ${token}` } });
  const body = (await response.json()) as { error?: { code: string } };
  return { status: response.status, code: body.error?.code };
}

describe('admin API: users', () => {
  it("shows a user's devices on both nodes with their node and transport, presence and memberships", async () => {
    const userId = uniqueUser('admin-lookup');
    const onA = await connectDevice(a.url, userId, { transports: ['websocket'] });
    const onB = await connectDevice(b.url, userId, { transports: ['polling'] });
    const friend = await connectDevice(a.url, uniqueUser('admin-friend'));
    try {
      await onA.ok('conversation:create-group', { title: 'ops', memberIds: [friend.userId] });
      for (const node of [a, b]) {
        const { status, json } = await admin(node, 'GET', `/v1/admin/users/${encodeURIComponent(userId)}`);
        expect(status).toBe(200);
        expect(json).toEqual({
          ok: true,
          user: {
            id: userId,
            displayName: userId,
            status: 'online',
            lastSeenAt: null,
            conversations: 1,
            revokedBefore: null,
            devices: expect.any(Array),
          },
        });
        const devices = json['user'].devices as Array<Record<string, unknown>>;
        expect(devices).toHaveLength(2);
        expect(devices).toContainEqual({ connectionId: onA.socket.id, nodeId: a.app.nodeId, transport: 'websocket', connectedAt: expect.any(String), address: '127.0.0.1' });
        expect(devices).toContainEqual({ connectionId: onB.socket.id, nodeId: b.app.nodeId, transport: 'polling', connectedAt: expect.any(String), address: '127.0.0.1' });
        for (const device of devices) expect(Math.abs(Date.parse(device['connectedAt'] as string) - Date.now())).toBeLessThan(60_000);
      }
    } finally {
      onA.close();
      onB.close();
      friend.close();
    }
  });

  it("answers 404 not_found for a user that never connected, and validation for an id outside the protocol's pattern", async () => {
    const missing = await admin(a, 'GET', `/v1/admin/users/${uniqueUser('nobody')}`);
    expect([missing.status, missing.json['error']?.code]).toEqual([404, 'not_found']);
    const bad = await admin(a, 'GET', `/v1/admin/users/${encodeURIComponent('no spaces{}')}`);
    expect([bad.status, bad.json['error']?.code]).toEqual([400, 'validation']);
    const badBody = await admin(a, 'POST', `/v1/admin/users/${uniqueUser('x')}/disconnect`, { revoke: 'yes' });
    expect([badBody.status, badBody.json['error']?.code]).toEqual([400, 'validation']);
  });

  it('disconnects every device on every node with disconnected_by_admin; the token stays valid', async () => {
    const userId = uniqueUser('admin-kick');
    const onA = await connectDevice(a.url, userId, { transports: ['websocket'] });
    const onB = await connectDevice(b.url, userId, { transports: ['polling'] });
    const endings = [ended(onA), ended(onB)];
    const { status, json } = await admin(b, 'POST', `/v1/admin/users/${userId}/disconnect`, {});
    expect([status, json]).toEqual([200, { ok: true, userId, disconnected: 2, revokedBefore: null }]);
    for (const end of await Promise.all(endings)) {
      expect(end).toEqual({ ending: { reason: 'disconnected_by_admin', message: expect.any(String) }, reason: 'io server disconnect' });
    }
    const again = await connectDevice(a.url, userId);
    again.close();
  });

  it('revokes: old tokens refused on both nodes (socket and REST) and on a node started later; a new token works', async () => {
    const userId = uniqueUser('admin-revoke');
    const oldToken = signToken({ sub: userId, name: userId });
    // Without iat it counts as issued at exp - JWT_MAX_LIFETIME_SECONDS: before the revocation.
    const noIat = createSigner({ key: TEST_JWT_SECRET, algorithm: 'HS256', noTimestamp: true })({ sub: userId, exp: Math.floor(Date.now() / 1000) + 3600 });
    const onA = await connectDevice(a.url, userId, { transports: ['websocket'] });
    const onB = await connectDevice(b.url, userId, { transports: ['polling'] });
    const endings = [ended(onA), ended(onB)];

    const before = Date.now();
    const { status, json } = await admin(a, 'POST', `/v1/admin/users/${userId}/disconnect`, { revoke: true });
    expect([status, json]).toEqual([200, { ok: true, userId, disconnected: 2, revokedBefore: expect.any(String) }]);
    const revokedBefore = Date.parse(json['revokedBefore'] as string);
    expect(revokedBefore).toBeGreaterThanOrEqual(before - 5);
    for (const end of await Promise.all(endings)) {
      expect(end).toEqual({ ending: { reason: 'token_revoked', message: expect.any(String) }, reason: 'io server disconnect' });
    }

    // At once, on either node: the revocation was applied everywhere before the sockets were closed.
    for (const node of [a, b]) {
      for (const token of [oldToken, noIat]) {
        expect(await connectError(node.url, token)).toEqual({ code: 'token_revoked', message: expect.any(String), retryable: true });
        expect(await restCode(node, token)).toEqual({ status: 401, code: 'token_revoked' });
      }
      const lookup = await admin(node, 'GET', `/v1/admin/users/${userId}`);
      expect(lookup.json['user']).toMatchObject({ revokedBefore: json['revokedBefore'], devices: [] });
    }

    // A token issued after the revocation (iat in whole seconds, so from the next second on).
    await sleep(Math.max(0, Math.ceil(revokedBefore / 1000) * 1000 - Date.now()) + 10);
    const newToken = signToken({ sub: userId, name: userId });
    for (const node of [a, b]) expect(await restCode(node, newToken)).toEqual({ status: 200, code: undefined });
    const fresh = await connectDevice(b.url, userId);
    fresh.close();

    // A later revocation moves the instant forward.
    const later = await admin(b, 'POST', `/v1/admin/users/${userId}/disconnect`, { revoke: true });
    expect(Date.parse(later.json['revokedBefore'] as string)).toBeGreaterThan(revokedBefore);
    expect(await restCode(a, newToken)).toEqual({ status: 401, code: 'token_revoked' });

    // A fresh process on the same database, which never saw the notice, loads it at start.
    const spawned = await spawnNode(testEnv({ ...ENV, NODE_ID: `users-late-${randomUUID().slice(0, 6)}` }));
    try {
      expect(await connectError(spawned.url, oldToken)).toMatchObject({ code: 'token_revoked' });
      expect(await restCode({ url: spawned.url } as TestNode, oldToken)).toEqual({ status: 401, code: 'token_revoked' });
    } finally {
      spawned.kill();
      await spawned.exited;
    }
  }, 60_000);

  it('the SDK, told token_revoked, fetches a new token and comes back by itself', async () => {
    const userId = uniqueUser('admin-sdk');
    let tokens = 0;
    const client = new ChatClient({
      url: b.url,
      token: () => {
        tokens += 1;
        return signToken({ sub: userId, name: userId });
      },
      retry: { initialDelayMs: 100, maxDelayMs: 400 },
    });
    const disconnected: unknown[] = [];
    const connected: unknown[] = [];
    client.on('disconnected', (event) => disconnected.push(event));
    client.on('connected', (event) => connected.push(event));
    try {
      await client.connect();
      const { json } = await admin(a, 'POST', `/v1/admin/users/${userId}/disconnect`, { revoke: true });
      expect(json['disconnected']).toBe(1);
      // A token minted within the revocation's second is refused too; the SDK retries after a back-off.
      await eventually(() => expect(connected).toEqual([{ reconnect: false }, { reconnect: true }]), { timeoutMs: 10_000 });
      expect(disconnected[0]).toEqual({ reason: 'io server disconnect', willReconnect: true, ending: { reason: 'token_revoked', message: expect.any(String) } });
      expect(tokens).toBeGreaterThanOrEqual(2);
    } finally {
      client.close();
    }
  });

  it('a node that missed the notices enforces a revocation at its next reload, and closes the sessions it covers', async () => {
    const node = await testNode({ ...ENV, NODE_ID: `users-reload-${randomUUID().slice(0, 6)}`, TOKEN_REVOCATION_RELOAD_MS: '200' });
    const userId = uniqueUser('admin-missed');
    const token = signToken({ sub: userId, name: userId });
    const device = await connectDevice(node.url, userId);
    const end = ended(device);
    // Committed without a notice to any node, as if this one had missed it.
    await node.app.db.tokenRevocation.create({ data: { userId, revokedBefore: new Date() } });
    expect(await end).toEqual({ ending: { reason: 'token_revoked', message: expect.any(String) }, reason: 'io server disconnect' });
    expect(await restCode(node, token)).toEqual({ status: 401, code: 'token_revoked' });
  });
});

describe('admin API: users over a Redis Cluster (sharded pub/sub control channel)', () => {
  it('finds devices on two nodes and revokes on both', async () => {
    const redis = await startPrivateRedisCluster({ masters: 3, replicas: 0 });
    onTestFinished(() => redis.destroy());
    const clusterEnv = { ...ENV, REDIS_URL: undefined, REDIS_CLUSTER_NODES: redis.nodes };
    const [x, y] = [await testNode({ ...clusterEnv, NODE_ID: `rc-x-${randomUUID().slice(0, 6)}` }), await testNode({ ...clusterEnv, NODE_ID: `rc-y-${randomUUID().slice(0, 6)}` })];
    const userId = uniqueUser('admin-rc');
    const token = signToken({ sub: userId, name: userId });
    const onX = await connectDevice(x.url, userId, { transports: ['websocket'] });
    const onY = await connectDevice(y.url, userId, { transports: ['polling'] });
    const lookup = await admin(x, 'GET', `/v1/admin/users/${userId}`);
    expect(lookup.json['user'].devices.map((d: { nodeId: string; transport: string }) => [d.nodeId, d.transport]).sort()).toEqual(
      [
        [x.app.nodeId, 'websocket'],
        [y.app.nodeId, 'polling'],
      ].sort(),
    );
    const endings = [ended(onX), ended(onY)];
    const revoke = await admin(y, 'POST', `/v1/admin/users/${userId}/disconnect`, { revoke: true });
    expect(revoke.json).toMatchObject({ ok: true, disconnected: 2 });
    for (const end of await Promise.all(endings)) expect(end.ending?.reason).toBe('token_revoked');
    for (const node of [x, y]) expect(await connectError(node.url, token)).toMatchObject({ code: 'token_revoked' });
  }, 60_000);
});
