import type { AdminDevice, DisconnectReason } from '@chat/protocol';
import { userRoom } from './connection.ts';
import type { ChatServer, ChatSocket } from './types.ts';

/** One connected device of a user, as an operator sees it. */
export type Device = AdminDevice;

/** Why an operator ends a user's sessions: the `session:ending` reason each socket receives. */
export type AdminEnding = Extract<DisconnectReason, 'token_revoked' | 'disconnected_by_admin'>;

const endingMessages: Record<AdminEnding, string> = {
  token_revoked: 'Your tokens were revoked: get a new one, then reconnect',
  disconnected_by_admin: 'An operator closed this session',
};

/** This node's sockets of the user (its room holds local sockets only, whatever the adapter). */
function localSockets(io: ChatServer, userId: string): ChatSocket[] {
  const namespace = io.of('/');
  const ids = namespace.adapter.rooms.get(userRoom(userId));
  if (!ids) return [];
  return [...ids].map((id) => namespace.sockets.get(id)).filter((socket): socket is ChatSocket => socket !== undefined);
}

export function localDevices(io: ChatServer, nodeId: string, userId: string): Device[] {
  return localSockets(io, userId).map((socket) => ({
    connectionId: socket.id,
    nodeId,
    // The transport in use now: a polling connection that upgraded reports websocket.
    transport: socket.conn.transport.name === 'polling' ? 'polling' : 'websocket',
    connectedAt: new Date(socket.handshake.issued).toISOString(),
    ...(socket.data.address && { address: socket.data.address }),
  }));
}

/**
 * Ends every session of the user on this node: each socket receives `session:ending` with `reason`,
 * then a server-side disconnect (socket.io-client does not reconnect by itself; the SDK follows the
 * reason's reconnect policy). Returns how many sockets were closed.
 */
export function closeLocalSessions(io: ChatServer, userId: string, reason: AdminEnding): number {
  const sockets = localSockets(io, userId);
  for (const socket of sockets) {
    socket.emit('session:ending', { reason, message: endingMessages[reason] });
    socket.disconnect(true);
  }
  return sockets.length;
}

/**
 * Ends, with `token_revoked`, every session on this node whose token `isRevoked` says is revoked:
 * the backstop for sessions a revocation's disconnect did not reach. Returns how many it closed.
 */
export function closeRevokedSessions(io: ChatServer, isRevoked: (userId: string, issuedAt: number) => boolean): number {
  let closed = 0;
  for (const socket of io.of('/').sockets.values()) {
    const { principal } = socket.data;
    if (!principal || !isRevoked(principal.userId, principal.issuedAt)) continue;
    socket.emit('session:ending', { reason: 'token_revoked', message: endingMessages.token_revoked });
    socket.disconnect(true);
    closed += 1;
  }
  return closed;
}
