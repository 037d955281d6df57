import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { ChatClient, type OutgoingMessage } from '@chat/client';
import { startPrivatePgBouncer, startPrivatePostgres, type PrivatePgBouncer, type PrivatePostgres } from '@chat/testkit/services';
import { applyMigrations } from '../src/db/migrations.ts';
import { eventually } from '@chat/testkit/eventually';
import { startNode, viaPgBouncer, type TestNode } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { testDevice, uniqueUser, type Device } from '@chat/testkit/users';

// A PostgreSQL of this file's own, because it is stopped under a running node; in the pgbouncer
// project the node reaches it through a PgBouncer of its own, which stays up throughout.
let postgres: PrivatePostgres;
let bouncer: PrivatePgBouncer | undefined;
let node: TestNode;

beforeAll(async () => {
  postgres = await startPrivatePostgres();
  await applyMigrations({ kind: 'postgres', connectionString: postgres.url });
  if (viaPgBouncer()) bouncer = await startPrivatePgBouncer({ target: postgres.url, poolSize: 4 });
  node = await startNode({ DATABASE_URL: bouncer?.url ?? postgres.url, NODE_ID: 'pg-outage' });
}, 60_000);
afterAll(async () => {
  await node?.close();
  await bouncer?.destroy();
  await postgres?.destroy();
});

const device = (userId: string): Promise<Device> => testDevice(node.url, userId);

describe('PostgreSQL down under a node', () => {
  it('answers sends with a prompt, retryable unavailable (never ok, never a hang) and takes the retry once it is back', async () => {
    const alice = await device(uniqueUser('alice'));
    const bob = await device(uniqueUser('bob'));
    const { conversation } = await alice.ok('conversation:open-direct', { userId: bob.userId });
    // Warm connections in the pool: the outage must cut live connections too, not only new ones.
    await alice.ok('message:send', { conversationId: conversation.id, clientMsgId: 'before-outage', body: 'before-outage' });

    await postgres.stop();
    try {
      for (const clientMsgId of ['during-outage-1', 'during-outage-2', 'during-outage-3']) {
        const started = Date.now();
        const ack = await alice.call('message:send', { conversationId: conversation.id, clientMsgId, body: 'while down' });
        // Well inside the SDK's 10 s ack timeout: the node says so instead of leaving the client waiting.
        expect(Date.now() - started).toBeLessThan(5000);
        expect(ack).toMatchObject({ ok: false, error: { code: 'unavailable', retryable: true } });
      }
      // Several at once, retries of one clientMsgId among them: all unavailable, none a non-retryable conflict
      // (the batched-retry case itself is in message-writer.test.ts).
      const racing = await Promise.all(
        ['race-outage-1', 'race-outage-2', 'race-outage-2', 'race-outage-2'].map((clientMsgId) => alice.call('message:send', { conversationId: conversation.id, clientMsgId, body: 'racing' })),
      );
      for (const ack of racing) expect(ack).toMatchObject({ ok: false, error: { code: 'unavailable' } });
      // Reads through the same pool say the same.
      expect(await alice.call('history:fetch', { conversationId: conversation.id, limit: 10 })).toMatchObject({ ok: false, error: { code: 'unavailable', retryable: true } });
      expect((await node.app.inject({ url: '/readyz' })).statusCode).toBe(503);
    } finally {
      await postgres.start();
    }

    // The same clientMsgId again, as the SDK retries: written once, with the next seq.
    const retried = await eventually(
      async () => {
        const ack = await alice.call('message:send', { conversationId: conversation.id, clientMsgId: 'during-outage-1', body: 'while down' });
        if (!ack.ok) throw new Error(JSON.stringify(ack.error));
        return ack.message;
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );
    expect(retried.seq).toBe(conversation.lastSeq + 2);
    const rows = await node.app.db.message.findMany({ where: { conversationId: conversation.id, clientMsgId: { in: ['before-outage', 'during-outage-1', 'during-outage-2', 'during-outage-3'] } } });
    expect(rows.map((row) => row.clientMsgId).sort()).toEqual(['before-outage', 'during-outage-1']);
  });

  it('lets the SDK ride it out: a send during the outage is retried with the same clientMsgId and succeeds after', async () => {
    const aliceId = uniqueUser('alice');
    const bob = await device(uniqueUser('bob'));
    const client = new ChatClient({ url: node.url, token: () => signToken({ sub: aliceId, name: aliceId }), retry: { initialDelayMs: 100, maxDelayMs: 500 } });
    onTestFinished(() => client.close());
    await client.connect();
    const { conversation } = await client.request('conversation:open-direct', { userId: bob.userId });

    await postgres.stop();
    let outgoing: OutgoingMessage | undefined;
    try {
      outgoing = client.send({ conversationId: conversation.id, body: 'sent while PostgreSQL is down' });
      await eventually(() => expect(outgoing!.attempts).toBeGreaterThanOrEqual(2), { timeoutMs: 5000 });
      expect(outgoing.state).toBe('sending');
    } finally {
      await postgres.start();
    }
    const message = await outgoing.acked;
    expect(message.seq).toBe(conversation.lastSeq + 1);
    await eventually(() => expect(bob.of('message:new').map((m) => m.id)).toEqual([message.id]));
    expect(await node.app.db.message.count({ where: { conversationId: conversation.id } })).toBe(1);
  });

  it('announces a user who left during the outage as offline once PostgreSQL is back (the contacts query had failed)', async () => {
    const alice = await device(uniqueUser('alice'));
    const bob = await device(uniqueUser('bob'));
    await alice.ok('conversation:open-direct', { userId: bob.userId });
    const bobOffline = () => alice.of('presence:updated').filter((presence) => presence.userId === bob.userId && !presence.online);

    await postgres.stop();
    try {
      bob.close();
      // Gone from the store at once; its announcement waits for PostgreSQL.
      await eventually(() => expect(node.app.services.presence.deferredCount).toBeGreaterThanOrEqual(1), { timeoutMs: 10_000 });
      expect(bobOffline()).toEqual([]);
      const [view] = await node.app.state.presence.get([bob.userId]);
      expect(view?.online).toBe(false);
    } finally {
      await postgres.start();
    }
    // The presence tick (every PRESENCE_NODE_TTL_MS / 4) makes it once PostgreSQL answers.
    await eventually(() => expect(bobOffline()).toHaveLength(1), { timeoutMs: 20_000, intervalMs: 200 });
    expect(bobOffline()[0]!.lastSeenAt).not.toBeNull();
    const row = await node.app.db.user.findUnique({ where: { id: bob.userId } });
    expect(row?.lastSeenAt).not.toBeNull();
    expect(node.app.services.presence.deferredCount).toBe(0);
  }, 45_000);
});
