import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MessageWriter, type NewMessage } from '../src/domain/message-writer.ts';
import { startNode, type TestNode } from './helpers/nodes.ts';
import { connectDevice, uniqueUser } from './helpers/users.ts';

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
      const writer = new MessageWriter(node.app.db);
      const message = (clientMsgId: string, text: string): NewMessage => ({ id: randomUUID(), conversationId: conversation.id, senderId: alice.userId, clientMsgId, kind: 'text', body: text, replyToId: null, attachments: [] });
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
});
