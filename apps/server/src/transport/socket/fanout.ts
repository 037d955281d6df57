import type { FastifyBaseLogger } from 'fastify';
import type { Fanout, ServerEventName, ServerEventPayload } from '../../domain/fanout.ts';
import { userRoom } from './connection.ts';
import type { ChatServer } from './types.ts';

/**
 * Fan-out over Socket.IO rooms and its adapter (REDIS_ADAPTER=classic or sharded, and the in-memory
 * adapter of a single node): one emit to the rooms of all recipients, which the Redis adapter turns
 * into one publish that every node receives and decodes, and Socket.IO serializes once per node for
 * all local sockets of those rooms. RoutedFanout is the cluster default.
 */
export class SocketFanout implements Fanout {
  readonly #io: ChatServer;
  readonly #log: FastifyBaseLogger;
  readonly #onEmit: () => void;

  /** @param onEmit told of every fan-out emitted (a metric) */
  constructor(io: ChatServer, log: FastifyBaseLogger, onEmit: () => void = () => {}) {
    this.#io = io;
    this.#log = log;
    this.#onEmit = onEmit;
  }

  toUsers<E extends ServerEventName>(userIds: readonly string[], event: E, payload: ServerEventPayload<E>, options?: { except?: string | undefined }): void {
    if (userIds.length === 0) return;
    // A socket id is also the name of the room only that socket is in.
    this.#emit(userIds.map(userRoom), event, payload, options?.except);
  }

  toDevices<E extends ServerEventName>(devices: ReadonlyArray<{ userId: string; deviceId: string }>, event: E, payload: ServerEventPayload<E>): void {
    if (devices.length === 0) return;
    // Every socket is in the room named by its id, on its node: the adapter reaches it anywhere.
    this.#emit(
      devices.map((device) => device.deviceId),
      event,
      payload,
    );
  }

  #emit(rooms: string[], event: ServerEventName, payload: unknown, except?: string): void {
    try {
      let target = this.#io.to(rooms);
      if (except) target = target.except(except);
      (target.emit as (event: string, payload: unknown) => boolean)(event, payload);
      this.#onEmit();
    } catch (error) {
      // The change is committed; a device that misses this event gets it from sync:changes.
      this.#log.warn({ err: error, event }, 'fan-out failed');
    }
  }
}
