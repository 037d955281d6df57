import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { parseWith } from '../../errors.ts';

export const devTokenRequest = z
  .object({
    userId: z.string().regex(/^[A-Za-z0-9_.:@|-]{1,128}$/, 'letters, digits and _.:@|- only, 1 to 128').optional(),
    displayName: z.string().trim().min(1).max(100).optional(),
    ttlSeconds: z.number().int().min(1).max(30 * 24 * 3600).optional(),
  })
  .strict();

/**
 * `POST /v1/dev/token`: mints a token for local use and load tests. Registered only when DEV_TOKENS
 * is on, which production refuses at start-up.
 */
export async function devTokenRoutes(app: FastifyInstance, options: { defaultTtlSeconds: number }): Promise<void> {
  app.post('/v1/dev/token', async (request) => {
    const body = parseWith(devTokenRequest, request.body ?? {});
    const userId = body.userId ?? `u-${randomUUID()}`;
    const ttlSeconds = body.ttlSeconds ?? options.defaultTtlSeconds;
    const token = app.tokens.sign({ sub: userId, name: body.displayName ?? userId }, ttlSeconds);
    return { ok: true, token, userId, expiresAt: new Date(Date.now() + ttlSeconds * 1000).toISOString() };
  });
}
