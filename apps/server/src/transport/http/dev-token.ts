import { randomUUID } from 'node:crypto';
import { userIdSchema } from '@chat/protocol';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppError, parseWith } from '../../errors.ts';

const devUser = {
  // The protocol's rule: a token for the system sender's id would be refused by every node.
  userId: userIdSchema.optional(),
  displayName: z.string().trim().min(1).max(100).optional(),
};
const ttlSeconds = z
  .number()
  .int()
  .min(1)
  .max(30 * 24 * 3600)
  .optional();

export const devTokenRequest = z.object({ ...devUser, ttlSeconds }).strict();

/** Most tokens one `POST /v1/dev/tokens` mints. */
export const DEV_TOKENS_PER_REQUEST = 1000;

export const devTokensRequest = z.object({ users: z.array(z.object(devUser).strict()).min(1).max(DEV_TOKENS_PER_REQUEST), ttlSeconds }).strict();

/**
 * `POST /v1/dev/token` mints a token for local use; `POST /v1/dev/tokens { users: [{ userId?,
 * displayName? }], ttlSeconds? }` mints up to 1000 in one request, which counts once against the
 * per-address REST budget, so a load generator connects thousands of users at once. Registered only
 * when DEV_TOKENS is on, which production refuses at start-up.
 */
export async function devTokenRoutes(app: FastifyInstance, options: { defaultTtlSeconds: number }): Promise<void> {
  // A token living longer than JWT_MAX_LIFETIME_SECONDS would be refused by every node: refuse to mint it.
  const maxTtl = app.config.jwt.maxLifetimeSeconds;
  const lifetime = (requested: number | undefined) => {
    const ttl = requested ?? options.defaultTtlSeconds;
    if (ttl > maxTtl) throw new AppError('validation', `ttlSeconds: at most ${maxTtl} (JWT_MAX_LIFETIME_SECONDS)`);
    return ttl;
  };
  const mint = (user: { userId?: string | undefined; displayName?: string | undefined }, ttl: number) => {
    const userId = user.userId ?? `u-${randomUUID()}`;
    return { userId, token: app.tokens.sign({ sub: userId, name: user.displayName ?? userId }, ttl) };
  };
  const expiresAt = (ttl: number) => new Date(Date.now() + ttl * 1000).toISOString();
  app.post('/v1/dev/token', async (request) => {
    const body = parseWith(devTokenRequest, request.body ?? {});
    const ttl = lifetime(body.ttlSeconds);
    return { ok: true, ...mint(body, ttl), expiresAt: expiresAt(ttl) };
  });
  app.post('/v1/dev/tokens', async (request) => {
    const body = parseWith(devTokensRequest, request.body ?? {});
    const ttl = lifetime(body.ttlSeconds);
    return { ok: true, tokens: body.users.map((user) => mint(user, ttl)), expiresAt: expiresAt(ttl) };
  });
}
