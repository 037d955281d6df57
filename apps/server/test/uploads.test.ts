import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errorCatalog, type UploadSlot } from '@chat/protocol';
import fc from 'fast-check';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '@chat/testkit/eventually';
import { oggOpus, png, wav } from '@chat/testkit/media';
import { startNode, type TestNode } from '@chat/testkit/nodes';
import { startS3, type TestS3 } from '@chat/testkit/s3';
import { signToken } from '@chat/testkit/tokens';
import { testDevice, uniqueUser, type Device } from '@chat/testkit/users';

const MAX_BYTES = 200_000;

interface Backend {
  name: 'disk' | 's3';
  env(): Record<string, string>;
  /** Every object the backend holds, by key. */
  keys(): Promise<string[]>;
}

let s3: TestS3;
let uploadDir: string;

beforeAll(async () => {
  s3 = await startS3();
  uploadDir = await mkdtemp(join(tmpdir(), 'chat-uploads-'));
});
afterAll(async () => {
  await s3?.close();
  await rm(uploadDir, { recursive: true, force: true });
});

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const nested = await Promise.all(entries.map((entry) => (entry.isDirectory() ? listFiles(join(dir, entry.name), `${prefix}${entry.name}/`) : [`${prefix}${entry.name}`])));
  return nested.flat();
}

const backends: Backend[] = [
  { name: 'disk', env: () => ({ STORAGE: 'disk', UPLOAD_DIR: uploadDir }), keys: () => listFiles(uploadDir) },
  { name: 's3', env: () => s3.env, keys: () => s3.keys() },
];

describe.each(backends)('uploads on $name', (backend) => {
  let node: TestNode;
  beforeAll(async () => {
    node = await startNode({ NODE_ID: `uploads-${backend.name}`, UPLOAD_MAX_BYTES: String(MAX_BYTES), UPLOAD_MAX_IMAGE_PIXELS: '4000000', ...backend.env() });
  });
  afterAll(() => node?.close());

  const absolute = (url: string) => new URL(url, node.url).toString();
  const put = (slot: UploadSlot, bytes: Buffer, type = slot.upload.mime) => fetch(absolute(slot.putUrl), { method: 'PUT', body: new Uint8Array(bytes), headers: { 'content-type': type } });

  /** Alice and Bob share a direct conversation; Carol is a stranger to it. */
  async function setUp() {
    const alice = await testDevice(node.url, uniqueUser('alice'));
    const bob = await testDevice(node.url, uniqueUser('bob'));
    const carol = await testDevice(node.url, uniqueUser('carol'));
    const { conversation } = await alice.ok('conversation:open-direct', { userId: bob.userId });
    return { alice, bob, carol, conversationId: conversation.id };
  }

  async function upload(device: Device, conversationId: string, bytes: Buffer, mimeType: string, name = 'file') {
    const slot = await device.ok('upload:create', { conversationId, name, mimeType, size: bytes.length });
    expect((await put(slot, bytes, mimeType)).status).toBe(200);
    return device.call('upload:complete', { uploadId: slot.upload.id });
  }

  it('an image: verified, measured, thumbnailed, attached by id, downloaded by members only', async () => {
    const { alice, bob, carol, conversationId } = await setUp();
    const image = await sharp({ create: { width: 640, height: 480, channels: 3, background: '#36c' } })
      .png()
      .toBuffer();
    const slot = await alice.ok('upload:create', { conversationId, name: 'holiday.png', mimeType: 'image/png', size: image.length });
    expect(slot.maxBytes).toBe(image.length);
    expect(Date.parse(slot.expiresAt)).toBeGreaterThan(Date.now());
    expect(slot.putUrl).not.toContain('holiday');
    expect((await put(slot, image)).status).toBe(200);
    const { upload: done } = await alice.ok('upload:complete', { uploadId: slot.upload.id });
    expect(done).toMatchObject({ status: 'ready', mime: 'image/png', size: image.length, width: 640, height: 480, hasThumbnail: true, durationMs: null });

    // Not visible to the other member before a message attaches it.
    expect(await bob.call('upload:url', { uploadId: done.id })).toMatchObject({ ok: false, error: { code: 'not_found' } });
    const { message } = await alice.ok('message:send', { conversationId, clientMsgId: `up-${randomUUID()}`, body: 'look', kind: 'image', attachments: [{ uploadId: done.id }] });
    expect(message.attachments).toEqual([{ uploadId: done.id, mime: 'image/png', size: image.length, name: 'holiday.png' }]);
    await eventually(() => expect(bob.of('message:new').at(-1)?.attachments).toEqual(message.attachments));
    const history = await bob.ok('history:fetch', { conversationId });
    expect(history.messages.at(-1)?.attachments).toEqual(message.attachments);

    const urls = await bob.ok('upload:url', { uploadId: done.id });
    const file = await fetch(absolute(urls.url));
    expect(file.status).toBe(200);
    expect(file.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await file.arrayBuffer()).equals(image)).toBe(true);
    const thumbnail = Buffer.from(await (await fetch(absolute(urls.thumbnailUrl!))).arrayBuffer());
    expect(await sharp(thumbnail).metadata()).toMatchObject({ format: 'jpeg', width: 320, height: 240 });

    // A stranger gets exactly what a missing id gets, for every upload event.
    const missing = randomUUID();
    for (const [event, payload] of [
      ['upload:url', { uploadId: done.id }],
      ['upload:complete', { uploadId: done.id }],
      ['upload:create', { conversationId, name: 'x', mimeType: 'image/png', size: 10 }],
    ] as const) {
      const stranger = await carol.call(event, payload as never);
      const absent = await carol.call(event, { ...payload, ...('uploadId' in payload ? { uploadId: missing } : { conversationId: missing }) } as never);
      expect(stranger).toEqual(absent);
      expect(stranger).toMatchObject({ ok: false, error: { code: 'not_found' } });
    }
    // A tampered or expired link is refused like a missing one.
    // (The disk backend's links; s3rver does not check presigned signatures the way S3 does.)
    if (backend.name === 'disk') {
      const tampered = absolute(urls.url).replace(/sig=[0-9a-f]{4}/, 'sig=0000');
      expect(await (await fetch(tampered)).json()).toMatchObject({ ok: false, error: { code: 'not_found' } });
      const expired = absolute(urls.url).replace(/exp=\d+/, `exp=${Date.now() - 1000}`);
      expect((await fetch(expired)).status).toBe(404);
    }
  });

  it('voice notes get their duration; the REST routes run the same operations', async () => {
    const { alice, conversationId } = await setUp();
    const headers = { authorization: `Bearer ${signToken({ sub: alice.userId, name: alice.userId })}` };
    for (const [bytes, mimeType, durationMs] of [
      [oggOpus(2000), 'audio/ogg', 2000],
      [wav(1500), 'audio/wav', 1500],
    ] as const) {
      const created = await node.app.inject({ method: 'POST', url: '/v1/uploads', headers, payload: { conversationId, name: 'voice', mimeType, size: bytes.length } });
      expect(created.statusCode).toBe(201);
      const slot = created.json<UploadSlot & { ok: true }>();
      expect((await put(slot, bytes, mimeType)).status).toBe(200);
      const completed = await node.app.inject({ method: 'POST', url: `/v1/uploads/${slot.upload.id}/complete`, headers });
      expect(completed.statusCode).toBe(200);
      expect(completed.json().upload).toMatchObject({ status: 'ready', mime: mimeType, durationMs, width: null, hasThumbnail: false });
      const urls = await node.app.inject({ method: 'GET', url: `/v1/uploads/${slot.upload.id}/url`, headers });
      expect(urls.json()).toMatchObject({ ok: true, thumbnailUrl: null, upload: { id: slot.upload.id } });
    }
  });

  it("lets the browser page reach the storage: its own origin for disk, the bucket's too for S3", async () => {
    const csp = (await fetch(`${node.url}/`)).headers.get('content-security-policy') ?? '';
    const connect = /connect-src ([^;]*)/.exec(csp)?.[1];
    expect(connect).toBe(backend.name === 's3' ? `'self' ws: wss: ${s3.endpoint}` : "'self' ws: wss:");
    expect(/img-src ([^;]*)/.exec(csp)?.[1]?.includes(s3.endpoint)).toBe(backend.name === 's3');
  });

  it('bad input gets a catalogued error and the node keeps serving', async () => {
    const { alice, bob, conversationId } = await setUp();
    const image = png(32, 32);

    // A file that lies about its type: PNG bytes declared as a voice note, text declared as an image.
    expect(await upload(alice, conversationId, image, 'audio/ogg')).toMatchObject({ ok: false, error: { code: 'upload_type_mismatch', retryable: false } });
    expect(await upload(alice, conversationId, Buffer.from('not an image at all'), 'image/png')).toMatchObject({ ok: false, error: { code: 'upload_type_mismatch' } });
    // Damaged image data behind a valid signature.
    const damaged = Buffer.concat([image.subarray(0, 40), Buffer.alloc(image.length - 40, 7)]);
    expect(await upload(alice, conversationId, damaged, 'image/png')).toMatchObject({ ok: false, error: { code: 'upload_type_mismatch' } });
    // A decompression bomb: a tiny file whose header claims 20000×20000 pixels is refused before decoding.
    expect(await upload(alice, conversationId, png(8, 8, { width: 20_000, height: 20_000 }), 'image/png')).toMatchObject({ ok: false, error: { code: 'upload_too_large' } });

    // Over the configured maximum: no slot at all.
    expect(await alice.call('upload:create', { conversationId, name: 'big', mimeType: 'application/octet-stream', size: MAX_BYTES + 1 })).toMatchObject({
      ok: false,
      error: { code: 'upload_too_large' },
    });

    // More bytes than the slot declared never become an upload.
    const small = await alice.ok('upload:create', { conversationId, name: 'small', mimeType: 'image/png', size: 100 });
    const tooMany = await put(small, randomBytes(300));
    if (backend.name === 'disk') {
      // Cut off at the PUT: nothing is stored.
      expect(await tooMany.json()).toMatchObject({ ok: false, error: { code: 'upload_too_large' } });
      expect(await alice.call('upload:complete', { uploadId: small.upload.id })).toMatchObject({ ok: false, error: { code: 'upload_incomplete' } });
    } else {
      // S3 refuses a body unlike the signed Content-Length; s3rver stores it, and completing finds it out.
      expect(await alice.call('upload:complete', { uploadId: small.upload.id })).toMatchObject({ ok: false, error: { code: 'upload_too_large' } });
    }

    // A truncated upload: fewer bytes than declared. The slot takes the whole file afterwards.
    const slot = await alice.ok('upload:create', { conversationId, name: 'photo.png', mimeType: 'image/png', size: image.length });
    // (S3 itself refuses a body shorter than the signed Content-Length; the disk backend and s3rver store it.)
    expect((await put(slot, image.subarray(0, 20))).status).toBe(200);
    expect(await alice.call('upload:complete', { uploadId: slot.upload.id })).toMatchObject({ ok: false, error: { code: 'upload_incomplete', retryable: true } });
    expect((await put(slot, image)).status).toBe(200);
    const { upload: done } = await alice.ok('upload:complete', { uploadId: slot.upload.id });

    if (backend.name === 'disk') {
      // A PUT cut off mid-body (the connection closes): nothing is stored, the slot still takes the file.
      const cut = await alice.ok('upload:create', { conversationId, name: 'cut.png', mimeType: 'image/png', size: image.length });
      const { port } = new URL(node.url);
      const path = new URL(absolute(cut.putUrl)).pathname + new URL(absolute(cut.putUrl)).search;
      await new Promise<void>((resolve, reject) => {
        const socket = connect(Number(port), '127.0.0.1', () => {
          socket.write(`PUT ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: ${image.length}\r\n\r\n`);
          socket.write(image.subarray(0, 30), () => setTimeout(() => socket.destroy(), 100));
        });
        socket.on('close', () => resolve());
        socket.on('error', reject);
      });
      await eventually(async () => expect((await backend.keys()).filter((key) => key.includes(cut.upload.id))).toEqual([]));
      expect(await alice.call('upload:complete', { uploadId: cut.upload.id })).toMatchObject({ ok: false, error: { code: 'upload_incomplete' } });
      expect((await put(cut, image)).status).toBe(200);
      expect(await alice.call('upload:complete', { uploadId: cut.upload.id })).toMatchObject({ ok: true });
    }

    // Completing one slot twice at once (two devices, two nodes): one wins, the other is told.
    const raced = await alice.ok('upload:create', { conversationId, name: 'raced.png', mimeType: 'image/png', size: image.length });
    expect((await put(raced, image)).status).toBe(200);
    const outcomes = await Promise.all([alice.call('upload:complete', { uploadId: raced.upload.id }), alice.call('upload:complete', { uploadId: raced.upload.id })]);
    expect(outcomes.map((outcome) => (outcome.ok ? 'ok' : outcome.error.code)).sort()).toEqual(['ok', 'upload_slot_used']);

    // A second PUT to a used slot, and a second complete.
    const again = await put(slot, png(16, 16));
    if (backend.name === 'disk') expect(await again.json()).toMatchObject({ ok: false, error: { code: 'upload_slot_used' } });
    expect(await alice.call('upload:complete', { uploadId: slot.upload.id })).toMatchObject({ ok: false, error: { code: 'upload_slot_used' } });
    const served = await fetch(absolute((await alice.ok('upload:url', { uploadId: done.id })).url));
    expect(Buffer.from(await served.arrayBuffer()).equals(image)).toBe(true);

    // A path-traversal name is only a label: the object is named by the upload id.
    const hostile = await upload(alice, conversationId, Buffer.from('hello'), 'text/plain', '../../../../etc/passwd');
    expect(hostile).toMatchObject({ ok: true, upload: { name: '../../../../etc/passwd', mime: 'text/plain' } });
    const hostileId = (hostile as { upload: { id: string } }).upload.id;
    expect((await backend.keys()).filter((key) => key.includes(hostileId))).toEqual([`objects/${hostileId}`]);
    expect((await backend.keys()).some((key) => key.includes('passwd'))).toBe(false);
    const download = await fetch(absolute((await alice.ok('upload:url', { uploadId: hostileId })).url));
    expect(download.headers.get('content-disposition')).toMatch(/^attachment; filename="\.\.\/\.\.\/\.\.\/\.\.\/etc\/passwd"/);
    if (backend.name === 'disk') {
      for (const path of ['/v1/blobs/../../etc/passwd', '/v1/blobs/objects/..%2F..%2Fetc%2Fpasswd', `/v1/blobs/objects/${hostileId}`]) {
        expect((await fetch(absolute(path))).status).toBe(404);
      }
    }

    // Attaching: someone else's upload, an unfinished one, one for another conversation.
    const pending = await alice.ok('upload:create', { conversationId, name: 'later', mimeType: 'image/png', size: 10 });
    const send = (device: Device, uploadId: string, where = conversationId) =>
      device.call('message:send', { conversationId: where, clientMsgId: `up-${randomUUID()}`, body: 'x', attachments: [{ uploadId }] });
    expect(await send(bob, done.id)).toMatchObject({ ok: false, error: { code: 'not_found' } });
    expect(await send(alice, pending.upload.id)).toMatchObject({ ok: false, error: { code: 'upload_incomplete' } });
    const { conversation: other } = await alice.ok('conversation:create-group', { title: 'other', memberIds: [bob.userId] });
    expect(await send(alice, done.id, other.id)).toMatchObject({ ok: false, error: { code: 'not_found' } });
    expect(await alice.call('message:send', { conversationId, clientMsgId: `up-${randomUUID()}`, body: 'x', attachments: [{ uploadId: done.id }, { uploadId: done.id }] })).toMatchObject({
      ok: false,
      error: { code: 'validation' },
    });
    expect(
      await alice.call('message:send', { conversationId, clientMsgId: `up-${randomUUID()}`, body: 'x', attachments: [{ uploadId: done.id, url: 'https://evil.example/x' }] as never }),
    ).toMatchObject({
      ok: false,
      error: { code: 'validation' },
    });

    expect((await alice.ok('session:info', {})).user.id).toBe(alice.userId);
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    for (const outcome of ['ready', 'upload_type_mismatch', 'upload_too_large', 'upload_incomplete']) {
      expect(metrics).toMatch(new RegExp(`chat_uploads_total\\{[^}]*outcome="${outcome}"[^}]*\\} [1-9]`));
    }
  });

  it('the sweep deletes unreferenced uploads and their bytes after the TTL, and keeps attached ones', async () => {
    const { alice, conversationId } = await setUp();
    const attached = await upload(alice, conversationId, png(20, 20), 'image/png');
    const unattached = await upload(alice, conversationId, png(20, 20), 'image/png');
    const abandoned = await alice.ok('upload:create', { conversationId, name: 'never sent', mimeType: 'image/png', size: 10 });
    const keptId = (attached as { upload: { id: string } }).upload.id;
    const goneId = (unattached as { upload: { id: string } }).upload.id;
    await alice.ok('message:send', { conversationId, clientMsgId: `up-${randomUUID()}`, body: 'kept', attachments: [{ uploadId: keptId }] });

    // Two sweeps at once, as two nodes would run them: each upload is deleted once, by one of them.
    const later = new Date(Date.now() + 25 * 3600_000);
    const counts = await Promise.all([node.app.uploads.sweep(later), node.app.uploads.sweep(later)]);
    const ours = [goneId, abandoned.upload.id];
    expect(await node.app.db.upload.count({ where: { id: { in: ours } } })).toBe(0);
    expect(counts[0] + counts[1]).toBeGreaterThanOrEqual(ours.length);
    expect(await node.app.db.upload.count({ where: { id: keptId } })).toBe(1);
    const keys = await backend.keys();
    expect(keys.filter((key) => key.includes(goneId))).toEqual([]);
    expect(keys.filter((key) => key.includes(keptId)).sort()).toEqual([`objects/${keptId}`, `thumbnails/${keptId}`]);
    expect(await alice.call('upload:url', { uploadId: goneId })).toMatchObject({ ok: false, error: { code: 'not_found' } });

    // Deleting the message for everyone makes its upload garbage too.
    const messageId = (await alice.ok('history:fetch', { conversationId })).messages.at(-1)!.id;
    await alice.ok('message:delete', { messageId, scope: 'everyone' });
    await node.app.uploads.sweep(later);
    expect(await node.app.db.upload.count({ where: { id: keptId } })).toBe(0);
  });
});

describe("the disk backend's blob routes under fuzzing", () => {
  it('answer every hostile method, path, query and body with a catalogued 4xx, and keep serving', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'chat-uploads-fuzz-'));
    const node = await startNode({ NODE_ID: 'uploads-fuzz', STORAGE: 'disk', UPLOAD_DIR: dir });
    try {
      const segment = fc.oneof(
        fc.constantFrom('incoming', 'objects', 'thumbnails', '..', '%2e%2e', '..%2f..%2fetc', '%00', 'etc/passwd', '.', '', 'x'.repeat(300)),
        fc.uuid(),
        fc.string({ maxLength: 40 }).map(encodeURIComponent),
      );
      const query = fc.dictionary(
        fc.constantFrom('exp', 'max', 'type', 'name', 'sig', 'other'),
        fc.oneof(fc.string({ maxLength: 80 }), fc.constant(String(Date.now() + 60_000)), fc.stringMatching(/^[0-9a-f]{0,64}$/)),
      );
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom('GET', 'PUT', 'POST', 'DELETE', 'HEAD'),
          fc.array(segment, { minLength: 1, maxLength: 4 }),
          query,
          fc.uint8Array({ maxLength: 64 }),
          async (method, path, params, body) => {
            const url = `/v1/blobs/${path.join('/')}?${new URLSearchParams(params)}`;
            const response = await node.app.inject({
              method,
              url,
              ...(method === 'PUT' || method === 'POST' ? { payload: Buffer.from(body), headers: { 'content-type': 'application/octet-stream' } } : {}),
            });
            expect(response.statusCode, url).toBeLessThan(500);
            // A path whose dots climb out of /v1/blobs/ is some other route's (the page at /, say).
            if (!new URL(url, 'http://x').pathname.startsWith('/v1/blobs/')) return;
            expect(response.statusCode, url).toBeGreaterThanOrEqual(400);
            if (method !== 'HEAD') expect(Object.keys(errorCatalog)).toContain(response.json().error.code);
          },
        ),
        { numRuns: Number(process.env['FUZZ_RUNS'] ?? 300) },
      );
      expect(await listFiles(dir)).toEqual([]);
      expect((await node.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    } finally {
      await node.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the periodic sweep', () => {
  it('runs on its own on every node, with a TTL from UPLOAD_GC_TTL_H', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'chat-uploads-gc-'));
    const node = await startNode({ NODE_ID: 'uploads-gc', STORAGE: 'disk', UPLOAD_DIR: dir, UPLOAD_GC_TTL_H: '0.0005' });
    try {
      const alice = await testDevice(node.url, uniqueUser('alice'));
      const bob = await testDevice(node.url, uniqueUser('bob'));
      const { conversation } = await alice.ok('conversation:open-direct', { userId: bob.userId });
      const slot = await alice.ok('upload:create', { conversationId: conversation.id, name: 'a', mimeType: 'text/plain', size: 5 });
      await fetch(new URL(slot.putUrl, node.url), { method: 'PUT', body: 'hello' });
      await eventually(async () => expect(await node.app.db.upload.count({ where: { id: slot.upload.id } })).toBe(0), { timeoutMs: 15_000, intervalMs: 200 });
      expect(await listFiles(dir)).toEqual([]);
    } finally {
      await node.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
