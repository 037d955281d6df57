import type { Call } from '@chat/protocol';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { eventually } from '@chat/testkit/eventually';
import { spawnNode, startNode, testEnv, type TestNode } from '@chat/testkit/nodes';
import { connectDevice, uniqueUser, type Device } from '@chat/testkit/users';

// Two real nodes sharing this run's PostgreSQL and Redis; every cross-node relay crosses the Redis adapter.
const CALL_ENV = { CALL_RING_TIMEOUT_MS: '1500', CALL_STATE_TTL_MS: '1500' };
let nodeA: TestNode;
let nodeB: TestNode;
const devices: Device[] = [];

beforeAll(async () => {
  [nodeA, nodeB] = await Promise.all([startNode({ ...CALL_ENV, NODE_ID: 'calls-a' }), startNode({ ...CALL_ENV, NODE_ID: 'calls-b' })]);
});
afterAll(async () => {
  for (const device of devices) device.close();
  await Promise.all([nodeA?.close(), nodeB?.close()]);
});

async function device(url: string, userId: string): Promise<Device> {
  const connected = await connectDevice(url, userId);
  devices.push(connected);
  return connected;
}

const updates = (d: Device, callId: string) => d.of('call:updated').filter((call) => call.id === callId);
const lastState = (d: Device, callId: string) => updates(d, callId).at(-1)?.state;
const offer = { type: 'offer' as const, sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n' };
const answer = { type: 'answer' as const, sdp: 'v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\n' };
const ice = { type: 'ice' as const, candidate: { candidate: 'candidate:1 1 udp 2122260223 127.0.0.1 54321 typ host', sdpMid: '0', sdpMLineIndex: 0 } };

/** Calls ring only someone the caller shares a conversation with: a direct one with each of `others`. */
async function acquaint(a: Device, ...others: Device[]): Promise<void> {
  for (const b of others) await a.ok('conversation:open-direct', { userId: b.userId });
}

/** A caller on node A and a callee with one device on each node, in a direct conversation. */
async function trio() {
  const alice = await device(nodeA.url, uniqueUser('alice'));
  const bobA = await device(nodeA.url, uniqueUser('bob'));
  const bobB = await device(nodeB.url, bobA.userId);
  await acquaint(alice, bobA);
  return { alice, bobA, bobB };
}

describe('ringing and answering', () => {
  it('rings every device of the callee on both nodes; the first accept wins and the others stop ringing', async () => {
    const { alice, bobA, bobB } = await trio();
    const aliceOther = await device(nodeB.url, alice.userId);
    const { call } = await alice.ok('call:invite', { calleeId: bobA.userId, media: 'video' });
    expect(call).toMatchObject({ callerId: alice.userId, calleeId: bobA.userId, media: 'video', state: 'ringing', callerDeviceId: alice.socket.id, calleeDeviceId: null });
    for (const bob of [bobA, bobB]) await eventually(() => expect(bob.of('call:ringing')).toEqual([call]));
    await eventually(() => expect(updates(aliceOther, call.id)).toEqual([call]));
    expect(alice.of('call:ringing')).toEqual([]);

    const answers = await Promise.all([bobA.call('call:accept', { callId: call.id }), bobB.call('call:accept', { callId: call.id })]);
    const winners = answers.filter((a) => a.ok);
    expect(winners).toHaveLength(1);
    expect(answers.find((a) => !a.ok)).toMatchObject({ ok: false, error: { code: 'conflict' } });
    const accepted = (winners[0] as { call: Call }).call;
    const [winner, loser] = accepted.calleeDeviceId === bobA.socket.id ? [bobA, bobB] : [bobB, bobA];
    expect(accepted).toMatchObject({ state: 'accepted', calleeDeviceId: winner.socket.id, acceptedAt: expect.any(String) });

    // The other callee device learns which device answered (and stops ringing); so do the caller's devices.
    for (const d of [loser, alice, aliceOther]) await eventually(() => expect(lastState(d, call.id)).toBe('accepted'));
    expect(updates(loser, call.id).at(-1)!.calleeDeviceId).toBe(winner.socket.id);
    expect(updates(winner, call.id)).toEqual([]);
    expect((await alice.ok('call:get', { callId: call.id })).call).toEqual(accepted);

    await alice.ok('call:end', { callId: call.id });
    for (const d of [winner, loser, aliceOther]) await eventually(() => expect(lastState(d, call.id)).toBe('ended'));
    expect(updates(winner, call.id).at(-1)).toMatchObject({ endedBy: alice.userId, endedAt: expect.any(String) });
  });

  it('relays offer, answer and ICE candidates between the two devices in the call only, across nodes', async () => {
    const { alice, bobA, bobB } = await trio();
    const { call } = await alice.ok('call:invite', { calleeId: bobA.userId, media: 'audio' });
    await eventually(() => expect(bobB.of('call:ringing')).toHaveLength(1));
    // Signals before the call is accepted have nowhere to go.
    expect(await alice.call('call:signal', { callId: call.id, signal: offer })).toMatchObject({ ok: false, error: { code: 'conflict' } });
    await bobB.ok('call:accept', { callId: call.id });

    expect(await alice.ok('call:signal', { callId: call.id, signal: offer })).toEqual({ callId: call.id });
    await bobB.ok('call:signal', { callId: call.id, signal: answer });
    await bobB.ok('call:signal', { callId: call.id, signal: ice });
    await alice.ok('call:signal', { callId: call.id, signal: { type: 'ice', candidate: { candidate: '' } } });
    await eventually(() =>
      expect(bobB.of('call:signal')).toEqual([
        { callId: call.id, fromUserId: alice.userId, signal: offer },
        { callId: call.id, fromUserId: alice.userId, signal: { type: 'ice', candidate: { candidate: '' } } },
      ]),
    );
    await eventually(() =>
      expect(alice.of('call:signal')).toEqual([
        { callId: call.id, fromUserId: bobA.userId, signal: answer },
        { callId: call.id, fromUserId: bobA.userId, signal: ice },
      ]),
    );
    // Bob's other device is not in the call: it neither receives nor may send signals.
    expect(await bobA.call('call:signal', { callId: call.id, signal: ice })).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    await alice.ok('call:end', { callId: call.id });
    await eventually(() => expect(lastState(bobB, call.id)).toBe('ended'));
    expect(bobA.of('call:signal')).toEqual([]);
    expect(await alice.call('call:signal', { callId: call.id, signal: ice })).toMatchObject({ ok: false, error: { code: 'conflict' } });
  });

  it('rejects, cancels and hangs up, telling every device of both parties, and frees both for the next call', async () => {
    const { alice, bobA, bobB } = await trio();
    const rejected = (await alice.ok('call:invite', { calleeId: bobA.userId, media: 'audio' })).call;
    expect(await alice.call('call:reject', { callId: rejected.id })).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    expect((await bobA.ok('call:reject', { callId: rejected.id })).call).toMatchObject({ state: 'rejected', endedBy: bobA.userId });
    for (const d of [alice, bobB]) await eventually(() => expect(lastState(d, rejected.id)).toBe('rejected'));
    expect(await bobB.call('call:accept', { callId: rejected.id })).toMatchObject({ ok: false, error: { code: 'conflict' } });

    const cancelled = (await alice.ok('call:invite', { calleeId: bobA.userId, media: 'audio' })).call;
    expect(await bobA.call('call:cancel', { callId: cancelled.id })).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    await alice.ok('call:cancel', { callId: cancelled.id });
    for (const d of [bobA, bobB]) await eventually(() => expect(lastState(d, cancelled.id)).toBe('cancelled'));

    const ended = (await bobB.ok('call:invite', { calleeId: alice.userId, media: 'video' })).call;
    await alice.ok('call:accept', { callId: ended.id });
    expect((await alice.ok('call:end', { callId: ended.id })).call).toMatchObject({ state: 'ended', endedBy: alice.userId });
    for (const d of [bobA, bobB]) await eventually(() => expect(lastState(d, ended.id)).toBe('ended'));
    expect(await bobB.call('call:end', { callId: ended.id })).toMatchObject({ ok: false, error: { code: 'conflict' } });

    // `call:end` on a ringing call: the caller's hang-up cancels it.
    const hungUp = (await alice.ok('call:invite', { calleeId: bobA.userId, media: 'audio' })).call;
    expect((await alice.ok('call:end', { callId: hungUp.id })).call.state).toBe('cancelled');
  });

  it('answers busy when the callee is in a call, and refuses a caller who is in one', async () => {
    const { alice, bobA } = await trio();
    const carol = await device(nodeB.url, uniqueUser('carol'));
    await acquaint(carol, bobA, alice);
    const first = (await alice.ok('call:invite', { calleeId: bobA.userId, media: 'audio' })).call;
    const busy = (await carol.ok('call:invite', { calleeId: bobA.userId, media: 'audio' })).call;
    expect(busy).toMatchObject({ state: 'busy', callerId: carol.userId, calleeId: bobA.userId, endedAt: expect.any(String) });
    expect((await carol.ok('call:invite', { calleeId: alice.userId, media: 'audio' })).call.state).toBe('busy');
    expect(await alice.call('call:invite', { calleeId: carol.userId, media: 'audio' })).toMatchObject({ ok: false, error: { code: 'conflict' } });
    expect(bobA.of('call:ringing').map((c) => c.id)).toEqual([first.id]);
    // Bob hears of the call he missed while busy.
    await eventually(() => expect(bobA.of('notification:new').map((n) => n.notification)).toContainEqual(expect.objectContaining({ kind: 'system', actorId: carol.userId })));

    await bobA.ok('call:reject', { callId: first.id });
    expect((await carol.ok('call:invite', { calleeId: bobA.userId, media: 'audio' })).call.state).toBe('ringing');
  });

  it('ends an unanswered call as missed after CALL_RING_TIMEOUT_MS, on every device, with a notification', async () => {
    const { alice, bobA, bobB } = await trio();
    const { call } = await alice.ok('call:invite', { calleeId: bobA.userId, media: 'audio' });
    for (const d of [alice, bobA, bobB]) await eventually(() => expect(lastState(d, call.id)).toBe('missed'), { timeoutMs: 5000 });
    const missed = updates(bobB, call.id).at(-1)!;
    expect(missed).toMatchObject({ endedBy: null, endedAt: expect.any(String) });
    expect(Date.parse(missed.endedAt!)).toBeGreaterThanOrEqual(Date.parse(call.ringDeadline));
    // Claimed once, by one node, so told once.
    expect(updates(bobA, call.id)).toHaveLength(1);
    await eventually(() =>
      expect(bobA.of('notification:new')).toMatchObject([{ notification: { kind: 'system', preview: 'Missed audio call', actorId: alice.userId, data: { callId: call.id, media: 'audio' } } }]),
    );
    expect(await bobA.call('call:accept', { callId: call.id })).toMatchObject({ ok: false, error: { code: 'conflict' } });
  });

  it('ends the calls of a device that disconnects', async () => {
    const { alice, bobA, bobB } = await trio();
    const { call } = await alice.ok('call:invite', { calleeId: bobA.userId, media: 'audio' });
    await bobB.ok('call:accept', { callId: call.id });
    bobB.close();
    await eventually(() => expect(lastState(alice, call.id)).toBe('ended'));
    expect(updates(alice, call.id).at(-1)!.endedBy).toBe(bobA.userId);

    const ringing = (await alice.ok('call:invite', { calleeId: bobA.userId, media: 'audio' })).call;
    alice.close();
    await eventually(() => expect(lastState(bobA, ringing.id)).toBe('cancelled'));
  });
});

describe('authorization', () => {
  it('hides a call from everyone but its two parties, like a missing one, and places calls only over a socket', async () => {
    const { alice, bobA } = await trio();
    const mallory = await device(nodeB.url, uniqueUser('mallory'));
    const { call } = await alice.ok('call:invite', { calleeId: bobA.userId, media: 'audio' });
    const missing = '0190a5f5-0000-7000-8000-00000000000c';
    for (const [event, payload] of [
      ['call:get', {}],
      ['call:accept', {}],
      ['call:reject', {}],
      ['call:cancel', {}],
      ['call:end', {}],
      ['call:signal', { signal: offer }],
    ] as const) {
      const theirs = await mallory.call(event, { callId: call.id, ...payload } as never);
      expect(theirs, event).toMatchObject({ ok: false, error: { code: 'not_found' } });
      expect(theirs, event).toEqual(await mallory.call(event, { callId: missing, ...payload } as never));
    }
    expect(await alice.call('call:accept', { callId: call.id })).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    expect(await alice.call('call:invite', { calleeId: alice.userId, media: 'audio' })).toMatchObject({ ok: false, error: { code: 'validation' } });
    const nobody = await alice.call('call:invite', { calleeId: uniqueUser('nobody'), media: 'audio' });
    expect(nobody).toMatchObject({ ok: false, error: { code: 'not_found' } });
    // A stranger (no shared conversation) cannot be rung, and cannot be told apart from a missing user.
    expect(await alice.call('call:invite', { calleeId: mallory.userId, media: 'audio' })).toEqual(nobody);
    expect(await mallory.call('call:invite', { calleeId: bobA.userId, media: 'audio' })).toEqual(nobody);
    expect(mallory.of('call:updated')).toEqual([]);
    expect(lastState(bobA, call.id)).toBeUndefined();

    const token = (await import('@chat/testkit/tokens')).signToken({ sub: mallory.userId });
    const rest = await nodeA.app.inject({ method: 'GET', url: `/v1/calls/${call.id}`, headers: { authorization: `Bearer ${token}` } });
    expect([rest.statusCode, rest.json().error.code]).toEqual([404, 'not_found']);
    const asAlice = await nodeA.app.inject({
      method: 'GET',
      url: `/v1/calls/${call.id}`,
      headers: { authorization: `Bearer ${(await import('@chat/testkit/tokens')).signToken({ sub: alice.userId })}` },
    });
    expect(asAlice.json()).toMatchObject({ ok: true, call: { id: call.id, state: 'ringing' } });
    await alice.ok('call:cancel', { callId: call.id });
  });
});

describe('a node that dies', () => {
  it('leaves no stuck call: an accepted call ends for the survivor, a ringing one times out, and nobody stays busy', async () => {
    const spawned = await spawnNode(testEnv({ ...CALL_ENV, NODE_ID: 'calls-doomed' }));
    onTestFinished(() => {
      if (spawned.child.exitCode === null && spawned.child.signalCode === null) spawned.kill('SIGKILL');
    });
    const alice = await device(spawned.url, uniqueUser('alice'));
    const bob = await device(nodeA.url, uniqueUser('bob'));
    const carol = await device(spawned.url, uniqueUser('carol'));
    const dave = await device(nodeB.url, uniqueUser('dave'));
    await acquaint(alice, bob);
    await acquaint(carol, dave);
    const accepted = (await alice.ok('call:invite', { calleeId: bob.userId, media: 'video' })).call;
    await bob.ok('call:accept', { callId: accepted.id });
    await bob.ok('call:signal', { callId: accepted.id, signal: answer });
    await eventually(() => expect(alice.of('call:signal')).toHaveLength(1));
    const ringing = (await carol.ok('call:invite', { calleeId: dave.userId, media: 'audio' })).call;
    await eventually(() => expect(dave.of('call:ringing')).toHaveLength(1));

    spawned.kill('SIGKILL');
    expect((await spawned.exited).signal).toBe('SIGKILL');
    // The caller's node is gone; the surviving nodes end both calls within the TTL / ring timeout.
    await eventually(() => expect(lastState(bob, accepted.id)).toBe('ended'), { timeoutMs: 8000 });
    await eventually(() => expect(lastState(dave, ringing.id)).toBe('missed'), { timeoutMs: 8000 });
    // Nobody is still marked busy: each pair can call again.
    const again = (await bob.ok('call:invite', { calleeId: alice.userId, media: 'audio' })).call;
    expect(again.state).toBe('ringing');
    expect((await dave.ok('call:invite', { calleeId: carol.userId, media: 'audio' })).call.state).toBe('ringing');
    await bob.ok('call:cancel', { callId: again.id });
  });
});

describe('message threshold policy', () => {
  it('refuses calls before CALL_MIN_MESSAGES and sends the milestone to both users once', async () => {
    const [p, q] = await Promise.all([startNode({ ...CALL_ENV, NODE_ID: 'policy-p', CALL_MIN_MESSAGES: '3' }), startNode({ ...CALL_ENV, NODE_ID: 'policy-q', CALL_MIN_MESSAGES: '3' })]);
    onTestFinished(() => Promise.all([p.close(), q.close()]).then(() => {}));
    const alice = await device(p.url, uniqueUser('alice'));
    const bob = await device(q.url, uniqueUser('bob'));
    const bobOther = await device(p.url, bob.userId);
    const { conversation } = await alice.ok('conversation:open-direct', { userId: bob.userId });
    const refused = await alice.call('call:invite', { calleeId: bob.userId, media: 'audio' });
    expect(refused).toMatchObject({ ok: false, error: { code: 'forbidden', retryable: false, message: expect.stringContaining('3 messages') } });

    let n = 0;
    const send = (from: Device) => from.ok('message:send', { conversationId: conversation.id, clientMsgId: `policy-${Date.now().toString(36)}-${++n}`, body: `message ${n}` });
    await send(alice);
    await send(bob);
    expect(await bob.call('call:invite', { calleeId: alice.userId, media: 'video' })).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    expect(alice.of('conversation:milestone')).toEqual([]);
    await send(alice);
    for (const d of [alice, bob, bobOther]) {
      await eventually(() => expect(d.of('conversation:milestone')).toEqual([{ conversationId: conversation.id, kind: 'calls_unlocked', messageCount: 3, reachedAt: expect.any(String) }]));
    }
    // More messages from both nodes do not send it again.
    await Promise.all([send(alice), send(bob), send(bobOther)]);
    await Promise.all([p.app.services.callMilestones.idle(), q.app.services.callMilestones.idle()]);
    await send(alice);
    await eventually(() => expect(bob.of('message:new')).toHaveLength(5));
    for (const d of [alice, bob, bobOther]) expect(d.of('conversation:milestone')).toHaveLength(1);
    expect((await p.app.db.conversation.findUniqueOrThrow({ where: { id: conversation.id } })).callsUnlockedAt).not.toBeNull();

    const { call } = await bob.ok('call:invite', { calleeId: alice.userId, media: 'video' });
    expect(call.state).toBe('ringing');
    await bob.ok('call:cancel', { callId: call.id });
  });
});
