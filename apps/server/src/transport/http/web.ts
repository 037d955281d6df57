import { existsSync } from 'node:fs';
import { join } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { webDistDir } from '@chat/web';

// The pages talk only to their own origin (REST and Socket.IO, ws: or wss:) and show camera streams;
// with STORAGE=s3 also to the bucket, where uploads are PUT and fetched through presigned URLs.
function contentSecurityPolicy(storageOrigin: string): string {
  const extra = storageOrigin ? ` ${storageOrigin}` : '';
  return [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    `connect-src 'self' ws: wss:${extra}`,
    `img-src 'self' data: blob:${extra}`,
    `media-src 'self' blob: mediastream:${extra}`,
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/**
 * The browser pages (apps/web, built by `npm run web:build`): the chat page at `/`, the admin page at
 * `/admin` and `/admin/`. Assets under /assets/ and /admin/assets/ carry a content hash in their
 * names, so browsers and proxies may keep them for a year without asking; each index.html is
 * revalidated on every load (ETag, 304), so a new build reaches everyone on reload. Brotli and gzip
 * twins written by the build are sent to browsers that accept them.
 */
export async function webRoutes(app: FastifyInstance, options: { root?: string } = {}): Promise<void> {
  const root = options.root ?? webDistDir;
  if (!existsSync(join(root, 'index.html'))) {
    app.log.warn({ root }, 'the browser client is not built; `npm run web:build` builds it (GET / answers 404 until then)');
  }
  // A path the file server refuses (a name too long for the file system, a forbidden segment) is a
  // path with nothing behind it: the same catalogued 404 as any unknown path, not a 500.
  app.setErrorHandler((error: { code?: string }, _request, reply) => {
    if (typeof error.code === 'string' && error.code.startsWith('FST_STATIC_')) {
      return reply.callNotFound();
    }
    throw error;
  });
  const assetFolders = [join(root, 'assets', '/'), join(root, 'admin', 'assets', '/')];
  const pageCsp = contentSecurityPolicy(s3Origin(app.config.uploads.storage));
  await app.register(fastifyStatic, {
    root,
    prefix: '/',
    // Only the built files: no directory listings, no dotfiles, no index of /assets/.
    list: false,
    dotfiles: 'ignore',
    preCompressed: true,
    cacheControl: false,
    // Registered routes (REST, /docs, probes) win over the wildcard; unknown paths fall through to the
    // app's not-found handler. The folder may be rebuilt while the node runs, so it is not globbed.
    wildcard: true,
    setHeaders: (reply, path) => {
      reply.header('x-content-type-options', 'nosniff');
      if (assetFolders.some((folder) => path.startsWith(folder))) {
        reply.header('cache-control', 'public, max-age=31536000, immutable');
      } else {
        reply.header('cache-control', 'no-cache');
        reply.header('content-security-policy', pageCsp);
        reply.header('referrer-policy', 'no-referrer');
      }
    },
  });
  // The admin page's address with and without the slash; its index.html names its assets by absolute
  // paths, so both work. Through sendFile, so it gets the same headers and encodings as any index.html.
  for (const url of ['/admin', '/admin/']) {
    app.get(url, (_request, reply) => reply.sendFile('admin/index.html'));
  }
}

/** Where browsers reach the S3 bucket (its endpoint, or AWS's virtual-hosted and path-style hosts); empty for the disk backend. */
function s3Origin(storage: FastifyInstance['config']['uploads']['storage']): string {
  if (storage.kind !== 's3') return '';
  if (storage.endpoint) return new URL(storage.endpoint).origin;
  return `https://${storage.bucket}.s3.${storage.region}.amazonaws.com https://s3.${storage.region}.amazonaws.com`;
}
