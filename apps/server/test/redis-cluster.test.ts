// Nodes on a real Redis Cluster (3 masters + 3 replicas from the redis-server binary, private to
// this file): cross-node delivery, presence and typing; state spread over the masters; a master
// SIGKILLed under traffic; and the start-up check of REDIS_CLUSTER_NODES.
import calculateSlot from 'cluster-key-slot';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort } from '@chat/testkit/cluster';
import { startPrivateRedisCluster, type PrivateRedisCluster } from '@chat/testkit/services';
import { eventually } from '@chat/testkit/eventually';
import { spawnNode, testEnv, testNode, type TestNode } from '@chat/testkit/nodes';
import { testDevice, uniqueUser } from '@chat/testkit/users';

let redis: PrivateRedisCluster;
let counter = 0;
const clientMsgId = () => `rc-${Date.now().toString(36)}-${++counter}`;

beforeAll(async () => {
  redis = await startPrivateRedisCluster();
});
afterAll(async () => {
  await redis?.destroy();
});

/** A node of this file's Redis Cluster (REDIS_URL unset). */
function node(overrides: Record<string, string> = {}): Promise<TestNode> {
  return testNode({ REDIS_URL: undefined, REDIS_CLUSTER_NODES: redis.nodes, ...overrides });
}
const device = testDevice;

/** A node's routed fan-out frames received from other nodes so far. */
async function framesReceived(n: TestNode): Promise<number> {
  const text = (await n.app.inject({ url: '/metrics' })).body;
  return [...text.matchAll(/^chat_fanout_frames_total\{[^}]*direction="received"[^}]*\} (\S+)$/gm)].reduce((sum, match) => sum + Number(match[1]), 0);
}

/** How many keys under `prefix` each master holds, by port. */
async function keysPerMaster(prefix: string): Promise<Map<number, number>> {
  const counts = new Map<number, number>();
  for (const { port } of await redis.masters()) {
    const client = new Redis({ port, host: '127.0.0.1' });
    let count = 0;
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      count += keys.length;
      cursor = next;
    } while (cursor !== '0');
    client.disconnect();
    counts.set(port, count);
  }
  return counts;
}

describe('nodes on a Redis Cluster', () => {
  it('deliver across nodes in order, to the nodes that hold a recipient only; presence and typing cross nodes', async () => {
    const [a, b, c] = [await node({ NODE_ID: 'rc-a' }), await node({ NODE_ID: 'rc-b' }), await node({ NODE_ID: 'rc-c' })];
    const alice = await device(a.url, uniqueUser('alice'));
    const bob = await device(b.url, uniqueUser('bob'));
    const { conversation } = await alice.ok('conversation:open-direct', { userId: bob.userId });
    await eventually(async () => expect((await alice.ok('presence:get', { userIds: [bob.userId] })).presence[0]).toMatchObject({ online: true }));

    const idle = await framesReceived(c);
    const sent: string[] = [];
    for (let i = 0; i < 30; i++) sent.push((await alice.ok('message:send', { conversationId: conversation.id, clientMsgId: clientMsgId(), body: `m${i}` })).message.id);
    await eventually(() => expect(bob.of('message:new').map((m) => m.id)).toEqual(sent));
    expect(await framesReceived(c), 'a node holding no recipient receives nothing').toBe(idle);

    // A group spanning all three nodes.
    const carol = await device(c.url, uniqueUser('carol'));
    const group = (await alice.ok('conversation:create-group', { title: 'three nodes', memberIds: [bob.userId, carol.userId] })).conversation;
    const { message } = await carol.ok('message:send', { conversationId: group.id, clientMsgId: clientMsgId(), body: 'from c' });
    await eventually(() => {
      expect(alice.of('message:new').map((m) => m.id)).toContain(message.id);
      expect(bob.of('message:new').map((m) => m.id)).toContain(message.id);
    });

    await bob.ok('typing:set', { conversationId: conversation.id, typing: true });
    await eventually(() => expect(alice.of('typing:updated')).toContainEqual({ conversationId: conversation.id, userId: bob.userId, typing: true }));
    expect((await alice.ok('typing:list', { conversationId: conversation.id })).userIds).toEqual([bob.userId]);

    bob.close();
    await eventually(() =>
      expect(
        alice
          .of('presence:updated')
          .filter((p) => p.userId === bob.userId)
          .at(-1),
      ).toMatchObject({ online: false }),
    );
  });

  it('spreads presence, typing and rate-limit state over every master', async () => {
    const prefix = `spread-${Date.now().toString(36)}:`;
    const a = await node({ REDIS_KEY_PREFIX: prefix, RATE_LIMITS: 'true' });
    const users = await Promise.all(Array.from({ length: 24 }, (_, i) => device(a.url, uniqueUser(`u${i}`))));
    for (const [i, user] of users.entries()) {
      const { conversation } = await user.ok('conversation:open-direct', { userId: users[(i + 1) % users.length]!.userId });
      await user.ok('typing:set', { conversationId: conversation.id, typing: true });
    }
    // Rate-limit spending is settled within RATE_LIMIT_SYNC_MS.
    await eventually(async () => {
      const counts = await keysPerMaster(prefix);
      expect(counts.size).toBe(3);
      for (const [port, count] of counts) expect(count, `keys on the master at ${port}`).toBeGreaterThan(10);
    });
  });

  it('survives a master SIGKILL under traffic: readiness dips and recovers, sends never fail as internal, nothing acked is lost, no ghost presence', async () => {
    const prefix = `failover-${Date.now().toString(36)}:`;
    const [a, b] = [await node({ REDIS_KEY_PREFIX: prefix, NODE_ID: 'fo-a' }), await node({ REDIS_KEY_PREFIX: prefix, NODE_ID: 'fo-b' })];
    const senders = await Promise.all(Array.from({ length: 4 }, (_, i) => device(a.url, uniqueUser(`sender${i}`))));
    const readers = await Promise.all(senders.map((_, i) => device(b.url, uniqueUser(`reader${i}`))));
    const conversations = await Promise.all(senders.map(async (sender, i) => (await sender.ok('conversation:open-direct', { userId: readers[i]!.userId })).conversation.id));
    // The master holding the most presence keys.
    const counts = await keysPerMaster(`${prefix}state:presence:`);
    const [victim] = [...counts].sort((x, y) => y[1] - x[1])[0]!;
    // Users whose presence lives on that master, so their disconnects during its outage are refused.
    const victimSlots = (await redis.masters()).find((master) => master.port === victim)!.slots;
    const onVictim = (userId: string) => {
      const slot = calculateSlot(`${prefix}state:presence:conns:{${userId}}`);
      return victimSlots.some(([from, to]) => slot >= from && slot <= to);
    };
    const leaverIds: string[] = [];
    while (leaverIds.length < 10) {
      const candidate = uniqueUser('leaver');
      if (onVictim(candidate)) leaverIds.push(candidate);
    }
    const leavers = await Promise.all(leaverIds.map((userId) => device(b.url, userId)));
    // Contacts of senders[0], who asks for their presence at the end.
    await Promise.all(leavers.map((leaver) => leaver.ok('conversation:open-direct', { userId: senders[0]!.userId })));

    const acked: string[][] = conversations.map(() => []);
    const refusals: string[] = [];
    let sending = true;
    const traffic = senders.map(async (sender, i) => {
      while (sending) {
        const ack = await sender.call('message:send', { conversationId: conversations[i]!, clientMsgId: clientMsgId(), body: 'during' });
        if (ack.ok) acked[i]!.push(ack.message.id);
        else refusals.push(ack.error.code);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    });
    // Reads of cluster state during the failover: answered, or refused as retryable.
    const stateRefusals: string[] = [];
    const reads = (async () => {
      while (sending) {
        const ack = await senders[1]!.call('presence:get', { userIds: [readers[1]!.userId] });
        if (!ack.ok) stateRefusals.push(ack.error.code);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    const readiness: number[] = [];
    let probing = true;
    const probe = (async () => {
      while (probing) {
        readiness.push((await a.app.inject({ url: '/readyz' })).statusCode);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();

    await new Promise((resolve) => setTimeout(resolve, 300));
    // Half the leavers go just before the kill, half while the master is down. Its replica is held
    // back for longer than the client's retries last (as a production cluster-node-timeout of 15 s
    // would), so writes to the lost slots are refused, not merely delayed.
    for (const leaver of leavers.slice(0, 5)) leaver.close();
    const [replica] = await redis.replicasOf(victim);
    redis.pause(replica!);
    await redis.kill(victim);
    for (const leaver of leavers.slice(5)) leaver.close();
    await new Promise((resolve) => setTimeout(resolve, 5000));
    redis.resume(replica!);
    await redis.waitHealthy();
    await eventually(async () => expect((await a.app.inject({ url: '/readyz' })).statusCode).toBe(200), { timeoutMs: 15_000 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    sending = false;
    probing = false;
    await Promise.all([...traffic, probe, reads]);

    expect(readiness, 'readiness turned 503 during the failover').toContain(503);
    expect(
      refusals.filter((code) => code !== 'unavailable'),
      'sends refused with anything but unavailable',
    ).toEqual([]);
    expect(
      stateRefusals.filter((code) => code !== 'unavailable'),
      'presence reads refused with anything but unavailable',
    ).toEqual([]);
    expect(acked.flat().length).toBeGreaterThan(20);
    // Every acknowledged message is in the conversation's history, in order.
    for (const [i, reader] of readers.entries()) {
      const stored: Array<{ id: string; seq: number }> = [];
      for (let after = 0, more = true; more; ) {
        const page = await reader.ok('history:fetch', { conversationId: conversations[i]!, after, limit: 100 });
        stored.push(...page.messages);
        after = Math.max(after, ...page.messages.map((m) => m.seq));
        more = page.hasMore;
      }
      const ids = stored.toSorted((x, y) => x.seq - y.seq).map((m) => m.id);
      expect(ids.filter((id) => acked[i]!.includes(id))).toEqual(acked[i]);
    }
    // After the failover the bus carries messages again, and presence has no ghost: every leaver is
    // offline, every connected user online.
    await eventually(
      async () => {
        const { message } = await senders[0]!.ok('message:send', { conversationId: conversations[0]!, clientMsgId: clientMsgId(), body: 'after' });
        await eventually(() => expect(readers[0]!.of('message:new').map((m) => m.id)).toContain(message.id), { timeoutMs: 1000 });
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );
    await eventually(
      async () => {
        const views = (await senders[0]!.ok('presence:get', { userIds: [...leavers.map((l) => l.userId), readers[0]!.userId] })).presence;
        expect(views).toHaveLength(leavers.length + 1);
        expect(views.filter((view) => view.online).map((view) => view.userId)).toEqual([readers[0]!.userId]);
      },
      { timeoutMs: 15_000, intervalMs: 250 },
    );
    await redis.start(victim);
    await redis.waitHealthy();
  });
});

describe('REDIS_CLUSTER_NODES checked at start', () => {
  const exitsWith = async (nodes: string) => {
    const spawned = spawnNode(testEnv({ REDIS_URL: undefined, REDIS_CLUSTER_NODES: nodes }));
    const error = (await spawned.then(
      (started) => {
        started.kill('SIGKILL');
        throw new Error('the node started');
      },
      (failure: Error) => failure,
    )) as Error;
    return error.message;
  };

  const standalone = new URL(inject('redisUrl')).host;
  it.each([
    ['unreachable', async () => `127.0.0.1:${await freePort()}`, /REDIS_CLUSTER_NODES: no seed node answers/],
    ['a standalone Redis', async () => standalone, /REDIS_CLUSTER_NODES: expected nodes of one Redis Cluster, but \S+ is a standalone Redis/],
    ['a cluster and a standalone node', async () => `${redis.nodes.split(',')[0]},${standalone}`, /is a standalone Redis/],
  ])('stops a node given %s with one line and exit 78', async (_, nodes, line) => {
    const message = await exitsWith(await nodes());
    expect(message).toMatch(/node exited with 78 before listening/);
    const stderr = message.slice(message.indexOf('stderr: ') + 'stderr: '.length);
    expect(stderr).toMatch(line);
    expect(stderr.trim().split('\n')).toHaveLength(1);
  });
});
