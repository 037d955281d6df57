import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { deleteRedisKeys, startPrivateRedisCluster, type PrivateRedisCluster } from '@chat/testkit/services';
import { createStateStores, MemoryCallStore, MemoryPresenceStore, MemoryRateLimiter, MemoryTypingStore, type StateStores, type WentOffline } from '../src/state/index.ts';
import { eventually } from '@chat/testkit/eventually';

const NODE_TTL_MS = 300;
const REDIS_URL = process.env.REDIS_URL ?? inject('redisUrl') ?? 'redis://127.0.0.1:6379';
// Unique per run and deleted afterwards: other suites and runs share this Redis.
const RUN_PREFIX = `${inject('redisPrefix') ?? 'test:'}state:${randomUUID()}:`;

/**
 * A backend hands out `count` views of one fresh, empty state, as separate nodes would see it:
 * the same object for memory, separate connections for Redis so races are real.
 */
interface Backend {
  name: string;
  cluster(count: number): StateStores[];
}

const memory: Backend = {
  name: 'memory',
  cluster(count) {
    const stores = createStateStores({ keyPrefix: 'unused:', presence: { nodeTtlMs: NODE_TTL_MS } });
    return Array.from({ length: count }, () => stores);
  },
};

const redisClients: Redis[] = [];
const prefixes = new WeakMap<StateStores, string>();
let states = 0;
function redisClient(i: number): Redis {
  while (redisClients.length <= i) redisClients.push(new Redis(REDIS_URL, { connectionName: 'state-contract-test' }));
  return redisClients[i]!;
}

const redis: Backend = {
  name: 'redis',
  cluster(count) {
    const keyPrefix = `${RUN_PREFIX}${states++}:`;
    return Array.from({ length: count }, (_, i) => {
      const stores = createStateStores({ redis: redisClient(i), keyPrefix, presence: { nodeTtlMs: NODE_TTL_MS } });
      prefixes.set(stores, keyPrefix);
      return stores;
    });
  },
};

/** A private Redis Cluster (3 masters, 3 replicas): the stores' scripts must keep to one slot each. */
let privateCluster: PrivateRedisCluster;
const clusterClients: Cluster[] = [];
function clusterClient(i: number): Cluster {
  while (clusterClients.length <= i) {
    const nodes = privateCluster.ports.map((port) => ({ host: '127.0.0.1', port }));
    clusterClients.push(new Cluster(nodes, { redisOptions: { connectionName: 'state-contract-test' }, enableAutoPipelining: true }));
  }
  return clusterClients[i]!;
}

const redisCluster: Backend = {
  name: 'redis-cluster',
  cluster(count) {
    const keyPrefix = `${RUN_PREFIX}${states++}:`;
    return Array.from({ length: count }, (_, i) => createStateStores({ redis: clusterClient(i), keyPrefix, presence: { nodeTtlMs: NODE_TTL_MS } }));
  },
};

beforeAll(async () => {
  privateCluster = await startPrivateRedisCluster();
});

afterAll(async () => {
  await Promise.all(clusterClients.map((c) => c.quit()));
  await privateCluster?.destroy();
  if (redisClients.length === 0) return;
  await deleteRedisKeys(REDIS_URL, RUN_PREFIX);
  await Promise.all(redisClients.map((c) => c.quit()));
});

const id = (kind: string) => `${kind}-${randomUUID()}`;
const node = (nodeId: string, userId: string, connectionId = id('conn')) => ({ nodeId, userId, connectionId });
/** The store clock may be Redis' own; on one machine it agrees with ours to well within this. */
const CLOCK_SLACK_MS = 250;

describe.each([memory, redis, redisCluster])('state stores: $name', (backend) => {
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
      const before = Date.now();
      const last = await presence.disconnect(laptop);
      expect(last.wentOffline).toBe(true);
      expect(last.lastSeenAt).toBeGreaterThanOrEqual(before - CLOCK_SLACK_MS);
      expect(last.lastSeenAt).toBeLessThanOrEqual(Date.now() + CLOCK_SLACK_MS);
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
      const lastSignOfA = Date.now();

      expect((await b.presence.reapDeadNodes()).deadNodes).toEqual([]);

      const reported: WentOffline[] = [];
      const deadNodes: string[] = [];
      await eventually(
        async () => {
          await b.presence.heartbeat('node-b');
          const reaped = await b.presence.reapDeadNodes();
          reported.push(...reaped.wentOffline);
          deadNodes.push(...reaped.deadNodes);
          expect(deadNodes).toEqual(['node-a']);
        },
        { timeoutMs: NODE_TTL_MS * 4, intervalMs: 20 },
      );
      const elapsed = Date.now() - lastSignOfA;
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
      await sleep(NODE_TTL_MS * 1.5);
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
      await eventually(
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

      const before = Date.now();
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

      await eventually(async () => expect(await typing.list(conversation)).toEqual([bob]), { timeoutMs: 2000 });
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

      const refusedAt = Date.now();
      await eventually(async () => expect((await rateLimiter.consume(key, bucket)).allowed).toBe(true), { timeoutMs: 1000, intervalMs: 10 });
      expect(Date.now() - refusedAt).toBeGreaterThanOrEqual(refused.retryAfterMs - 50);
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

      await eventually(async () => expect((await rateLimiter.consume(key, bucket, 0)).remaining).toBe(3), { timeoutMs: 2000 });
      // Long enough to hold six tokens if the bucket overflowed.
      await sleep(300);
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
      await eventually(
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
      const started = Date.now();
      let granted = 0;
      await Promise.all(
        nodes.map(async (store) => {
          while (Date.now() - started < 1000) {
            if ((await store.rateLimiter.consume(key, bucket)).allowed) granted++;
            await sleep(2);
          }
        }),
      );
      const t = (Date.now() - started) / 1000;
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

  describe('calls', () => {
    const timings = { ringTimeoutMs: 300, liveTtlMs: 600, finalTtlMs: 5000 };
    const newCall = (callerId = id('caller'), calleeId = id('callee')) => ({ id: randomUUID(), callerId, calleeId, media: 'audio' as const, callerDeviceId: id('dev') });

    it('rings a new call and marks both parties busy: a second call to or from either is busy', async () => {
      const [{ calls }] = backend.cluster(1) as [StateStores];
      const first = newCall();
      const created = await calls.create(first, timings);
      expect(created.busy).toBeNull();
      expect(created.call).toMatchObject({ ...first, state: 'ringing', calleeDeviceId: null, acceptedAt: null, endedAt: null, endedBy: null });
      expect(created.call!.ringDeadline - created.call!.createdAt).toBe(300);
      expect(Math.abs(created.call!.createdAt - Date.now())).toBeLessThan(CLOCK_SLACK_MS);
      expect(await calls.get(first.id)).toEqual(created.call);

      // The callee is in a call: stored as already finished, `busy`.
      const toBusy = newCall(id('third'), first.calleeId);
      const busy = await calls.create(toBusy, timings);
      expect(busy).toMatchObject({ busy: 'callee', call: { id: toBusy.id, state: 'busy', endedAt: expect.any(Number) } });
      // The caller is in a call: nothing stored.
      const fromBusy = newCall(first.callerId, id('fourth'));
      expect(await calls.create(fromBusy, timings)).toEqual({ call: null, busy: 'caller' });
      expect(await calls.get(fromBusy.id)).toBeNull();
      // The callee calling out is busy too.
      expect((await calls.create(newCall(first.calleeId), timings)).busy).toBe('caller');

      await calls.transition(first.id, ['ringing'], 'cancelled', { endedBy: first.callerId }, timings);
      expect((await calls.create(newCall(first.callerId, first.calleeId), timings)).busy).toBeNull();
    });

    it('lets exactly one of many racing accepts win, then ends the call and frees both parties', async () => {
      const stores = backend.cluster(4);
      const call = newCall();
      await stores[0]!.calls.create(call, timings);
      const results = await Promise.all(stores.map((store, i) => store.calls.transition(call.id, ['ringing'], 'accepted', { calleeDeviceId: `device-${i}` }, timings)));
      const winners = results.filter((result) => result.changed);
      expect(winners).toHaveLength(1);
      const accepted = winners[0]!.call!;
      expect(accepted).toMatchObject({ state: 'accepted', calleeDeviceId: expect.stringMatching(/^device-/), acceptedAt: expect.any(Number) });
      for (const loser of results.filter((result) => !result.changed)) expect(loser.call).toEqual(accepted);

      // Not ringing any more: a late reject changes nothing.
      expect(await stores[1]!.calls.transition(call.id, ['ringing'], 'rejected', { endedBy: call.calleeId }, timings)).toEqual({ call: accepted, changed: false });
      const ended = await stores[2]!.calls.transition(call.id, ['accepted'], 'ended', { endedBy: call.calleeId }, timings);
      expect(ended).toMatchObject({ changed: true, call: { state: 'ended', endedBy: call.calleeId, endedAt: expect.any(Number), calleeDeviceId: accepted.calleeDeviceId } });
      expect((await stores[3]!.calls.create(newCall(call.calleeId, call.callerId), timings)).busy).toBeNull();
      expect(await stores[0]!.calls.transition(randomUUID(), ['ringing'], 'accepted', {}, timings)).toEqual({ call: null, changed: false });
    });

    it('expires unanswered calls as missed exactly once across nodes, and not accepted ones', async () => {
      const stores = backend.cluster(3);
      const unanswered = newCall();
      const answered = newCall();
      await stores[0]!.calls.create(unanswered, timings);
      await stores[0]!.calls.create(answered, timings);
      await stores[1]!.calls.transition(answered.id, ['ringing'], 'accepted', { calleeDeviceId: 'd' }, timings);
      expect(await stores[1]!.calls.expireRinging(timings)).toEqual([]);

      const claimed = await eventually(
        async () => {
          const batches = await Promise.all(stores.map((store) => store.calls.expireRinging(timings)));
          const all = batches.flat();
          expect(all).toHaveLength(1);
          return all;
        },
        { timeoutMs: 3000 },
      );
      expect(claimed[0]).toMatchObject({ id: unanswered.id, state: 'missed', endedBy: null, endedAt: expect.any(Number) });
      expect((await Promise.all(stores.map((store) => store.calls.expireRinging(timings)))).flat()).toEqual([]);
      expect((await stores[2]!.calls.get(answered.id))?.state).toBe('accepted');
      // The missed call's parties are free again.
      expect((await stores[2]!.calls.create(newCall(unanswered.calleeId), timings)).busy).toBeNull();
    });

    it('ends an accepted call whose other device stopped being touched (its node died), once, and keeps ringing ones past their deadline', async () => {
      const stores = backend.cluster(2);
      const [{ calls }, other] = stores as [StateStores, StateStores];
      const abandoned = newCall();
      const kept = newCall();
      const ringing = newCall();
      // Generous against a loaded machine: a touch every 100 ms, silence declared after 1 s.
      const short = { ringTimeoutMs: 3000, liveTtlMs: 1000, finalTtlMs: 10_000 };
      for (const call of [abandoned, kept, ringing]) await calls.create(call, short);
      for (const call of [abandoned, kept]) await calls.transition(call.id, ['ringing'], 'accepted', { calleeDeviceId: `callee-of-${call.id}` }, short);
      const touches = () => [
        { callId: kept.id, deviceId: kept.callerDeviceId },
        { callId: abandoned.id, deviceId: abandoned.callerDeviceId },
      ];
      // Both devices of `kept` are touched; only the caller's device of `abandoned` is.
      const ended: unknown[] = [];
      const deadline = Date.now() + 2500;
      while (Date.now() < deadline) {
        const [mine, theirs] = await Promise.all([calls.touch(touches(), short), other.calls.touch([{ callId: kept.id, deviceId: `callee-of-${kept.id}` }], short)]);
        expect(mine.get(kept.id)).toEqual({ state: 'accepted', ended: null });
        expect(theirs.get(kept.id)).toEqual({ state: 'accepted', ended: null });
        const result = mine.get(abandoned.id)!;
        if (result.ended) ended.push(result.ended);
        else expect(result.state).toBe(ended.length > 0 ? 'ended' : 'accepted');
        await sleep(100);
      }
      expect(ended).toEqual([expect.objectContaining({ id: abandoned.id, state: 'ended', endedBy: null, endedAt: expect.any(Number) })]);
      expect((await calls.get(abandoned.id))?.state).toBe('ended');
      expect((await calls.get(kept.id))?.state).toBe('accepted');
      // The ended call's parties are free again; the kept call's are not.
      expect((await calls.create(newCall(abandoned.callerId, abandoned.calleeId), short)).busy).toBeNull();
      expect((await calls.create(newCall(id('x'), kept.calleeId), short)).busy).toBe('callee');
      // Untouched, but still ringing: it outlives its deadline so the ring timeout can claim it.
      expect(await calls.touch([{ callId: ringing.id, deviceId: ringing.callerDeviceId }], short)).toEqual(new Map([[ringing.id, { state: 'ringing', ended: null }]]));
      const missed = await eventually(
        async () => {
          const claimed = (await calls.expireRinging(short)).filter((call) => call.id === ringing.id);
          expect(claimed).toHaveLength(1);
          return claimed[0]!;
        },
        { timeoutMs: 5000 },
      );
      expect(missed).toMatchObject({ id: ringing.id, state: 'missed' });
    });

    it('reports the end of a call whose two devices, both on one stalled node, are touched in one batch', async () => {
      const [{ calls }] = backend.cluster(1) as [StateStores];
      const call = newCall();
      const short = { ringTimeoutMs: 10_000, liveTtlMs: 1000, finalTtlMs: 5000 };
      await calls.create(call, short);
      await calls.transition(call.id, ['ringing'], 'accepted', { calleeDeviceId: `callee-of-${call.id}` }, short);
      // The node stalled past liveTtlMs (neither device touched), not past the call's 2 × liveTtlMs TTL.
      await sleep(1400);
      const touched = await calls.touch(
        [
          { callId: call.id, deviceId: call.callerDeviceId },
          { callId: call.id, deviceId: `callee-of-${call.id}` },
        ],
        short,
      );
      expect(touched.get(call.id)).toEqual({ state: 'ended', ended: expect.objectContaining({ id: call.id, state: 'ended', endedBy: null }) });
    });

    it("counts the caller's touches while ringing, so a call answered late is not ended as abandoned", async () => {
      const [{ calls }] = backend.cluster(1) as [StateStores];
      const call = newCall();
      const short = { ringTimeoutMs: 10_000, liveTtlMs: 1000, finalTtlMs: 5000 };
      await calls.create(call, short);
      // Rings for longer than liveTtlMs, touched by the caller's node all along.
      const deadline = Date.now() + 1500;
      while (Date.now() < deadline) {
        expect(await calls.touch([{ callId: call.id, deviceId: call.callerDeviceId }], short)).toEqual(new Map([[call.id, { state: 'ringing', ended: null }]]));
        await sleep(50);
      }
      await calls.transition(call.id, ['ringing'], 'accepted', { calleeDeviceId: 'late' }, short);
      expect(await calls.touch([{ callId: call.id, deviceId: 'late' }], short)).toEqual(new Map([[call.id, { state: 'accepted', ended: null }]]));
      // The ring deadline still stands for the record's TTL while ringing (KEEPTTL): touching never shortened it.
      expect((await calls.get(call.id))?.state).toBe('accepted');
    });

    it('lets a call nobody touches at all (both nodes died) disappear with its busy markers', async () => {
      const [{ calls }] = backend.cluster(1) as [StateStores];
      const call = newCall();
      const short = { ringTimeoutMs: 200, liveTtlMs: 300, finalTtlMs: 5000 };
      await calls.create(call, short);
      await calls.transition(call.id, ['ringing'], 'accepted', { calleeDeviceId: 'd' }, short);
      await eventually(async () => expect(await calls.get(call.id)).toBeNull(), { timeoutMs: 3000 });
      expect(await calls.touch([{ callId: call.id, deviceId: 'd' }], short)).toEqual(new Map([[call.id, { state: null, ended: null }]]));
      expect((await calls.create(newCall(call.callerId, call.calleeId), short)).busy).toBeNull();
    });
  });
});

describe('redis key layout', () => {
  it('writes only under the prefix, with TTLs on what may be abandoned', async () => {
    const [stores] = redis.cluster(1) as [StateStores];
    const client = redisClient(0);
    const prefix = prefixes.get(stores)!;
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
