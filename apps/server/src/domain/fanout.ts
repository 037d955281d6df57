import type { ServerToClientEvents } from '@chat/protocol';

export type ServerEventName = keyof ServerToClientEvents;
export type ServerEventPayload<E extends ServerEventName> = Parameters<ServerToClientEvents[E]>[0];

/**
 * How the domain tells users about a change, without knowing about sockets. The implementations
 * (transport/socket) reach every device of every given user on whatever node it is connected to.
 *
 * Order: two fan-outs issued one after the other by one node reach a device in that order.
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

  /** To single devices (connection ids of the given users) wherever they are connected, e.g. the two devices in a call. */
  toDevices<E extends ServerEventName>(devices: ReadonlyArray<{ userId: string; deviceId: string }>, event: E, payload: ServerEventPayload<E>): void;
}

/** For code paths with nobody to tell (scripts, benchmarks of the domain alone). */
export const silentFanout: Fanout = { toUsers: () => {}, toDevices: () => {} };
