import { existsSync } from 'node:fs';
import { join } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { webDistDir } from '@chat/web';

// The page talks only to its own origin (REST and Socket.IO, ws: or wss:) and shows camera streams.
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self' ws: wss:",
  "img-src 'self' data: blob:",
  "media-src 'self' blob: mediastream:",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * The browser client (apps/web, built by `npm run web:build`) at `/`. Assets under /assets/ carry a
 * content hash in their names, so browsers and proxies may keep them for a year without asking;
 * index.html is revalidated on every load (ETag, 304), so a new build reaches everyone on reload.
 * Brotli and gzip twins written by the build are sent to browsers that accept them.
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
      if (path.startsWith(join(root, 'assets'))) {
        reply.header('cache-control', 'public, max-age=31536000, immutable');
      } else {
        reply.header('cache-control', 'no-cache');
        reply.header('content-security-policy', CONTENT_SECURITY_POLICY);
        reply.header('referrer-policy', 'no-referrer');
      }
    },
  });
}
