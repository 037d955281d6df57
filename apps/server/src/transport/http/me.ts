import type { FastifyInstance } from 'fastify';

/** `GET /v1/me`: the authenticated user, as the token says and the database stores it. */
export async function meRoutes(app: FastifyInstance): Promise<void> {
  app.get('/v1/me', { preHandler: app.authenticate }, async (request) => {
    const principal = request.principal!;
    await app.services.users.ensure(principal);
    const user = await app.db.user.findUniqueOrThrow({ where: { id: principal.userId } });
    return { ok: true, user: { id: user.id, displayName: user.displayName, createdAt: user.createdAt.toISOString() } };
  });
}
