// The routed fan-out (REDIS_ADAPTER=routed, the default) on three real node processes behind a real
// nginx, this run's PostgreSQL and Redis: a message costs only the nodes that hold a recipient, no
// message misses the live path while sockets connect, and any client spreads over the nodes.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { io as ioClient } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from '@chat/testkit/cluster';
import { connectClient, NGINX, NO_NGINX, ok, type Client } from '@chat/testkit/cluster-client';
import { eventually } from '@chat/testkit/eventually';
import { testEnv, type ClientSocket } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { uniqueUser } from '@chat/testkit/users';

const open: ClientSocket[] = [];

/** A plain socket.io-client socket (no SDK, no sticky id), as a load tester's tool connects. */
const connect = (url: string, userId: string, transports: string[] = ['websocket']): Promise<Client> => connectClient(url, userId, { transports, reconnection: false }, open);

/** A node's routed fan-out frames so far, by direction (local, sent, received). */
async function frames(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const counts: Record<string, number> = { local: 0, sent: 0, received: 0 };
  for (const match of text.matchAll(/^chat_fanout_frames_total\{[^}]*direction="(\w+)"[^}]*\} (\S+)$/gm)) counts[match[1]!] = Number(match[2]);
  return counts;
}

describe.skipIf(!NGINX)(`the routed fan-out on 3 nodes behind nginx${NGINX ? '' : NO_NGINX}`, () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({ nodes: 3, env: testEnv({ LOG_LEVEL: 'warn' }) });
  });

  afterAll(async () => {
    for (const socket of open) socket.close();
    await cluster?.stop();
  });

  it('publishes a message only to the node that holds its recipient: a node holding nobody receives nothing', async () => {
    const [one, two, three] = cluster.nodes.map((node) => node.url) as [string, string, string];
    const alice = await connect(one, uniqueUser('alice'));
    const bob = await connect(two, uniqueUser('bob'));
    const { conversation } = await alice.ok('conversation:open-direct', { userId: bob.userId });
    const received: string[] = [];
    bob.socket.on('message:new', (message) => received.push(message.id));
    // Let the connect-time presence announcements land before counting.
    await sleep(300);
    const before = await Promise.all([one, two, three].map(frames));
    const sent = 40;
    for (let i = 0; i < sent; i++) await alice.ok('message:send', { conversationId: conversation.id, clientMsgId: randomUUID(), body: `m${i}` });
    await eventually(() => expect(received.length).toBe(sent));
    const after = await Promise.all([one, two, three].map(frames));
    const delta = (node: number, direction: string) => after[node]![direction]! - before[node]![direction]!;
    expect(delta(0, 'sent')).toBe(sent);
    expect(delta(1, 'received')).toBe(sent);
    expect(delta(2, 'received')).toBe(0);
    expect(delta(2, 'sent') + delta(2, 'local')).toBe(0);
  });
  it('never lets a message miss the live path while sockets connect on every node: live ∪ resync holds every seq', async () => {
    const nodes = cluster.nodes.map((node) => node.url);
    const PAIRS = 9;
    const ITERATIONS = 1800;
    const pairs = await Promise.all(
      Array.from({ length: PAIRS }, async (_, p) => {
        const sender = await connect(nodes[p % nodes.length]!, uniqueUser(`race-s${p}`));
        const recipientId = uniqueUser(`race-r${p}`);
        const { conversation } = await sender.ok('conversation:open-direct', { userId: recipientId });
        return { sender, recipientId, token: signToken({ sub: recipientId, name: recipientId }), conversationId: conversation.id, lastAcked: 0 };
      }),
    );
    let stop = false;
    // A logical clock over this process's events: a send stamped after a socket's `connect` was
    // emitted after the client saw it, so it was committed after the handshake completed.
    let clock = 0;
    const emittedAt = new Map<string, Map<number, number>>(pairs.map((pair) => [pair.conversationId, new Map()]));
    // Each sender sends without pause (the next as soon as the last is acked) the whole time.
    const senders = pairs.map(async (pair) => {
      while (!stop) {
        const at = ++clock;
        const { message } = await pair.sender.ok('message:send', { conversationId: pair.conversationId, clientMsgId: randomUUID(), body: 'race' });
        emittedAt.get(pair.conversationId)!.set(message.seq, at);
        pair.lastAcked = Math.max(pair.lastAcked, message.seq);
      }
    });

    let started = 0;
    const misses: Array<{ conversationId: string; seq: number; node: string }> = [];
    let inWindow = 0;
    let inWindowLive = 0;
    let sentAfterConnect = 0;
    // Each pair's recipient connects a new socket again and again, on every node in turn, while its
    // sender sends: what was committed before its resync read must be in the resync, what after must
    // arrive live.
    const recipients = pairs.map(async (pair, p) => {
      for (let i = 0; started < ITERATIONS; i++) {
        started++;
        const node = nodes[(p + i) % nodes.length]!;
        const base = pair.lastAcked;
        const live = new Set<number>();
        const socket: ClientSocket = ioClient(node, { auth: { token: pair.token }, transports: ['websocket'], reconnection: false, forceNew: true });
        socket.on('message:new', (message) => {
          if (message.conversationId === pair.conversationId) live.add(message.seq);
        });
        let connectedAt = 0;
        await new Promise<void>((resolve, reject) => {
          socket.once('connect', () => {
            connectedAt = ++clock;
            resolve();
          });
          socket.once('connect_error', reject);
        });
        const { messages } = await ok(socket, 'history:fetch', { conversationId: pair.conversationId, after: base, limit: 100 });
        const resync = new Set(messages.map((message) => message.seq));
        const top = Math.max(base, ...resync);
        // The next two are committed after the resync read: only the live path can bring them.
        for (const deadline = Date.now() + 5000; !(live.has(top + 1) && live.has(top + 2)) && Date.now() < deadline; ) await sleep(2);
        for (const deadline = Date.now() + 5000; pair.lastAcked < top + 2 && Date.now() < deadline; ) await sleep(2);
        const stamps = emittedAt.get(pair.conversationId)!;
        for (let seq = base + 1; seq <= top + 2; seq++) {
          // Sent after the client saw `connect`: the live path alone must bring it, resync or not.
          const afterConnect = seq > top || (stamps.get(seq) ?? 0) > connectedAt;
          if (!live.has(seq) && (afterConnect || !resync.has(seq))) misses.push({ conversationId: pair.conversationId, seq, node });
          if (seq <= top) {
            inWindow++;
            if (live.has(seq)) inWindowLive++;
            if (afterConnect) sentAfterConnect++;
          }
        }
        socket.close();
      }
    });
    await Promise.all(recipients);
    stop = true;
    await Promise.all(senders);

    console.log(
      `live-path race: ${started} connects over ${nodes.length} nodes; ${inWindow} messages committed while a socket connected (${inWindowLive} of them also live, ${sentAfterConnect} sent after the client saw connect and before its resync read); ${misses.length} missed`,
    );
    expect(started).toBeGreaterThanOrEqual(ITERATIONS);
    // Messages were committed in the connecting window (the race was exercised)…
    expect(inWindow).toBeGreaterThan(ITERATIONS / 10);
    // …and none fell between the resync and the live path.
    expect(misses).toEqual([]);
  }, 240_000);

  it('spreads plain WebSocket clients from one address over every node, and polling clients still upgrade on theirs', async () => {
    const clients = await Promise.all(Array.from({ length: 300 }, (_, i) => connect(cluster.url, uniqueUser(`spread-${i}`))));
    const nodeIds = await Promise.all(clients.map(async (client) => (await client.ok('session:info', {})).nodeId));
    const share = Object.fromEntries(cluster.nodes.map((node) => [node.id, nodeIds.filter((id) => id === node.id).length / nodeIds.length]));
    for (const node of cluster.nodes) expect(share[node.id], JSON.stringify(share)).toBeGreaterThanOrEqual(0.2);
    for (const client of clients) client.socket.close();

    // Long-polling first, then the upgrade: every request of a session must reach its node.
    const polling = await Promise.all(Array.from({ length: 12 }, (_, i) => connect(cluster.url, uniqueUser(`poll-${i}`), ['polling', 'websocket'])));
    await eventually(() => expect(polling.map((client) => client.socket.io.engine.transport.name)).toEqual(polling.map(() => 'websocket')), { timeoutMs: 10_000 });
    const [first, second] = polling as [Client, Client];
    const { conversation } = await first.ok('conversation:open-direct', { userId: second.userId });
    const arrived = new Promise<string>((resolve) => second.socket.on('message:new', (message) => resolve(message.body)));
    await first.ok('message:send', { conversationId: conversation.id, clientMsgId: randomUUID(), body: 'after the upgrade' });
    expect(await arrived).toBe('after the upgrade');
    for (const client of polling) expect((await client.ok('session:info', {})).user.id).toBe(client.userId);
  });
});
