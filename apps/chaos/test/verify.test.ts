import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { startPrivateRedisCluster, type PrivateRedisCluster } from '@chat/testkit/services';
import { eventually } from '@chat/testkit/eventually';
import { startNode, type TestNode } from '@chat/testkit/nodes';
import { connectDevice, uniqueUser, type Device } from '@chat/testkit/users';
import { checkDatabase, countKeys, hashLength, keysPerMaster, pickFailoverVictim, presenceMismatch, stateKeys, type RedisTarget } from '../src/verify.ts';

let node: TestNode;
beforeAll(async () => {
  node = await startNode();
});
afterAll(() => node?.close());

// The chaos run's PostgreSQL check must see each way a message can go wrong, not only pass.
describe('checkDatabase', () => {
  it('finds acked messages that are missing, moved, stored twice, and conversations with a seq gap', async () => {
    const alice = await connectDevice(node.url, uniqueUser('alice'));
    const bob = await connectDevice(node.url, uniqueUser('bob'));
    try {
      const { conversation } = await alice.ok('conversation:open-direct', { userId: bob.userId });
      const sent = [];
      for (let i = 0; i < 3; i++) sent.push((await alice.ok('message:send', { conversationId: conversation.id, clientMsgId: `verify-${Date.now()}-${i}`, body: `body ${i}` })).message);
      const acked = sent.map((message) => [message.conversationId, message.seq, message.id] as [string, number, string]);

      const clean = await checkDatabase(inject('databaseUrl'), acked);
      expect(clean).toMatchObject({ acked: 3, missing: 0, mismatched: 0, duplicateRows: 0, conversations: 1, gappy: 0 });

      const broken = await checkDatabase(inject('databaseUrl'), [...acked.slice(0, 2), [conversation.id, sent[2]!.seq + 1, sent[2]!.id], [conversation.id, 99, randomUUID()]]);
      expect(broken).toMatchObject({ acked: 4, missing: 1, mismatched: 1, gappy: 0 });

      const db = new pg.Client({ connectionString: inject('databaseUrl') });
      await db.connect();
      try {
        // The same send stored twice (another clientMsgId, the same body), then a seq skipped.
        await db.query(
          `INSERT INTO messages (id, conversation_id, seq, version, sender_id, client_msg_id, kind, body)
           SELECT gen_random_uuid(), conversation_id, seq + 1, version + 1, sender_id, client_msg_id || '-again', kind, body FROM messages WHERE id = $1`,
          [sent[2]!.id],
        );
        await db.query('UPDATE conversations SET last_seq = last_seq + 2 WHERE id = $1', [conversation.id]);
        const tampered = await checkDatabase(inject('databaseUrl'), acked);
        expect(tampered).toMatchObject({ missing: 0, duplicateRows: 1, gappy: 1 });
      } finally {
        await db.end();
      }
    } finally {
      alice.close();
      bob.close();
    }
  });
});

/**
 * Users with a device each on `n`, half of them typing in a conversation with the next: presence and
 * typing state for the harness's looks to find.
 */
async function populate(n: TestNode, users: number): Promise<Device[]> {
  const devices = await Promise.all(Array.from({ length: users }, (_, i) => connectDevice(n.url, uniqueUser(`chaos-keys-${i}`))));
  onTestFinished(() => {
    for (const d of devices) d.close();
  });
  for (const [i, d] of devices.entries()) {
    if (i % 2 === 1) continue;
    const { conversation } = await d.ok('conversation:open-direct', { userId: devices[i + 1]!.userId });
    await d.ok('typing:set', { conversationId: conversation.id, typing: true });
  }
  return devices;
}

/** The harness's looks find what a node wrote: its index = its sockets, one `conns` per user, typing sets. */
async function expectLooksFind(target: RedisTarget, n: TestNode, devices: Device[]): Promise<void> {
  const keys = stateKeys(n.app.config.redis!.keyPrefix);
  const sockets = () => n.app.io.of('/').sockets.size;
  await eventually(async () => {
    expect(await hashLength(target, keys.node(n.app.nodeId))).toBe(sockets());
    expect(await presenceMismatch(target, keys, [{ id: n.app.nodeId, sockets: sockets() }])).toMatchObject({ off: 0 });
    expect(await countKeys(target, keys.typing)).toBe(devices.length / 2);
  });
  expect(sockets()).toBeGreaterThanOrEqual(devices.length);
  expect(await countKeys(target, keys.conns)).toBeGreaterThanOrEqual(devices.length);
  // A missing entry (one socket more than Redis holds) counts twice: the node's index and all conns.
  expect(await presenceMismatch(target, keys, [{ id: n.app.nodeId, sockets: sockets() + 1 }])).toMatchObject({ off: 2 });
}

// The chaos harness reads the nodes' state keys directly: its names must be the server's.
describe("the chaos harness's Redis looks", () => {
  it('find the presence and typing keys a node writes to a single Redis', async () => {
    const devices = await populate(node, 6);
    await expectLooksFind({ kind: 'single', url: inject('redisUrl') }, node, devices);
  });

  it('pick the master holding the most keys; the lowest port on a tie', () => {
    expect(
      pickFailoverVictim(
        new Map([
          [7001, 10],
          [7002, 31],
          [7003, 30],
        ]),
      ),
    ).toBe(7002);
    expect(
      pickFailoverVictim(
        new Map([
          [7003, 5],
          [7001, 5],
          [7002, 4],
        ]),
      ),
    ).toBe(7001);
    expect(() => pickFailoverVictim(new Map())).toThrow();
  });

  describe('on a Redis Cluster', () => {
    let redis: PrivateRedisCluster;
    beforeAll(async () => {
      redis = await startPrivateRedisCluster();
    });
    afterAll(() => redis?.destroy());

    it("scan every master and route hash lengths to the key's master", async () => {
      const prefix = `chaos-verify-${Date.now().toString(36)}:`;
      const clustered = await startNode({ REDIS_URL: undefined, REDIS_CLUSTER_NODES: redis.nodes, REDIS_KEY_PREFIX: prefix });
      onTestFinished(() => clustered.close());
      const devices = await populate(clustered, 24);
      const target: RedisTarget = { kind: 'cluster', nodes: redis.nodes };
      await expectLooksFind(target, clustered, devices);

      const keys = stateKeys(prefix);
      const counts = await keysPerMaster(
        (await redis.masters()).map((master) => master.port),
        keys.presence,
      );
      expect(counts.size).toBe(3);
      // 24 users' keys over 3 masters: each holds some, and together all the cluster-wide count.
      for (const [port, count] of counts) expect(count, `presence keys on :${port}`).toBeGreaterThan(0);
      expect([...counts.values()].reduce((sum, count) => sum + count, 0)).toBe(await countKeys(target, keys.presence));
      expect(counts.get(pickFailoverVictim(counts))).toBe(Math.max(...counts.values()));
    });
  });
});
