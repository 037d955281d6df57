import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ScheduledStore } from '../src/db/scheduled-messages.ts';
import { ScheduledRetention } from '../src/domain/scheduled-retention.ts';
import { eventually } from '@chat/testkit/eventually';
import { startNode, testNode, type TestNode } from '@chat/testkit/nodes';
import { ownDatabase, type OwnDatabase } from '@chat/testkit/own-database';
import { testDevice, uniqueUser } from '@chat/testkit/users';

// The retention sweep of finished scheduled messages, on a real PostgreSQL database of this file's
// own: every test starts from an empty table and counts every row it deletes. The node's own sweep
// (default retention, first run minutes after start) never runs within these tests; the last test
// starts a second node whose retention is seconds to see the timer and the metric.
const HOUR_MS = 3600_000;

let db: OwnDatabase;
let node: TestNode;
let store: ScheduledStore;
let owner: { senderId: string; conversationId: string };

beforeAll(async () => {
  db = await ownDatabase('scheduled_retention');
  node = await startNode({ DATABASE_URL: db.url, NODE_ID: 'retention-a' });
  store = new ScheduledStore(node.app.sql);
  owner = { senderId: uniqueUser('retention'), conversationId: randomUUID() };
  await db.query('INSERT INTO users (id, display_name) VALUES ($1, $1)', [owner.senderId]);
  await db.query(`INSERT INTO conversations (id, kind, title, owner_id) VALUES ($1, 'group', 'retention', $2)`, [owner.conversationId, owner.senderId]);
});
afterAll(async () => {
  await node?.close();
  await db?.drop();
});
beforeEach(async () => {
  await db.query('DELETE FROM scheduled_messages');
});

type Status = 'pending' | 'sending' | 'sent' | 'failed' | 'canceled';

/**
 * Inserts `count` rows in `status`, last updated `ageMs` ago by the database's clock (the i-th one
 * i seconds earlier still), due in 30 days; a `sending` one's lease runs for another hour. So the
 * node's scheduler claims none of them. Answers their ids, newest first.
 */
async function rows(status: Status, ageMs: number, count = 1): Promise<string[]> {
  const inserted = await db.query<{ id: string; updated_at: Date }>(
    `INSERT INTO scheduled_messages (id, conversation_id, sender_id, client_msg_id, body, send_at, status, lease_until, created_at, updated_at)
     SELECT gen_random_uuid(), $1, $2, 'retention-' || gen_random_uuid(), 'x', now() + interval '30 days', $3::"ScheduledStatus",
            CASE WHEN $3::text = 'sending' THEN now() + interval '1 hour' END, t.at, t.at
       FROM generate_series(0, $5::int - 1) AS i, LATERAL (SELECT now() - make_interval(secs => $4::bigint / 1000.0 + i)) AS t(at)
     RETURNING id::text, updated_at`,
    [owner.conversationId, owner.senderId, status, ageMs, count],
  );
  return inserted.sort((a, b) => b.updated_at.getTime() - a.updated_at.getTime()).map((row) => row.id);
}

const remaining = async () => (await db.query<{ id: string }>('SELECT id::text FROM scheduled_messages')).map((row) => row.id).sort();

describe('retention of finished scheduled messages', () => {
  it('deletes finished rows older than the retention; younger ones, pending and sending ones stay', async () => {
    const old = [...(await rows('sent', 2 * HOUR_MS, 2)), ...(await rows('failed', 2 * HOUR_MS, 2)), ...(await rows('canceled', 2 * HOUR_MS, 2))];
    const young = [...(await rows('sent', HOUR_MS / 2)), ...(await rows('failed', HOUR_MS / 2)), ...(await rows('canceled', HOUR_MS - 60_000))];
    // Untouched however old their last update: not finished.
    const unfinished = [...(await rows('pending', 100 * HOUR_MS, 3)), ...(await rows('sending', 100 * HOUR_MS, 2))];
    const swept: number[] = [];
    const retention = new ScheduledRetention(store, { retentionMs: HOUR_MS, onSwept: (count) => swept.push(count) });
    expect(await retention.sweep()).toBe(old.length);
    expect(swept).toEqual([old.length]);
    expect(await remaining()).toEqual([...young, ...unfinished].sort());
    expect(await retention.sweep()).toBe(0);
    expect(await remaining()).toEqual([...young, ...unfinished].sort());
  });

  it('deletes at most one batch per statement, oldest first, across statuses, until none is left', async () => {
    // Newest first: the last ones are the oldest.
    const sent = await rows('sent', 2 * HOUR_MS, 7);
    expect(await store.sweep(HOUR_MS, 3)).toBe(3);
    expect(await remaining()).toEqual(sent.slice(0, 4).sort());
    expect(await store.sweep(HOUR_MS, 3)).toBe(3);
    expect(await store.sweep(HOUR_MS, 3)).toBe(1);
    expect(await store.sweep(HOUR_MS, 3)).toBe(0);

    // A batch spans the finished statuses, and stops at its bound.
    const mixed = [...(await rows('sent', 2 * HOUR_MS, 2)), ...(await rows('failed', 2 * HOUR_MS, 2)), ...(await rows('canceled', 2 * HOUR_MS, 2))];
    expect(await store.sweep(HOUR_MS, 3)).toBe(3);
    const left = await remaining();
    expect(left).toHaveLength(3);
    expect(mixed).toEqual(expect.arrayContaining(left));
    expect(await store.sweep(HOUR_MS, 5)).toBe(3);
    expect(await remaining()).toEqual([]);

    // The sweep repeats statements of one batch each, and ends on a short one.
    await rows('canceled', 2 * HOUR_MS, 7);
    const swept: number[] = [];
    expect(await new ScheduledRetention(store, { retentionMs: HOUR_MS, batch: 3, onSwept: (count) => swept.push(count) }).sweep()).toBe(7);
    expect(swept).toEqual([3, 3, 1]);
  });

  it('passes over a row another transaction holds instead of waiting for it, and concurrent sweeps delete each row once', async () => {
    const [held, ...others] = await rows('canceled', 2 * HOUR_MS, 5);
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT id FROM scheduled_messages WHERE id = $1 FOR UPDATE', [held]);
      // Resolves while the row is still locked: the sweep did not wait for it.
      expect(await new ScheduledRetention(store, { retentionMs: HOUR_MS, batch: 2 }).sweep()).toBe(others.length);
      expect(await remaining()).toEqual([held]);
      await holder.query('COMMIT');
    } finally {
      await holder.end();
    }
    expect(await store.sweep(HOUR_MS, 2)).toBe(1);

    await rows('sent', 2 * HOUR_MS, 40);
    const sweeps = Array.from({ length: 3 }, () => new ScheduledRetention(store, { retentionMs: HOUR_MS, batch: 4 }));
    const deleted = await Promise.all(sweeps.map((sweep) => sweep.sweep()));
    expect(deleted.reduce((sum, count) => sum + count, 0)).toBe(40);
    expect(await remaining()).toEqual([]);
  });

  it('a stopped sweep deletes nothing more', async () => {
    await rows('sent', 2 * HOUR_MS, 3);
    const retention = new ScheduledRetention(store, { retentionMs: HOUR_MS, batch: 1 });
    await retention.stop();
    expect(await retention.sweep()).toBe(0);
    expect((await remaining()).length).toBe(3);
  });

  it('once swept, a finished message answers as one that never existed; a sent one still holds its clientMsgId', async () => {
    const alice = await testDevice(node.url, uniqueUser('alice'));
    const { conversation } = await alice.ok('conversation:create-group', { title: 'retention', memberIds: [] });
    const schedule = (clientMsgId: string, sendAt: string) => alice.call('message:schedule', { conversationId: conversation.id, clientMsgId, body: 'later', sendAt });
    const sentId = `ret-${randomUUID()}`;
    const canceledId = `ret-${randomUUID()}`;
    const { scheduled: sent } = await alice.ok('message:schedule', { conversationId: conversation.id, clientMsgId: sentId, body: 'soon', sendAt: new Date(Date.now() + 300).toISOString() });
    const { scheduled: canceled } = await alice.ok('message:schedule', {
      conversationId: conversation.id,
      clientMsgId: canceledId,
      body: 'never',
      sendAt: new Date(Date.now() + 60_000).toISOString(),
    });
    await alice.ok('message:scheduled-cancel', { scheduledId: canceled.id });
    await eventually(async () => expect((await node.app.db.scheduledMessage.findUniqueOrThrow({ where: { id: sent.id } })).status).toBe('sent'));
    // Finished, not yet swept: retries find it, edits are refused as not pending.
    expect(await schedule(sentId, new Date(Date.now() + 60_000).toISOString())).toMatchObject({ ok: true, duplicate: true, scheduled: { id: sent.id, status: 'sent' } });
    expect(await alice.call('message:scheduled-edit', { scheduledId: canceled.id, body: 'x' })).toMatchObject({ ok: false, error: { code: 'scheduled_not_pending' } });

    await db.query(`UPDATE scheduled_messages SET updated_at = now() - interval '169 hours' WHERE id = ANY($1::uuid[])`, [[sent.id, canceled.id]]);
    expect(await new ScheduledRetention(store, { retentionMs: 168 * HOUR_MS }).sweep()).toBe(2);
    for (const scheduledId of [sent.id, canceled.id]) {
      expect(await alice.call('message:scheduled-edit', { scheduledId, body: 'x' })).toMatchObject({ ok: false, error: { code: 'not_found' } });
      expect(await alice.call('message:scheduled-cancel', { scheduledId })).toMatchObject({ ok: false, error: { code: 'not_found' } });
    }
    // The sent message keeps its clientMsgId taken; the canceled one's is free again.
    expect(await schedule(sentId, new Date(Date.now() + 60_000).toISOString())).toMatchObject({ ok: false, error: { code: 'conflict' } });
    expect(await schedule(canceledId, new Date(Date.now() + 60_000).toISOString())).toMatchObject({ ok: true, duplicate: false, scheduled: { status: 'pending' } });
    expect((await alice.ok('message:scheduled-list', {})).scheduled.map((s) => s.clientMsgId)).toEqual([canceledId]);
  });

  it('runs on every node on its own timer, counting what it deleted in chat_scheduled_messages_swept_total', async () => {
    await rows('failed', HOUR_MS, 3);
    const pending = await rows('pending', HOUR_MS);
    // 0.001 h = 3.6 s of retention: a sweep about every second.
    const short = await testNode({ DATABASE_URL: db.url, NODE_ID: 'retention-b', SCHEDULED_RETENTION_HOURS: '0.001' });
    await eventually(async () => expect(await remaining()).toEqual(pending), { timeoutMs: 10_000 });
    const metrics = (await short.app.inject({ url: '/metrics' })).body;
    expect(metrics).toMatch(/^chat_scheduled_messages_swept_total\{node="retention-b"\} 3$/m);
    expect((await node.app.inject({ url: '/metrics' })).body).toMatch(/^chat_scheduled_messages_swept_total\{node="retention-a"\} 0$/m);
  });
});
