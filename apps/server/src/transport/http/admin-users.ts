import { type AdminDisconnectResult, type AdminUser, userIdSchema } from '@chat/protocol';
import { z } from 'zod';
import { AppError } from '../../errors.ts';
import { keyRoute, type KeyRoute } from './key-routes.ts';

const userParams = z.object({ id: userIdSchema });
const iso = (epochMs: number | null | undefined) => (epochMs === null || epochMs === undefined ? null : new Date(epochMs).toISOString());

/** The admin API's user routes: look a user up across the cluster, end their sessions, revoke their tokens. */
export const adminUserRoutes: readonly KeyRoute[] = [
  keyRoute({
    scope: 'admin',
    method: 'GET',
    url: '/v1/admin/users/:id',
    action: 'user.get',
    summary: 'A user: presence, every connected device on every node, current memberships, active token revocation',
    params: userParams,
    handler: async (app, { params }) => {
      const userId = params.id;
      const [user, [view], devices, conversations] = await Promise.all([
        app.db.user.findUnique({ where: { id: userId }, select: { displayName: true, lastSeenAt: true } }),
        app.state.presence.get([userId], { selfView: true }),
        app.userSessions.devices(userId),
        app.db.conversationMember.count({ where: { userId, leftAt: null } }),
      ]);
      if (!user && devices.length === 0 && !view!.online && view!.lastSeenAt === null) throw new AppError('not_found', 'No such user');
      // Presence knows when the last device left; the database's last connect stands in when presence
      // no longer does (Redis state rebuilt).
      const lastSeenAt = view!.online ? null : (view!.lastSeenAt ?? user?.lastSeenAt?.getTime() ?? null);
      return {
        result: {
          user: {
            id: userId,
            displayName: user?.displayName ?? null,
            status: view!.status,
            lastSeenAt: iso(lastSeenAt),
            devices,
            conversations,
            revokedBefore: app.revocations.revokedBefore(userId)?.toISOString() ?? null,
          } satisfies AdminUser,
        },
      };
    },
  }),
  keyRoute({
    scope: 'admin',
    method: 'POST',
    url: '/v1/admin/users/:id/disconnect',
    action: 'user.disconnect',
    summary:
      'Closes every socket of the user on every node (session:ending disconnected_by_admin). With revoke: true, first refuses every token of the user issued before now on every node (token_revoked), then closes the sockets with reason token_revoked',
    params: userParams,
    body: z.object({ revoke: z.boolean().optional() }).strict(),
    handler: async (app, { params, body }) => {
      const userId = params.id;
      // The revocation is committed and applied by every node before any socket is closed, so a client
      // reconnecting at once with its old token is refused wherever it lands.
      const revoked = body.revoke ? await app.revocations.revoke(userId) : null;
      const disconnected = await app.userSessions.disconnect(userId, revoked ? 'token_revoked' : 'disconnected_by_admin');
      const revokedBefore = revoked ?? app.revocations.revokedBefore(userId);
      return { result: { userId, disconnected, revokedBefore: revokedBefore?.toISOString() ?? null } satisfies AdminDisconnectResult };
    },
  }),
];
