import { z } from 'zod';
import type { AckFn } from './ack.ts';
import type { DisconnectReason } from './errors.ts';
import type { User } from './schemas.ts';

/**
 * Every client→server event with its payload schema, defined once. Server handlers, REST routes, the
 * SDK and the load generator all derive their types from here.
 */
export const clientEventSchemas = {
  /** Who am I on this connection: the authenticated user, node and token expiry. */
  'session:info': z.object({}).strict(),
} as const;

export type ClientEventName = keyof typeof clientEventSchemas;
export type ClientPayload<E extends ClientEventName> = z.input<(typeof clientEventSchemas)[E]>;
export type ParsedPayload<E extends ClientEventName> = z.output<(typeof clientEventSchemas)[E]>;

/** What each client→server event answers through its ack, on success. */
export interface ClientEventResults {
  'session:info': { user: User; nodeId: string; socketId: string; expiresAt: string | null };
}

export type ClientToServerEvents = {
  [E in ClientEventName]: (payload: ClientPayload<E>, ack: AckFn<ClientEventResults[E]>) => void;
};

export interface SessionEnding {
  reason: DisconnectReason;
  message: string;
}

export interface ServerToClientEvents {
  /** Sent right before the server closes the socket, saying why and whether to reconnect. */
  'session:ending': (payload: SessionEnding) => void;
}
