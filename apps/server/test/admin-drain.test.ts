// The issue's acceptance test for the operator's console: "Draining a node from the page or the API
// moves its sockets elsewhere with 0 lost". Three real node processes behind a private nginx; 30 SDK
// clients (outbox retries unacked sends after a reconnect, resync catches up what a socket missed)
// keep sending to three shared groups while one node is drained through the API, via nginx.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ChatClient } from '@chat/client';
import type { Message } from '@chat/protocol';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { checkDatabase } from '@chat/chaos/verify';
import { startCluster, type Cluster, processAlive } from '@chat/testkit/cluster';
import { NGINX, NO_NGINX } from '@chat/testkit/cluster-client';
import { eventually } from '@chat/testkit/eventually';
import { testEnv } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { uniqueUser } from '@chat/testkit/users';

const ADMIN_KEY = `admin-${randomUUID()}`;
const GROUPS = 3;
const PER_GROUP = 10;
/** Load pacing only (each client sends, awaits its ack, waits this long): nothing waits on it for correctness. */
const PACE_MS = 100;

describe.skipIf(!NGINX)(`draining a node through the admin API${NGINX ? '' : NO_NGINX}`, () => {
  let cluster: Cluster;
  const clients: ChatClient[] = [];

  beforeAll(async () => {
    cluster = await startCluster({ nodes: 3, env: testEnv({ LOG_LEVEL: 'warn', ADMIN_API_KEYS: `ops:${ADMIN_KEY}`, DRAIN_DELAY_MS: '1000', SHUTDOWN_TIMEOUT_MS: '15000' }), readyTimeoutMs: 120_000 });
  }, 180_000);
  afterAll(async () => {
    for (const client of clients) client.close();
    await cluster?.stop();
  });

  const api = async (path: string, method = 'GET') => {
    const response = await fetch(`${cluster.url}${path}`, { method, headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  it('moves its sockets to the other nodes with 0 lost: every send acked, stored once in seq order, received by every member', async () => {
    const users = Array.from({ length: GROUPS * PER_GROUP }, (_, i) => uniqueUser(`drain-${i}`));
    const received = users.map(() => new Set<string>());
    for (const [i, userId] of users.entries()) {
      const client = new ChatClient({ url: cluster.url, token: () => signToken({ sub: userId, name: userId }), transports: ['websocket'], retry: { initialDelayMs: 100, maxDelayMs: 1000 } });
      client.on('message', (message) => received[i]!.add(message.id));
      clients.push(client);
    }
    await Promise.all(clients.map((client) => client.connect()));
    const groupOf = (i: number) => Math.floor(i / PER_GROUP);
    const conversations: string[] = [];
    for (let g = 0; g < GROUPS; g++) {
      const members = users.slice(g * PER_GROUP + 1, (g + 1) * PER_GROUP);
      conversations.push((await clients[g * PER_GROUP]!.request('conversation:create-group', { title: `drain ${g}`, memberIds: members })).conversation.id);
    }

    const nodeOf = async (client: ChatClient) => (await client.request('session:info', {})).nodeId;
    const before = await Promise.all(clients.map(nodeOf));
    const counts = new Map<string, number>();
    for (const id of before) counts.set(id, (counts.get(id) ?? 0) + 1);
    const [target] = [...counts].sort((a, b) => b[1] - a[1])[0]!;
    const index = cluster.nodes.findIndex((node) => node.id === target);
    const { pid } = cluster.nodes[index]!;
    const others = cluster.nodes
      .map((node) => node.id)
      .filter((id) => id !== target)
      .sort();

    // Every client sends to its group, one message at a time, until told to stop.
    const acked: Message[] = [];
    const ackedBy = clients.map(() => 0);
    const failures: string[] = [];
    let sending = true;
    const senders = clients.map(async (client, i) => {
      for (let n = 0; sending; n++) {
        try {
          acked.push(await client.send({ conversationId: conversations[groupOf(i)]!, body: `${users[i]} #${n}` }).acked);
          ackedBy[i]! += 1;
        } catch (error) {
          failures.push(`${users[i]} #${n}: ${String(error)}`);
          return;
        }
        await sleep(PACE_MS);
      }
    });

    try {
      await eventually(() => expect(Math.min(...ackedBy)).toBeGreaterThanOrEqual(2), { timeoutMs: 30_000, intervalMs: 50 });
      expect(await api(`/v1/admin/nodes/${target}/drain`, 'POST')).toEqual({ status: 202, body: { ok: true, node: target, draining: true } });

      // The process drains and exits 0 by itself.
      await eventually(() => expect(processAlive(pid)).toBe(false), { timeoutMs: 30_000, intervalMs: 100 });
      expect(await cluster.killNode(index)).toEqual({ code: 0, signal: null });
      await eventually(async () => expect((await api('/v1/admin/nodes')).body['nodes']).toEqual(others.map((id) => expect.objectContaining({ id, draining: false }))), {
        timeoutMs: 15_000,
        intervalMs: 100,
      });

      // Every client is on another node and keeps getting its sends acked.
      const atExit = [...ackedBy];
      await eventually(
        () => {
          for (const [i, count] of ackedBy.entries()) expect(count, users[i]).toBeGreaterThanOrEqual(atExit[i]! + 2);
        },
        { timeoutMs: 30_000, intervalMs: 50 },
      );
      const after = await Promise.all(clients.map(nodeOf));
      expect(after.filter((id) => id === target)).toEqual([]);
      expect(before.filter((id) => id === target).length).toBeGreaterThan(0);
    } finally {
      sending = false;
      await Promise.all(senders);
    }
    expect(failures).toEqual([]);

    // In PostgreSQL exactly once each, where the ack said, every conversation's seqs 1..last_seq.
    const report = await checkDatabase(
      inject('databaseUrl'),
      acked.map((message) => [message.conversationId, message.seq, message.id] as const),
    );
    expect(report).toMatchObject({ acked: acked.length, missing: 0, mismatched: 0, duplicateRows: 0, conversations: GROUPS, gappy: 0 });

    // Every member has every message of its group, live or by resync.
    const byGroup = conversations.map((id) => acked.filter((message) => message.conversationId === id).map((message) => message.id));
    await eventually(
      () => {
        for (const [i, seen] of received.entries()) {
          const missing = byGroup[groupOf(i)]!.filter((id) => !seen.has(id));
          expect(missing, `${users[i]} misses ${missing.length} messages`).toEqual([]);
        }
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  }, 180_000);
});
