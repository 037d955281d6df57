import type { ServerToClientEvents } from '@chat/protocol';

export type ServerEventName = keyof ServerToClientEvents;
export type ServerEventPayload<E extends ServerEventName> = Parameters<ServerToClientEvents[E]>[0];

/**
 * How the domain tells users about a change, without knowing about sockets. The Socket.IO
 * implementation emits once to the rooms of all the given users, which the Redis adapter turns into
 * one publish reaching every device of every user on every node.
 *
 * Guarantee: best effort and after commit. A fan-out is sent only for committed changes; a device that
 * misses one (offline, reconnecting, node crash) gets the change from `sync:changes`, never from a replay.
 * Implementations never throw into the caller.
 */
export interface Fanout {
  /**
   * @param options.except the connection the change came from: it already has the result in its ack,
   * so it is skipped (the user's other devices still get the event).
   */
  toUsers<E extends ServerEventName>(userIds: readonly string[], event: E, payload: ServerEventPayload<E>, options?: { except?: string | undefined }): void;

  /** To single devices (connection ids) wherever they are connected, e.g. the two devices in a call. */
  toDevices<E extends ServerEventName>(deviceIds: readonly string[], event: E, payload: ServerEventPayload<E>): void;
}

/** For code paths with nobody to tell (scripts, benchmarks of the domain alone). */
export const silentFanout: Fanout = { toUsers: () => {}, toDevices: () => {} };
