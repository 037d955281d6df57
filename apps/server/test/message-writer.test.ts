import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MessageWriter, type NewMessage } from '../src/domain/message-writer.ts';
import { startNode, viaPgBouncer, type TestNode } from '@chat/testkit/nodes';
import { connectDevice, uniqueUser } from '@chat/testkit/users';

let node: TestNode;
beforeAll(async () => {
  node = await startNode();
});
afterAll(() => node?.close());

describe('MessageWriter', () => {
  it('fails a retry batched behind its failed original with the same error, never "not written"', async () => {
    const alice = await connectDevice(node.url, uniqueUser('alice'));
    const bob = await connectDevice(node.url, uniqueUser('bob'));
    const body = `writer-boom-${Date.now()}`;
    // A statement carrying this body fails as a whole, as one does when its connection dies.
    await node.app.db.$executeRawUnsafe(`CREATE OR REPLACE FUNCTION writer_test_boom() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'boom'; END $$ LANGUAGE plpgsql`);
    await node.app.db.$executeRawUnsafe(`CREATE TRIGGER writer_test_boom BEFORE INSERT ON messages FOR EACH ROW WHEN (NEW.body = '${body}') EXECUTE FUNCTION writer_test_boom()`);
    try {
      const { conversation } = await alice.ok('conversation:open-direct', { userId: bob.userId });
      const writer = new MessageWriter(node.app.sql);
      const message = (clientMsgId: string, text: string): NewMessage => ({
        id: randomUUID(),
        conversationId: conversation.id,
        senderId: alice.userId,
        clientMsgId,
        kind: 'text',
        body: text,
        replyToId: null,
        threadRootId: null,
        attachments: [],
      });
      // The first keeps the conversation busy, so the original and its retry queue into one batch.
      const first = writer.write(message('writer-first', 'fine'));
      const original = writer.write(message('writer-retried', body));
      const retry = writer.write(message('writer-retried', body));
      await expect(first).resolves.toMatchObject({ seq: conversation.lastSeq + 1 });
      await expect(original).rejects.toThrow(/boom/);
      await expect(retry).rejects.toThrow(/boom/);
    } finally {
      await node.app.db.$executeRawUnsafe('DROP TRIGGER IF EXISTS writer_test_boom ON messages');
      await node.app.db.$executeRawUnsafe('DROP FUNCTION IF EXISTS writer_test_boom()');
      alice.close();
      bob.close();
    }
  });

  it("in one statement, moves an archived sender's watermarks and unarchives them for the other sender's message, but not a muted archiver", async () => {
    const alice = await connectDevice(node.url, uniqueUser('alice'));
    const bob = await connectDevice(node.url, uniqueUser('bob'));
    const carol = await connectDevice(node.url, uniqueUser('carol'));
    try {
      const { conversation } = await alice.ok('conversation:create-group', { title: 'batch', memberIds: [bob.userId, carol.userId] });
      await bob.ok('conversation:archive', { conversationId: conversation.id, archived: true });
      await carol.ok('conversation:archive', { conversationId: conversation.id, archived: true });
      await carol.ok('conversation:mute', { conversationId: conversation.id, muted: true });
      const batches: number[] = [];
      const writer = new MessageWriter(node.app.sql, (size) => batches.push(size));
      const message = (senderId: string, text: string): NewMessage => ({
        id: randomUUID(),
        conversationId: conversation.id,
        senderId,
        clientMsgId: `writer-archive-${randomUUID()}`,
        kind: 'text',
        body: text,
        replyToId: null,
        threadRootId: null,
        attachments: [],
      });
      // The first keeps the node's statement slot busy, so the next two share one statement.
      const first = writer.write(message(alice.userId, 'first'));
      const fromBob = writer.write(message(bob.userId, 'bob'));
      const fromAlice = writer.write(message(alice.userId, 'alice'));
      const written = await Promise.all([first, fromBob, fromAlice]);
      expect(batches).toEqual([1, 2]);
      expect(written[0]?.unarchivedIds).toEqual([bob.userId]);
      // Bob was unarchived by the first statement; nothing left to unarchive in the second.
      expect([written[1]?.unarchivedIds, written[2]?.unarchivedIds]).toEqual([[], []]);

      // Again with Bob archived before a shared statement carrying his message and Alice's; the filler
      // goes to another conversation, so only that shared statement can unarchive him.
      await bob.ok('conversation:archive', { conversationId: conversation.id, archived: true });
      const { conversation: elsewhere } = await alice.ok('conversation:open-direct', { userId: carol.userId });
      const again = await Promise.all([
        writer.write({ ...message(alice.userId, 'filler'), conversationId: elsewhere.id }),
        writer.write(message(bob.userId, 'bob 2')),
        writer.write(message(alice.userId, 'alice 2')),
      ]);
      expect(batches).toEqual([1, 2, 1, 2]);
      expect(again[1]?.unarchivedIds).toEqual([bob.userId]);
      expect(again[2]?.unarchivedIds).toEqual([]);
      const rows = await node.app.db.conversationMember.findMany({ where: { conversationId: conversation.id }, orderBy: { userId: 'asc' } });
      const byUser = new Map(rows.map((row) => [row.userId, row]));
      expect(byUser.get(bob.userId)).toMatchObject({ archivedAt: null, lastReadSeq: again[1]!.seq, lastDeliveredSeq: again[1]!.seq });
      expect(byUser.get(carol.userId)?.archivedAt).not.toBeNull();
      expect(byUser.get(alice.userId)).toMatchObject({ archivedAt: null, lastReadSeq: again[2]!.seq });
    } finally {
      alice.close();
      bob.close();
      carol.close();
    }
  });

  it(`runs its batch as ${viaPgBouncer() ? 'an unnamed statement (behind PgBouncer)' : 'a named prepared statement'} on the pool Prisma uses, and reports batch sizes`, async () => {
    // One connection: whatever Prisma runs next is on the connection the writer prepared its statement
    // on (directly; behind PgBouncer, on whichever server connection it gets, where nothing is named).
    const single = await startNode({ DATABASE_POOL_SIZE: '1' });
    try {
      const alice = await connectDevice(single.url, uniqueUser('alice'));
      const bob = await connectDevice(single.url, uniqueUser('bob'));
      const { conversation } = await alice.ok('conversation:open-direct', { userId: bob.userId });
      const sent = await Promise.all(['a', 'b', 'c'].map((text, i) => alice.ok('message:send', { conversationId: conversation.id, clientMsgId: `prepared-${i}`, body: text })));
      expect(sent.map((answer) => answer.message.seq).sort()).toEqual([1, 2, 3]);
      await bob.ok('receipt:mark', { conversationId: conversation.id, read: 3 });
      const prepared = await single.app.db.$queryRawUnsafe<Array<{ name: string }>>('SELECT name FROM pg_prepared_statements ORDER BY name');
      const ours = prepared.map((row) => row.name).filter((name) => name.startsWith('chat_'));
      expect(ours).toEqual(viaPgBouncer() ? [] : expect.arrayContaining(['chat_insert_messages_v7', 'chat_update_watermarks_v2']));
      // The batch statements themselves run inside functions, on one generic plan per server connection.
      const functions = await single.app.db.$queryRawUnsafe<Array<{ name: string; config: string[] }>>(
        "SELECT proname AS name, proconfig AS config FROM pg_proc WHERE proname IN ('chat_insert_messages_v7', 'chat_update_watermarks_v2') ORDER BY proname",
      );
      expect(functions.map((f) => [f.name, f.config[0]])).toEqual([
        ['chat_insert_messages_v7', 'plan_cache_mode=force_generic_plan'],
        ['chat_update_watermarks_v2', 'plan_cache_mode=force_generic_plan'],
      ]);
      const metrics = (await single.app.inject({ url: '/metrics' })).body;
      const value = (name: string) => Number(new RegExp(`^${name}\\{[^}]*writer="messages"[^}]*\\} (\\d+)$`, 'm').exec(metrics)?.[1]);
      expect(value('chat_write_batch_size_sum')).toBe(3);
      expect(value('chat_write_batch_size_count')).toBeGreaterThanOrEqual(1);
      expect(value('chat_write_batch_size_count')).toBeLessThanOrEqual(3);
      alice.close();
      bob.close();
    } finally {
      await single.close();
    }
  });
  it.each(['chat_insert_messages_v7', 'chat_update_watermarks_v2'])('plans the statement of %s with index scans and nested loops only, whatever the statistics', async (name) => {
    // The plan is made once per connection, possibly on tables never analysed (as this suite's
    // database may be); under the function's own settings it must reach every row through an index.
    const node = await startNode();
    try {
      const plan = await node.app.db.$transaction(async (tx) => {
        const [fn] = await tx.$queryRawUnsafe<Array<{ src: string; args: string[]; types: string; config: string[] }>>(
          'SELECT prosrc AS src, proargnames[1:pronargs] AS args, oidvectortypes(proargtypes) AS types, proconfig AS config FROM pg_proc WHERE proname = $1',
          name,
        );
        if (!fn) throw new Error(`no function ${name}`);
        let statement = fn.src.slice(fn.src.indexOf('RETURN QUERY') + 'RETURN QUERY'.length, fn.src.lastIndexOf(';'));
        for (const [i, arg] of [...fn.args.entries()].sort((a, b) => b[1].length - a[1].length)) statement = statement.replace(new RegExp(`\\b${arg}\\b`, 'g'), `$${i + 1}`);
        for (const setting of fn.config) {
          const [key, value] = setting.split('=');
          await tx.$executeRawUnsafe(`SET LOCAL ${key} = ${value}`);
        }
        await tx.$executeRawUnsafe(`PREPARE plan_check(${fn.types}) AS ${statement}`);
        const [explained] = await tx.$queryRawUnsafe<Array<{ 'QUERY PLAN': unknown }>>(`EXPLAIN (FORMAT JSON) EXECUTE plan_check(${fn.args.map(() => 'NULL').join(', ')})`);
        await tx.$executeRawUnsafe('DEALLOCATE plan_check');
        return explained!['QUERY PLAN'];
      });
      const nodes: Array<{ 'Node Type': string; 'Relation Name'?: string }> = [];
      const walk = (node: { 'Node Type': string; Plans?: unknown[] }) => {
        nodes.push(node);
        for (const child of node.Plans ?? []) walk(child as typeof node);
      };
      walk((plan as Array<{ Plan: { 'Node Type': string } }>)[0]!.Plan);
      const tables = nodes.filter((node) => node['Relation Name'] && node['Node Type'] !== 'ModifyTable');
      expect(tables.length).toBeGreaterThan(0);
      expect(tables.filter((node) => !['Index Scan', 'Index Only Scan'].includes(node['Node Type']))).toEqual([]);
      expect(nodes.filter((node) => ['Hash Join', 'Merge Join'].includes(node['Node Type']))).toEqual([]);
    } finally {
      await node.close();
    }
  });
});
