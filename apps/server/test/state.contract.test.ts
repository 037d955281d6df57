import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { eventually } from '@chat/testkit/eventually';
import { createStateStores, MemoryCallStore, MemoryPresenceStore, MemoryRateLimiter, MemoryTypingStore, type StateStores, type WentOffline } from '../src/state/index.ts';
import { CLOCK_SLACK_MS, id, NODE_TTL_MS, REDIS_URL, stateBackends } from './helpers/state-backends.ts';

// The presence, typing and rate-limit stores' contract, run against memory, one Redis and a Redis
// Cluster (calls: calls-state.contract.test.ts). The memory stores run on a clock the tests move.
const { memory, redis, redisCluster, redisClient, prefixOf } = stateBackends();

const node = (nodeId: string, userId: string, connectionId = id('conn')) => ({ nodeId, userId, connectionId });

describe.each([memory, redis, redisCluster])('state stores: $name', (backend) => {
  const { clock } = backend;
  describe('presence', () => {
    it('brings a user online with the first device and offline with the last', async () => {
      const [{ presence }] = backend.cluster(1) as [StateStores];
      const user = id('user');
      const phone = node('n1', user);
      const laptop = node('n1', user);

      expect(await presence.connect(phone)).toEqual({ cameOnline: true, status: 'online' });
      expect(await presence.connect(laptop)).toEqual({ cameOnline: false, status: 'online' });
      expect((await presence.connect(phone)).cameOnline).toBe(false);
      expect(await presence.get([user])).toEqual([{ userId: user, online: true, status: 'online', lastSeenAt: null }]);

      expect(await presence.disconnect(phone)).toEqual({ wentOffline: false, lastSeenAt: null, status: 'online' });
      const before = clock.now();
      const last = await presence.disconnect(laptop);
      expect(last.wentOffline).toBe(true);
      expect(last.lastSeenAt).toBeGreaterThanOrEqual(before - CLOCK_SLACK_MS);
      expect(last.lastSeenAt).toBeLessThanOrEqual(clock.now() + CLOCK_SLACK_MS);
      expect((await presence.disconnect(laptop)).wentOffline).toBe(false);
      expect(await presence.get([user])).toEqual([{ userId: user, online: false, status: 'offline', lastSeenAt: last.lastSeenAt }]);
    });

    it('keeps a user online while a device on another node remains', async () => {
      const [a, b] = backend.cluster(2) as [StateStores, StateStores];
      const user = id('user');
      const onA = node('node-a', user);
      const onB = node('node-b', user);

      expect((await a.presence.connect(onA)).cameOnline).toBe(true);
      expect((await b.presence.connect(onB)).cameOnline).toBe(false);
      // A node cannot remove a connection another node owns.
      expect((await a.presence.disconnect({ ...onB, nodeId: 'node-a' })).wentOffline).toBe(false);
      expect((await a.presence.disconnect(onA)).wentOffline).toBe(false);
      expect((await b.presence.get([user]))[0]?.online).toBe(true);
      expect((await b.presence.disconnect(onB)).wentOffline).toBe(true);
      expect((await a.presence.get([user]))[0]?.online).toBe(false);
      expect(await a.presence.get([id('never-seen')])).toEqual([expect.objectContaining({ online: false, status: 'offline', lastSeenAt: null })]);
    });

    it('orders a disconnect on one node and a connect on another: both transitions or neither', async () => {
      const [a, b] = backend.cluster(2) as [StateStores, StateStores];
      const users = Array.from({ length: 40 }, () => id('user'));
      const leaving = users.map((user) => node('node-a', user));
      await Promise.all(leaving.map((c) => a.presence.connect(c)));

      const outcomes = await Promise.all(
        users.map(async (user, i) => {
          const [left, joined] = await Promise.all([a.presence.disconnect(leaving[i]!), b.presence.connect(node('node-b', user))]);
          return { wentOffline: left.wentOffline, cameOnline: joined.cameOnline };
        }),
      );
      for (const outcome of outcomes) expect(outcome.wentOffline).toBe(outcome.cameOnline);
      expect((await a.presence.get(users)).every((view) => view.online)).toBe(true);
    });

    it('reaps a silent node within nodeTtlMs, sparing users connected on a live node', async () => {
      const [a, b] = backend.cluster(2) as [StateStores, StateStores];
      const [both, onlyA, moved] = [id('both'), id('only-a'), id('moved')];
      await a.presence.heartbeat('node-a');
      await b.presence.heartbeat('node-b');
      await a.presence.connect(node('node-a', both));
      await b.presence.connect(node('node-b', both));
      await a.presence.connect(node('node-a', onlyA));
      await a.presence.connect(node('node-a', moved));
      // A device of `moved` reconnected on node B before anyone reaped node A.
      await b.presence.connect(node('node-b', moved));
      const lastSignOfA = clock.now();

      expect((await b.presence.reapDeadNodes()).deadNodes).toEqual([]);

      const reported: WentOffline[] = [];
      const deadNodes: string[] = [];
      await clock.eventually(
        async () => {
          await b.presence.heartbeat('node-b');
          const reaped = await b.presence.reapDeadNodes();
          reported.push(...reaped.wentOffline);
          deadNodes.push(...reaped.deadNodes);
          expect(deadNodes).toEqual(['node-a']);
        },
        { timeoutMs: NODE_TTL_MS * 4, intervalMs: 20 },
      );
      const elapsed = clock.now() - lastSignOfA;
      expect(elapsed).toBeGreaterThanOrEqual(NODE_TTL_MS - CLOCK_SLACK_MS);
      expect(elapsed).toBeLessThanOrEqual(NODE_TTL_MS + 200);

      expect(reported.map((r) => r.userId)).toEqual([onlyA]);
      expect(reported[0]!.lastSeenAt).toBeGreaterThanOrEqual(lastSignOfA - 1000);
      expect(reported[0]!.lastSeenAt).toBeLessThanOrEqual(lastSignOfA + CLOCK_SLACK_MS);
      expect((await b.presence.get([both, onlyA, moved])).map((view) => view.online)).toEqual([true, false, true]);

      // Node A was only paused: its next heartbeat learns it must re-register its sockets, once.
      expect(await a.presence.heartbeat('node-a')).toEqual({ reaped: true });
      expect(await a.presence.heartbeat('node-a')).toEqual({ reaped: false });
      expect(await b.presence.heartbeat('node-b')).toEqual({ reaped: false });
    });

    it('clears what a previous process under the same node id left, before the new one serves', async () => {
      const [a, b] = backend.cluster(2) as [StateStores, StateStores];
      const nodeId = id('node');
      const [gone, elsewhere] = [id('gone'), id('elsewhere')];
      await a.presence.heartbeat(nodeId);
      await a.presence.connect(node(nodeId, gone));
      await a.presence.connect(node(nodeId, elsewhere));
      await b.presence.connect(node('node-b', elsewhere));
      // The process died and a new one starts under the same id, well within nodeTtlMs: a heartbeat
      // alone would adopt its predecessor's connections, which no socket holds any more.
      expect((await b.presence.reapNode(nodeId)).map((user) => user.userId)).toEqual([gone]);
      expect(await b.presence.get([gone, elsewhere])).toEqual([expect.objectContaining({ userId: gone, online: false }), expect.objectContaining({ userId: elsewhere, online: true })]);
      expect(await a.presence.reapNode(nodeId)).toEqual([]);
      // No tombstone: the new process's first heartbeat does not ask it to register its sockets again.
      expect(await a.presence.heartbeat(nodeId)).toEqual({ reaped: false });
      expect((await a.presence.connect(node(nodeId, gone))).cameOnline).toBe(true);
    });

    it('never reaps the node that reaps, however late its heartbeat', async () => {
      const [{ presence }] = backend.cluster(1) as [StateStores];
      const user = id('user');
      await presence.heartbeat('busy');
      await presence.connect(node('busy', user));
      await clock.advance(NODE_TTL_MS * 1.5);
      expect(await presence.reapDeadNodes({ spare: 'busy' })).toEqual({ deadNodes: [], wentOffline: [] });
      expect((await presence.get([user]))[0]!.online).toBe(true);
      expect((await presence.reapDeadNodes()).deadNodes).toEqual(['busy']);
    });

    it('reports each user of a dead node exactly once across concurrent reapers', async () => {
      const nodes = backend.cluster(4);
      const [dead, live] = nodes as [StateStores, StateStores];
      const goners = Array.from({ length: 30 }, () => id('goner'));
      const stayers = Array.from({ length: 5 }, () => id('stayer'));
      await live.presence.heartbeat('live');
      await Promise.all([
        ...goners.map((user) => dead.presence.connect(node('dead', user))),
        // Two devices on the dead node must still make one report.
        ...goners.slice(0, 10).map((user) => dead.presence.connect(node('dead', user))),
        ...stayers.flatMap((user) => [dead.presence.connect(node('dead', user)), live.presence.connect(node('live', user))]),
      ]);

      const reported: string[] = [];
      const deadNodes: string[] = [];
      await clock.eventually(
        async () => {
          await live.presence.heartbeat('live');
          const rounds = await Promise.all(nodes.map((stores) => stores.presence.reapDeadNodes()));
          for (const round of rounds) {
            reported.push(...round.wentOffline.map((r) => r.userId));
            deadNodes.push(...round.deadNodes);
          }
          expect(new Set(reported).size).toBe(goners.length);
        },
        { timeoutMs: NODE_TTL_MS * 4, intervalMs: 20 },
      );
      expect(reported.toSorted()).toEqual(goners.toSorted());
      expect(deadNodes).toEqual(['dead']);
      expect((await live.presence.get(stayers)).every((view) => view.online)).toBe(true);
    });

    it('shows invisible users offline to others and as they are to themselves', async () => {
      const [{ presence }] = backend.cluster(1) as [StateStores];
      const [ghost, other] = [id('ghost'), id('other')];
      const device = node('n1', ghost);
      await presence.connect(device);

      const before = clock.now();
      expect(await presence.setStatus(ghost, 'invisible')).toEqual({ previous: 'online', online: true });
      const [seen] = await presence.get([ghost], { viewerId: other });
      expect(seen).toMatchObject({ online: false, status: 'offline' });
      expect(seen!.lastSeenAt).toBeGreaterThanOrEqual(before - CLOCK_SLACK_MS);
      expect(await presence.get([ghost])).toEqual([seen]);
      expect(await presence.get([ghost], { viewerId: ghost })).toEqual([{ userId: ghost, online: true, status: 'invisible', lastSeenAt: null }]);
      expect(await presence.get([ghost, other], { selfView: true })).toEqual([
        { userId: ghost, online: true, status: 'invisible', lastSeenAt: null },
        { userId: other, online: false, status: 'offline', lastSeenAt: null },
      ]);

      // Leaving while invisible must not reveal when the invisible session ended.
      expect(await presence.disconnect(device)).toEqual({ wentOffline: true, lastSeenAt: seen!.lastSeenAt, status: 'invisible' });
      expect(await presence.setStatus(ghost, 'dnd')).toEqual({ previous: 'invisible', online: false });
      expect(await presence.connect(node('n1', ghost))).toEqual({ cameOnline: true, status: 'dnd' });
      expect(await presence.get([ghost], { viewerId: other })).toEqual([{ userId: ghost, online: true, status: 'dnd', lastSeenAt: null }]);
      await expect(presence.setStatus(ghost, 'busy' as never)).rejects.toThrow(RangeError);
    });
  });

  describe('typing', () => {
    it('reports only transitions', async () => {
      const [{ typing }] = backend.cluster(1) as [StateStores];
      const [conversation, quiet] = [id('conv'), id('conv')];
      const [ann, bob] = [id('ann'), id('bob')];

      expect(await typing.start(conversation, ann, 5000)).toEqual({ changed: true });
      expect(await typing.start(conversation, ann, 5000)).toEqual({ changed: false });
      expect(await typing.start(conversation, bob, 5000)).toEqual({ changed: true });
      expect((await typing.list(conversation)).toSorted()).toEqual([ann, bob].toSorted());
      expect(await typing.list(quiet)).toEqual([]);
      expect(await typing.stop(conversation, ann)).toEqual({ changed: true });
      expect(await typing.stop(conversation, ann)).toEqual({ changed: false });
      expect(await typing.stop(quiet, ann)).toEqual({ changed: false });
      expect(await typing.list(conversation)).toEqual([bob]);
    });

    it('forgets a typist after the ttl', async () => {
      const [{ typing }] = backend.cluster(1) as [StateStores];
      const [conversation, ann, bob] = [id('conv'), id('ann'), id('bob')];
      await typing.start(conversation, ann, 150);
      await typing.start(conversation, bob, 5000);
      expect((await typing.list(conversation)).toSorted()).toEqual([ann, bob].toSorted());

      await clock.eventually(async () => expect(await typing.list(conversation)).toEqual([bob]), { timeoutMs: 2000 });
      expect(await typing.stop(conversation, ann)).toEqual({ changed: false });
      expect(await typing.start(conversation, ann, 150)).toEqual({ changed: true });
    });
  });

  describe('rate limiter', () => {
    it('allows the burst, refuses the next call with retryAfterMs, then refills', async () => {
      const [{ rateLimiter }] = backend.cluster(1) as [StateStores];
      const key = id('user');
      const bucket = { capacity: 5, refillPerSecond: 10 };

      const burst = [];
      for (let i = 0; i < 5; i++) burst.push(await rateLimiter.consume(key, bucket));
      expect(burst.map((r) => [r.allowed, r.remaining])).toEqual([
        [true, 4],
        [true, 3],
        [true, 2],
        [true, 1],
        [true, 0],
      ]);
      const refused = await rateLimiter.consume(key, bucket);
      expect(refused).toMatchObject({ allowed: false, remaining: 0 });
      expect(refused.retryAfterMs).toBeGreaterThan(0);
      expect(refused.retryAfterMs).toBeLessThanOrEqual(100);
      // Another key has its own budget.
      expect((await rateLimiter.consume(id('user'), bucket)).allowed).toBe(true);

      const refusedAt = clock.now();
      await clock.eventually(async () => expect((await rateLimiter.consume(key, bucket)).allowed).toBe(true), { timeoutMs: 1000, intervalMs: 10 });
      expect(clock.now() - refusedAt).toBeGreaterThanOrEqual(refused.retryAfterMs - 50);
    });

    it('refills up to capacity and no further', async () => {
      const [{ rateLimiter }] = backend.cluster(1) as [StateStores];
      const key = id('user');
      const bucket = { capacity: 3, refillPerSecond: 10 };
      expect(await rateLimiter.consume(key, bucket, 3)).toEqual({ allowed: true, remaining: 0, retryAfterMs: 0 });
      const refused = await rateLimiter.consume(key, bucket, 2);
      expect(refused.allowed).toBe(false);
      expect(refused.retryAfterMs).toBeGreaterThan(100);
      expect(refused.retryAfterMs).toBeLessThanOrEqual(200);

      await clock.eventually(async () => expect((await rateLimiter.consume(key, bucket, 0)).remaining).toBe(3), { timeoutMs: 2000 });
      // Long enough to hold six tokens if the bucket overflowed.
      await clock.advance(300);
      expect((await rateLimiter.consume(key, bucket, 3)).allowed).toBe(true);
      expect((await rateLimiter.consume(key, bucket, 1)).allowed).toBe(false);
      await expect(rateLimiter.consume(key, bucket, 4)).rejects.toThrow(RangeError);
    });

    it('grants concurrent consumers on several nodes at most one burst per node, then refuses on every node', async () => {
      const nodes = backend.cluster(4);
      const key = id('user');
      const bucket = { capacity: 10, refillPerSecond: 0.01 };
      // Each node on its own never grants more than the bucket holds.
      const results = await Promise.all(Array.from({ length: 60 }, (_, i) => nodes[i % nodes.length]!.rateLimiter.consume(key, bucket)));
      const granted = results.filter((r) => r.allowed).length;
      expect(granted).toBeGreaterThanOrEqual(bucket.capacity);
      // The documented bound: C + (k - 1)·C for k nodes within one settle interval (memory: exactly C).
      expect(granted).toBeLessThanOrEqual(bucket.capacity * nodes.length);
      expect(results.filter((r) => !r.allowed).every((r) => r.retryAfterMs > 0)).toBe(true);
      // Once the nodes settled, what they spent is debt in the shared bucket: every node refuses.
      await clock.eventually(
        async () => {
          for (const store of nodes) expect((await store.rateLimiter.consume(key, bucket, 0)).remaining).toBe(0);
          for (const store of nodes) expect((await store.rateLimiter.consume(key, bucket)).allowed).toBe(false);
        },
        { timeoutMs: 3000 },
      );
    });
  });

  describe('rate limiter under sustained load', () => {
    it('grants at most C + r·t + (k−1)·(C + r·T) over a window on k nodes, far below k independent budgets', async () => {
      const nodes = backend.cluster(3);
      const key = id('user');
      const bucket = { capacity: 5, refillPerSecond: 20 };
      const started = clock.now();
      let granted = 0;
      await Promise.all(
        nodes.map(async (store) => {
          while (clock.now() - started < 1000) {
            if ((await store.rateLimiter.consume(key, bucket)).allowed) granted++;
            await clock.advance(2);
          }
        }),
      );
      const t = (clock.now() - started) / 1000;
      // T: the 50 ms settle interval plus a round trip, with room for a loaded machine's lag.
      const T = 0.5;
      const bound = bucket.capacity + bucket.refillPerSecond * t + (nodes.length - 1) * (bucket.capacity + bucket.refillPerSecond * T);
      expect(granted).toBeLessThanOrEqual(bound);
      // Three budgets that never heard of each other would grant about 3·(C + r·t).
      expect(bound).toBeLessThan(nodes.length * (bucket.capacity + bucket.refillPerSecond * t));
      // …and the debt is paid back without starving the user: the long-run rate still flows.
      expect(granted).toBeGreaterThanOrEqual(bucket.refillPerSecond * t * 0.5);
    });
  });
});

describe('redis key layout', () => {
  it('writes only under the prefix, with TTLs on what may be abandoned', async () => {
    const [stores] = redis.cluster(1) as [StateStores];
    const client = redisClient(0);
    const prefix = prefixOf(stores);
    const [user, conversation, limited] = [id('user'), id('conv'), id('user')];
    await stores.presence.connect(node('n1', user));
    await stores.typing.start(conversation, user, 2000);
    await stores.rateLimiter.consume(limited, { capacity: 10, refillPerSecond: 2 }, 3);
    const consumedAt = Date.now();
    // The node settles what it granted with the shared bucket within its sync interval.
    await eventually(async () => expect(await client.exists(`${prefix}rl:{${limited}}`)).toBe(1), { timeoutMs: 2000, intervalMs: 10 });

    for (const mark of [user, conversation, limited]) {
      const keys = await client.keys(`*${mark}*`);
      expect(keys.length).toBeGreaterThan(0);
      for (const key of keys) expect(key.startsWith(prefix)).toBe(true);
    }
    const typingTtl = await client.pttl(`${prefix}typing:{${conversation}}`);
    expect(typingTtl).toBeGreaterThan(0);
    expect(typingTtl).toBeLessThanOrEqual(2000);
    // Three tokens at two a second: full again in 1.5 s, less what has passed since (a loaded CI
    // box can take a second over the lookups above).
    const bucketTtl = await client.pttl(`${prefix}rl:{${limited}}`);
    const sinceConsume = Date.now() - consumedAt;
    expect(bucketTtl).toBeGreaterThan(Math.max(0, Math.min(1000, 1500 - sinceConsume - CLOCK_SLACK_MS)));
    expect(bucketTtl).toBeLessThanOrEqual(1500);

    await stores.typing.stop(conversation, user);
    expect(await client.exists(`${prefix}typing:{${conversation}}`)).toBe(0);
  });
});

describe('createStateStores', () => {
  it('uses memory stores when given no Redis client', () => {
    const stores = createStateStores({ keyPrefix: 'x:', presence: { nodeTtlMs: 1000 } });
    expect(stores.presence).toBeInstanceOf(MemoryPresenceStore);
    expect(stores.typing).toBeInstanceOf(MemoryTypingStore);
    expect(stores.rateLimiter).toBeInstanceOf(MemoryRateLimiter);
    expect(stores.calls).toBeInstanceOf(MemoryCallStore);
  });

  it('refuses a client that prefixes keys itself', () => {
    const prefixed = new Redis(REDIS_URL, { keyPrefix: 'oops:', lazyConnect: true });
    expect(() => createStateStores({ redis: prefixed, keyPrefix: 'x:', presence: { nodeTtlMs: 1000 } })).toThrow(/keyPrefix/);
    prefixed.disconnect();
  });
});
