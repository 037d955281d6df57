import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startNode, type TestNode } from '../../server/test/helpers/nodes.ts';
import { connectDevice, uniqueUser } from '../../server/test/helpers/users.ts';
import { checkDatabase } from '../src/verify.ts';

let node: TestNode;
beforeAll(async () => {
  node = await startNode();
});
afterAll(() => node?.close());

// The chaos run's PostgreSQL check must see each way a message can go wrong, not only pass.
describe('checkDatabase', () => {
  it('finds acked messages that are missing, moved, stored twice, and conversations with a seq gap', async () => {
    const alice = await connectDevice(node.url, uniqueUser('alice'));
    const bob = await connectDevice(node.url, uniqueUser('bob'));
    try {
      const { conversation } = await alice.ok('conversation:open-direct', { userId: bob.userId });
      const sent = [];
      for (let i = 0; i < 3; i++) sent.push((await alice.ok('message:send', { conversationId: conversation.id, clientMsgId: `verify-${Date.now()}-${i}`, body: `body ${i}` })).message);
      const acked = sent.map((message) => [message.conversationId, message.seq, message.id] as [string, number, string]);

      const clean = await checkDatabase(inject('databaseUrl'), acked);
      expect(clean).toMatchObject({ acked: 3, missing: 0, mismatched: 0, duplicateRows: 0, conversations: 1, gappy: 0 });

      const broken = await checkDatabase(inject('databaseUrl'), [...acked.slice(0, 2), [conversation.id, sent[2]!.seq + 1, sent[2]!.id], [conversation.id, 99, randomUUID()]]);
      expect(broken).toMatchObject({ acked: 4, missing: 1, mismatched: 1, gappy: 0 });

      const db = new pg.Client({ connectionString: inject('databaseUrl') });
      await db.connect();
      try {
        // The same send stored twice (another clientMsgId, the same body), then a seq skipped.
        await db.query(
          `INSERT INTO messages (id, conversation_id, seq, version, sender_id, client_msg_id, kind, body)
           SELECT gen_random_uuid(), conversation_id, seq + 1, version + 1, sender_id, client_msg_id || '-again', kind, body FROM messages WHERE id = $1`,
          [sent[2]!.id],
        );
        await db.query('UPDATE conversations SET last_seq = last_seq + 2 WHERE id = $1', [conversation.id]);
        const tampered = await checkDatabase(inject('databaseUrl'), acked);
        expect(tampered).toMatchObject({ missing: 0, duplicateRows: 1, gappy: 1 });
      } finally {
        await db.end();
      }
    } finally {
      alice.close();
      bob.close();
    }
  });
});
