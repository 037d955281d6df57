import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { StateStores } from '../src/state/index.ts';
import { CLOCK_SLACK_MS, id, stateBackends } from './helpers/state-backends.ts';

// The call store's contract, run against memory, one Redis and a Redis Cluster. The memory store runs
// on a clock the tests move; against Redis, time is real and Redis expires the keys.
const { memory, redis, redisCluster } = stateBackends();

describe.each([memory, redis, redisCluster])('call store: $name', (backend) => {
  const { clock } = backend;
  const timings = { ringTimeoutMs: 300, liveTtlMs: 600, finalTtlMs: 5000 };
  const newCall = (callerId = id('caller'), calleeId = id('callee')) => ({ id: randomUUID(), callerId, calleeId, media: 'audio' as const, callerDeviceId: id('dev') });

  it('rings a new call and marks both parties busy: a second call to or from either is busy', async () => {
    const [{ calls }] = backend.cluster(1) as [StateStores];
    const first = newCall();
    const created = await calls.create(first, timings);
    expect(created.busy).toBeNull();
    expect(created.call).toMatchObject({ ...first, state: 'ringing', calleeDeviceId: null, acceptedAt: null, endedAt: null, endedBy: null });
    expect(created.call!.ringDeadline - created.call!.createdAt).toBe(300);
    expect(Math.abs(created.call!.createdAt - clock.now())).toBeLessThan(CLOCK_SLACK_MS);
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

    const claimed = await clock.eventually(
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
    const deadline = clock.now() + 2500;
    while (clock.now() < deadline) {
      const [mine, theirs] = await Promise.all([calls.touch(touches(), short), other.calls.touch([{ callId: kept.id, deviceId: `callee-of-${kept.id}` }], short)]);
      expect(mine.get(kept.id)).toEqual({ state: 'accepted', ended: null });
      expect(theirs.get(kept.id)).toEqual({ state: 'accepted', ended: null });
      const result = mine.get(abandoned.id)!;
      if (result.ended) ended.push(result.ended);
      else expect(result.state).toBe(ended.length > 0 ? 'ended' : 'accepted');
      await clock.advance(100);
    }
    expect(ended).toEqual([expect.objectContaining({ id: abandoned.id, state: 'ended', endedBy: null, endedAt: expect.any(Number) })]);
    expect((await calls.get(abandoned.id))?.state).toBe('ended');
    expect((await calls.get(kept.id))?.state).toBe('accepted');
    // The ended call's parties are free again; the kept call's are not.
    expect((await calls.create(newCall(abandoned.callerId, abandoned.calleeId), short)).busy).toBeNull();
    expect((await calls.create(newCall(id('x'), kept.calleeId), short)).busy).toBe('callee');
    // Untouched, but still ringing: it outlives its deadline so the ring timeout can claim it.
    expect(await calls.touch([{ callId: ringing.id, deviceId: ringing.callerDeviceId }], short)).toEqual(new Map([[ringing.id, { state: 'ringing', ended: null }]]));
    const missed = await clock.eventually(
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
    await clock.advance(1400);
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
    const deadline = clock.now() + 1500;
    while (clock.now() < deadline) {
      expect(await calls.touch([{ callId: call.id, deviceId: call.callerDeviceId }], short)).toEqual(new Map([[call.id, { state: 'ringing', ended: null }]]));
      await clock.advance(50);
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
    await clock.eventually(async () => expect(await calls.get(call.id)).toBeNull(), { timeoutMs: 3000 });
    expect(await calls.touch([{ callId: call.id, deviceId: 'd' }], short)).toEqual(new Map([[call.id, { state: null, ended: null }]]));
    expect((await calls.create(newCall(call.callerId, call.calleeId), short)).busy).toBeNull();
  });
});
