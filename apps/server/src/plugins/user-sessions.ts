import fp from 'fastify-plugin';
import { closeLocalSessions, closeRevokedSessions, localDevices, type AdminEnding, type Device } from '../transport/socket/user-sessions.ts';

declare module 'fastify' {
  interface FastifyInstance {
    userSessions: UserSessions;
  }
}

export interface UserSessions {
  /** The user's connected devices on every node that answered, by node then connection id. */
  devices(userId: string): Promise<Device[]>;
  /** Ends the user's sessions on every node; resolves with how many sockets were closed. */
  disconnect(userId: string, reason: AdminEnding): Promise<number>;
}

const reasons: readonly AdminEnding[] = ['token_revoked', 'disconnected_by_admin'];

function userIdOf(payload: unknown): string {
  const userId = (payload as { userId?: unknown } | null)?.userId;
  if (typeof userId !== 'string') throw new Error('malformed user sessions request');
  return userId;
}

/**
 * A user's sessions across the cluster, for the admin API: each node answers for the sockets it holds
 * through the control channel, so transport and connection time are the holding node's own.
 */
export default fp(
  async (app) => {
    app.control.handle('user-devices', (payload) => localDevices(app.io, app.nodeId, userIdOf(payload)));
    app.control.handle('user-disconnect', (payload) => {
      const reason = (payload as { reason?: unknown }).reason;
      if (!reasons.includes(reason as AdminEnding)) throw new Error('malformed user disconnect request');
      return closeLocalSessions(app.io, userIdOf(payload), reason as AdminEnding);
    });

    app.revocations.onReload(() => {
      const closed = closeRevokedSessions(app.io, app.revocations.isRevoked);
      if (closed > 0) app.log.warn({ closed }, "token revocation: closed sessions the revocation's disconnect had not reached");
    });

    const incomplete = (action: string, userId: string, outcome: { missing: number; failed: string[] }) => {
      if (outcome.missing > 0 || outcome.failed.length > 0) app.log.warn({ userId, missing: outcome.missing, failed: outcome.failed }, `${action}: not every node answered`);
    };
    app.decorate<UserSessions>('userSessions', {
      async devices(userId) {
        const outcome = await app.control.request<Device[]>('user-devices', { userId });
        incomplete('user devices', userId, outcome);
        return outcome.answers.flatMap((answer) => answer.result).sort((a, b) => a.nodeId.localeCompare(b.nodeId) || a.connectionId.localeCompare(b.connectionId));
      },
      async disconnect(userId, reason) {
        const outcome = await app.control.request<number>('user-disconnect', { userId, reason });
        incomplete('user disconnect', userId, outcome);
        return outcome.answers.reduce((sum, answer) => sum + answer.result, 0);
      },
    });
  },
  { name: 'user-sessions', dependencies: ['control', 'realtime', 'revocations'] },
);
