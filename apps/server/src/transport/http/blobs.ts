import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppError } from '../../errors.ts';
import type { DiskStorage, SignedQuery } from '../../storage/disk.ts';
import { contentDisposition } from '../../storage/s3.ts';

const params = z.object({ folder: z.enum(['incoming', 'objects', 'thumbnails']), id: z.uuid() });
const query = z.object({ exp: z.string().max(20), max: z.string().max(20).optional(), type: z.string().max(200), name: z.string().max(1024).optional(), sig: z.string().max(128) });

function signed(request: { params: unknown; query: unknown }): { key: string; query: SignedQuery } {
  const where = params.safeParse(request.params);
  const signature = query.safeParse(request.query);
  // Anything malformed is answered like a missing blob: a link either works or reveals nothing.
  if (!where.success || !signature.success) throw new AppError('not_found', 'No such blob, or the link has expired');
  return { key: `${where.data.folder}/${where.data.id}`, query: signature.data };
}

/**
 * The disk backend's signed URLs (storage/disk.ts), served by the node: no bearer token, the URL's
 * signature is the authorization. A PUT writes the slot's object once, streaming, cut off past the
 * signed size; a GET streams the object with the signed type and file name, sandboxed so a file
 * can never run as a page of this origin.
 */
export async function blobRoutes(app: FastifyInstance, { storage }: { storage: DiskStorage }): Promise<void> {
  // The body is the file itself, whatever its type: streamed to disk, never parsed or buffered.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));

  app.put('/v1/blobs/:folder/:id', { bodyLimit: 2 ** 31 - 1 }, async (request, reply) => {
    const { key, query: signature } = signed(request);
    if (!key.startsWith('incoming/')) throw new AppError('not_found', 'No such blob, or the link has expired');
    const { max } = storage.verify('PUT', key, signature);
    const declared = Number(request.headers['content-length'] ?? Number.NaN);
    if (declared > max) throw new AppError('upload_too_large', `The slot takes at most ${max} bytes`);
    const size = await storage.receive(key, request.raw, max);
    return reply.code(200).send({ ok: true, size });
  });

  app.get('/v1/blobs/:folder/:id', async (request, reply) => {
    const { key, query: signature } = signed(request);
    if (key.startsWith('incoming/')) throw new AppError('not_found', 'No such blob, or the link has expired');
    const { type, name } = storage.verify('GET', key, signature);
    const object = await storage.open(key);
    if (!object) throw new AppError('not_found', 'No such blob, or the link has expired');
    return reply
      .header('content-type', type)
      .header('content-length', object.size)
      .header('content-disposition', contentDisposition(type, name))
      .header('content-security-policy', "sandbox; default-src 'none'; img-src 'self'; media-src 'self'")
      .header('cache-control', 'private, max-age=60')
      .send(object.stream);
  });
}
