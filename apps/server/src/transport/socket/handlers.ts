import type { SocketHandlers } from './dispatch.ts';

/** The socket API: one entry per client event of the protocol, each a thin call into the domain. */
export const socketHandlers: SocketHandlers = {
  'session:info': async ({ app, socket, principal }) => ({
    user: { id: principal.userId, displayName: principal.displayName },
    nodeId: app.nodeId,
    socketId: socket.id,
    expiresAt: principal.expiresAt === null ? null : new Date(principal.expiresAt).toISOString(),
  }),
};
