import type { ClientToServerEvents, ServerToClientEvents } from '@chat/protocol';
import type { Server, Socket } from 'socket.io';
import type { Principal } from '../../identity/principal.ts';

/** Events between nodes, through the adapter (none of our own yet). */
export type InterServerEvents = Record<string, never>;

export interface SocketData {
  principal: Principal;
  /** Conversations this device said it is typing in, to end them when it disconnects. */
  typingIn: Set<string>;
  /** The client's address as TRUST_PROXY resolves it (behind nginx: from X-Forwarded-For). */
  address: string;
  /** Between the handshake's presence registration and the `connection` handler only (then deleted). */
  connecting?: {
    /** Tells the user's contacts they came online, when this connection made them. */
    announce: () => Promise<void>;
    /** Unregisters a connection that closed before its handshake completed. */
    closed: () => void;
  };
}

export type ChatServer = Server<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
export type ChatSocket = Socket<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
