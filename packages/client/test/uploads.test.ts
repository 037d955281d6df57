import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '@chat/testkit/eventually';
import { oggOpus } from '@chat/testkit/media';
import { startNode, type TestNode } from '@chat/testkit/nodes';
import { startS3, type TestS3 } from '@chat/testkit/s3';
import { signToken } from '@chat/testkit/tokens';
import { uniqueUser } from '@chat/testkit/users';
import type { Message } from '@chat/protocol';
import { ChatClient, ChatError } from '../src/index.ts';

let s3: TestS3;
const clients: ChatClient[] = [];
beforeAll(async () => {
  s3 = await startS3();
});
afterAll(async () => {
  for (const client of clients) client.close();
  await s3?.close();
});

async function connected(node: TestNode, userId: string): Promise<ChatClient> {
  const client = new ChatClient({ url: node.url, token: () => signToken({ sub: userId, name: userId }) });
  clients.push(client);
  await client.connect();
  return client;
}

describe.each([
  ['disk', () => ({})],
  ['s3', () => s3.env],
])('SDK uploads on %s', (_name, env) => {
  let node: TestNode;
  beforeAll(async () => {
    node = await startNode({ NODE_ID: `sdk-uploads-${_name}`, ...env() });
  });
  afterAll(() => node?.close());

  it('upload() a File, a Blob or bytes, send it by id, and the other member downloads it', async () => {
    const alice = await connected(node, uniqueUser('alice'));
    const bobId = uniqueUser('bob');
    const bob = await connected(node, bobId);
    const received: Message[] = [];
    bob.on('message', (message) => received.push(message));
    const { conversation } = await alice.request('conversation:open-direct', { userId: bobId });

    const image = await sharp({ create: { width: 200, height: 100, channels: 3, background: '#c33' } })
      .png()
      .toBuffer();
    const photo = await alice.upload(new File([new Uint8Array(image)], 'red.png', { type: 'image/png' }), { conversationId: conversation.id });
    expect(photo).toMatchObject({ name: 'red.png', mime: 'image/png', status: 'ready', width: 200, height: 100, hasThumbnail: true });
    const voice = await alice.upload(oggOpus(1200), { conversationId: conversation.id, name: 'voice.ogg', mimeType: 'audio/ogg' });
    expect(voice).toMatchObject({ mime: 'audio/ogg', durationMs: 1200 });
    // Bytes without a declared type take the sniffed one.
    const sniffed = await alice.upload(new Blob([new Uint8Array(image)]), { conversationId: conversation.id });
    expect(sniffed).toMatchObject({ name: 'file', mime: 'image/png' });

    const outgoing = alice.send({ conversationId: conversation.id, body: 'photo and voice', attachments: [{ uploadId: photo.id }, { uploadId: voice.id }] });
    await eventually(() => expect(received.map((m) => m.clientMsgId)).toContain(outgoing.clientMsgId));
    const message = received.find((m) => m.clientMsgId === outgoing.clientMsgId)!;
    expect(message.attachments.map((a) => [a.uploadId, a.mime])).toEqual([
      [photo.id, 'image/png'],
      [voice.id, 'audio/ogg'],
    ]);

    const urls = await bob.uploadUrls(photo.id);
    expect(urls.url).toMatch(/^http:\/\//);
    expect(Buffer.from(await (await fetch(urls.url)).arrayBuffer()).equals(image)).toBe(true);
    expect((await fetch(urls.thumbnailUrl!)).headers.get('content-type')).toBe('image/jpeg');
  });

  it('rejects with the catalogued code when the bytes lie about their type', async () => {
    const alice = await connected(node, uniqueUser('alice'));
    const { conversation } = await alice.request('conversation:open-direct', { userId: uniqueUser('bob') });
    const lie = alice.upload(new TextEncoder().encode('plain text, not a picture'), { conversationId: conversation.id, name: 'fake.png', mimeType: 'image/png' });
    await expect(lie).rejects.toBeInstanceOf(ChatError);
    await expect(lie).rejects.toMatchObject({ code: 'upload_type_mismatch', retryable: false });
  });
});
