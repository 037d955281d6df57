import type { Message } from '@chat/protocol';
import { ChatClient } from '@chat/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { heapAfterGc } from '@chat/chaos/verify';
import { ok } from '@chat/testkit/cluster-client';
import { eventually } from '@chat/testkit/eventually';
import { spawnNode, testEnv, type SpawnedNode } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { connectDevice, uniqueUser, type Device } from '@chat/testkit/users';

/*
 * Slow consumers (SOCKET_MAX_BUFFERED_BYTES) on one real node process (src/main.ts, spawned, so its
 * heap is its own and can be measured after a forced GC through its inspector).
 *
 * A client that stops reading its TCP socket first fills the kernel's buffers (on loopback a few
 * MiB: the node's send buffer grows up to tcp_wmem's maximum, 4 MiB here); only then does the node
 * hold data for it in user space, which is what the bound is about. So the stalled member of a
 * 50-member group is sent round after round until the node cuts it: 49 members send 4,000-character
 * messages (the default maximum) to the group, each waiting for its ack before the next, so one
 * fan-out batch (at most 49 messages, ~210 KB) stays under the bound, which then holds to one
 * message (see slow-consumer.ts).
 */
const BOUND = 256 * 1024;
const BODY_LENGTH = 4000;
const MEMBERS = 50;
/** Rounds of 49 messages (~4.3 KB each, ~210 KB a round) the node may take to cut the stalled socket: 16 MB. */
const MAX_STALLED_ROUNDS = 75;
/** Rounds after the cut, with the client still stalled: 3.1 MB the node would otherwise hold for it. */
const AFTER_ROUNDS = 15;
/** How far the node's heap after a full GC may move from before the stall to the end: a third of those rounds. */
const HEAP_GROWTH_BOUND = 1024 * 1024;

let node: SpawnedNode;
let inspectorPort: number;
const devices: Device[] = [];
const clients: ChatClient[] = [];

beforeAll(async () => {
  node = await spawnNode(
    testEnv({
      NODE_ID: 'slow-consumer-node',
      SOCKET_MAX_BUFFERED_BYTES: String(BOUND),
      // The heartbeat would close a socket that stops reading after interval + timeout: out of the
      // way, so only the bound can cut it.
      SOCKET_PING_INTERVAL_MS: '300000',
      // The inspector, on loopback, only for the forced-GC heap measurement.
      NODE_OPTIONS: '--inspect=127.0.0.1:0',
    }),
  );
  const port = node.stderr.map((line) => /Debugger listening on ws:\/\/127\.0\.0\.1:(\d+)\//.exec(line)?.[1]).find(Boolean);
  if (!port) throw new Error(`no inspector port in the node's stderr: ${node.stderr.join('\n')}`);
  inspectorPort = Number(port);
});

afterAll(async () => {
  for (const client of clients) client.close();
  for (const device of devices) device.close();
  if (node && node.child.exitCode === null) {
    node.kill('SIGTERM');
    await node.exited;
  }
});

function body(label: string): string {
  return `${label} `.padEnd(BODY_LENGTH, 'x');
}

/** How the node writes a `message:new` push: the size of one message on the wire. */
function packetLength(message: Message): number {
  return `42${JSON.stringify(['message:new', message])}`.length;
}

/** What `messages` weigh on the wire to one socket. */
function streamed(messages: Message[]): number {
  return messages.reduce((sum, message) => sum + packetLength(message), 0);
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/**
 * The node's heap after a forced full GC (through its inspector), counting the spaces that hold
 * data — new, old and large-object space, where a socket's backlog of packets would be — not code:
 * V8 keeps compiling and optimising functions long after a warm-up, which moves the total by a
 * megabyte or two and says nothing about what the node retains.
 */
async function heapUsed(): Promise<number> {
  if ((await heapAfterGc(inspectorPort)) === null) throw new Error("the node's inspector did not answer");
  const text = await (await fetch(`${node.url}/metrics`)).text();
  let used = 0;
  for (const match of text.matchAll(/^nodejs_heap_space_size_used_bytes\{[^}]*space="(new|old|large_object|new_large_object)"[^}]*\} (\S+)$/gm)) used += Number(match[2]);
  return used;
}

async function slowConsumerCount(transport: string): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split('\n').find((entry) => entry.startsWith('chat_slow_consumer_disconnects_total{') && entry.includes(`transport="${transport}"`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

/** The node's log line for a socket of `userId` it cut as a slow consumer, and for the disconnect that followed. */
function logged(userId: string, msg: 'slow consumer: disconnected' | 'socket disconnected'): Record<string, unknown> | undefined {
  return node.logs.find((entry) => entry['msg'] === msg && entry['userId'] === userId);
}

describe('a client that stops reading', () => {
  it('over WebSocket: cut within the bound while 49 members keep receiving, the heap stays flat, and the SDK resyncs every message', async () => {
    // The stalled member is an SDK client: it must come back by itself and end up with everything.
    const stalledId = uniqueUser('stalled');
    const stalled = new ChatClient({ url: node.url, token: () => signToken({ sub: stalledId, name: stalledId }), transports: ['websocket'] });
    clients.push(stalled);
    const got = new Map<string, Message>();
    const drops: Array<{ reason: string; willReconnect: boolean }> = [];
    let resyncs = 0;
    stalled.on('message', (message) => {
      if (message.kind !== 'system') got.set(message.id, message);
    });
    stalled.on('disconnected', (event) => drops.push(event));
    stalled.on('synced', ({ initial }) => (resyncs += initial ? 0 : 1));
    await stalled.connect();

    const members = await Promise.all(Array.from({ length: MEMBERS - 1 }, (_, i) => connectDevice(node.url, uniqueUser(`member${i}`))));
    devices.push(...members);
    const memberIds = [...members.slice(1).map((member) => member.userId), stalledId];
    const conversationId = (await members[0]!.ok('conversation:create-group', { title: 'slow consumer', memberIds })).conversation.id;
    // Muted: once it is offline the group's messages create no notifications for it. Prisma keeps
    // the arguments of its last 100 debug calls (@prisma/debug), so notification batches would move
    // the heap by megabytes that say nothing about what the node holds for sockets.
    await stalled.muteConversation(conversationId);
    const acked: Message[] = [];
    /** Every member sends `rounds` messages, each after the ack of its previous one. */
    const sendRounds = (phase: string, rounds: number) =>
      Promise.all(
        members.map(async (member) => {
          for (let i = 0; i < rounds; i++) {
            const label = `${member.userId}-${phase}${i}`;
            acked.push((await member.ok('message:send', { conversationId, clientMsgId: label, body: body(label) })).message);
          }
        }),
      );

    // The stalled client stops reading its TCP socket before the traffic starts: its kernel receive
    // buffer then stays small (Linux grows it only as the application reads), so what the kernel
    // takes is mostly the node's send buffer (tcp_wmem's maximum, 4 MiB here); then the node itself
    // holds data for it.
    const ws = (stalled.socket.io.engine.transport as unknown as { ws: WebSocket }).ws;
    ws.pause();
    const pausedAt = Date.now();

    // Warm-up: every path the load takes has run before the heap is first measured.
    await sendRounds('warm', 1);
    const heapBefore = await heapUsed();

    // Until the node cuts it: round after round, as long as it takes the kernel to fill.
    let cut: Record<string, unknown> | undefined;
    for (let round = 0; !cut; round++) {
      if (round === MAX_STALLED_ROUNDS) throw new Error(`not cut after ${round} rounds (${mib(streamed(acked))} sent to it)`);
      await sendRounds(`stalled${round}-`, 1);
      cut = logged(stalledId, 'slow consumer: disconnected');
    }
    const sentWhenCut = streamed(acked);

    // Within the bound, and said so: a log line with user and connection, a metric.
    const largest = Math.max(...acked.map(packetLength));
    expect(cut).toMatchObject({ transport: 'websocket', maxBufferedBytes: BOUND, socketId: expect.any(String), level: 40 });
    expect(Number(cut['bufferedBytes'])).toBeGreaterThan(BOUND);
    expect(Number(cut['bufferedBytes'])).toBeLessThanOrEqual(BOUND + largest);
    expect(await slowConsumerCount('websocket')).toBe(1);
    const cutAfterMs = Date.parse(String(cut['time'])) - pausedAt;

    // The heap stays flat while more goes to the group and the client still does not read. Without
    // the cut all of it would wait on the node for the stalled socket (the kernel's buffers are full).
    await eventually(() => expect(logged(stalledId, 'socket disconnected')).toMatchObject({ socketId: cut['socketId'] }));
    const heapCut = await heapUsed();
    const more = acked.length;
    await sendRounds('after', AFTER_ROUNDS);
    const afterBytes = streamed(acked.slice(more));
    expect(afterBytes).toBeGreaterThan(3 * HEAP_GROWTH_BOUND);
    const heapAfter = await eventually(
      async () => {
        const used = await heapUsed();
        expect(used - heapBefore).toBeLessThan(HEAP_GROWTH_BOUND);
        return used;
      },
      { timeoutMs: 10_000, intervalMs: 1000 },
    );

    // The 49 others got every message meanwhile (but their own, which their acks carry), each once
    // and in seq order.
    const pushed = (member: Device) => member.of('message:new').filter((m) => m.conversationId === conversationId && m.kind !== 'system');
    for (const member of members) {
      const expected = acked.filter((message) => message.senderId !== member.userId).sort((a, b) => a.seq - b.seq);
      await eventually(() => expect(pushed(member)).toHaveLength(expected.length), { timeoutMs: 30_000 });
      expect(pushed(member).map((m) => m.seq)).toEqual(expected.map((message) => message.seq));
      expect(pushed(member).map((m) => m.id)).toEqual(expected.map((message) => message.id));
    }

    // It reads again: it sees the connection gone, reconnects and resyncs, and holds every message.
    const resumedAt = Date.now();
    ws.resume();
    const ids = acked.map((message) => message.id).sort();
    await eventually(() => expect([...got.keys()].sort()).toEqual(ids), { timeoutMs: 30_000, intervalMs: 100 });
    expect(drops[0]).toMatchObject({ willReconnect: true });
    expect(resyncs).toBeGreaterThanOrEqual(1);

    console.info(
      `slow consumer (websocket): bound ${BOUND} B; cut at ${String(cut['bufferedBytes'])} B unsent (largest message ${largest} B) ` +
        `${cutAfterMs} ms after it stopped reading, ${mib(sentWhenCut)} sent to it by the end of that round; ` +
        `heap after GC ${mib(heapBefore)} before, ${mib(heapCut)} after the cut, ${mib(heapAfter)} after ${mib(afterBytes)} more; ` +
        `all ${ids.length} messages held ${Date.now() - resumedAt} ms after it resumed (${drops.length} drop, ${resyncs} resync)`,
    );
  }, 180_000);

  it('over long-polling: a session that stops polling is cut within the bound', async () => {
    const sender = devices[0]!;
    const pollerId = uniqueUser('poller');
    // A raw Engine.IO long-polling client: handshake, CONNECT with the token, one poll, then no more.
    const base = `${node.url}/socket.io/?EIO=4&transport=polling`;
    const open = await (await fetch(base)).text();
    const sid = (JSON.parse(open.slice(1)) as { sid: string }).sid;
    const session = `${base}&sid=${sid}`;
    expect(await (await fetch(session, { method: 'POST', body: `40${JSON.stringify({ token: signToken({ sub: pollerId, name: pollerId }) })}` })).text()).toBe('ok');
    expect(await (await fetch(session)).text()).toMatch(/^40\{"sid"/);

    const conversationId = (await ok(sender.socket, 'conversation:open-direct', { userId: pollerId })).conversation.id;
    const acked: Message[] = [];
    // A few past the bound: every message now waits in Engine.IO's buffer for a poll that never comes.
    for (let i = 0; i * BODY_LENGTH < BOUND + 4 * BODY_LENGTH; i++) {
      acked.push((await ok(sender.socket, 'message:send', { conversationId, clientMsgId: `poll-message-${i}`, body: body(`poll-message-${i}`) })).message);
    }

    const cut = await eventually(() => logged(pollerId, 'slow consumer: disconnected') ?? expect.fail('not cut yet'), { timeoutMs: 10_000, intervalMs: 50 });
    expect(cut).toMatchObject({ transport: 'polling', maxBufferedBytes: BOUND });
    expect(Number(cut['bufferedBytes'])).toBeGreaterThan(BOUND);
    expect(Number(cut['bufferedBytes'])).toBeLessThanOrEqual(BOUND + Math.max(...acked.map(packetLength)));
    expect(await slowConsumerCount('polling')).toBe(1);
    // A poll now either still reads the backlog, then the reason (within the grace), or finds the
    // session gone with its buffer; then it is gone.
    const poll = await fetch(session);
    if (poll.status === 200) expect(await poll.text()).toContain('42["session:ending",{"reason":"slow_consumer"');
    else expect(poll.status).toBe(400);
    await eventually(async () => expect((await fetch(session)).status).toBe(400), { timeoutMs: 5000, intervalMs: 250 });
  }, 60_000);
});
