import type { FastifyBaseLogger } from 'fastify';
import type { Fanout, ServerEventName, ServerEventPayload } from '../../domain/fanout.ts';
import { userRoom } from './connection.ts';
import type { LocalDelivery } from './local-delivery.ts';
import type { NodeBus, Recipients } from './node-bus.ts';
import type { ChatServer } from './types.ts';

/**
 * The cluster's fan-out (REDIS_ADAPTER=routed): a change reaches only the nodes that hold a
 * recipient's socket, so the work per message does not grow with the node count.
 *
 * Per fan-out: the event is encoded once and written at once to the recipients' sockets on this node
 * (no lookup needed: Socket.IO's in-memory rooms know them); then one script call in Redis reads
 * where the recipients' other connections are (presence) and publishes one frame naming the rooms to
 * each other node holding one (NodeBus); that node writes the packet to those rooms' sockets without
 * decoding it. A recipient whose only connection is the excepted one (the sender's device, which has
 * the result in its ack) costs no frame. While Redis is unreachable this node's own sockets are still
 * served; the other nodes' recipients catch up through resync (the failure is counted).
 *
 * Live path guarantee: a socket's presence entry is registered before its handshake completes (see
 * connection.ts), so every fan-out issued after a client saw `connect` finds the socket's node; a
 * change committed before that is in the resync the client runs on connect. LocalDelivery keeps what
 * arrives for a connecting socket until it is connected. What the lookup misses (presence lost with
 * a Redis restart, before the node registers its sockets again) is lost to the live path and caught
 * up by the SDK's gap fetch or resync.
 *
 * Order: local writes happen in the order fan-outs are issued, and so do the publishes (one script
 * per fan-out on one connection), as SocketFanout's synchronous emits do.
 */
export class RoutedFanout implements Fanout {
  readonly #io: ChatServer;
  readonly #local: LocalDelivery;
  readonly #bus: NodeBus;
  readonly #log: FastifyBaseLogger;
  readonly #onFrames: (direction: 'local' | 'sent', count: number) => void;
  readonly #onPublishFailed: (error: unknown) => void;

  constructor(
    io: ChatServer,
    routing: { local: LocalDelivery; bus: NodeBus },
    options: { log: FastifyBaseLogger; onFrames: (direction: 'local' | 'sent', count: number) => void; onPublishFailed: (error: unknown) => void },
  ) {
    this.#io = io;
    this.#local = routing.local;
    this.#bus = routing.bus;
    this.#log = options.log;
    this.#onFrames = options.onFrames;
    this.#onPublishFailed = options.onPublishFailed;
  }

  toUsers<E extends ServerEventName>(userIds: readonly string[], event: E, payload: ServerEventPayload<E>, options?: { except?: string | undefined }): void {
    if (userIds.length === 0) return;
    this.#route(event, payload, userIds.map(userRoom), { userIds, except: options?.except });
  }

  toDevices<E extends ServerEventName>(devices: ReadonlyArray<{ userId: string; deviceId: string }>, event: E, payload: ServerEventPayload<E>): void {
    if (devices.length === 0) return;
    // A socket id is also the name of the room only that socket is in.
    const deviceIds = devices.map((device) => device.deviceId);
    this.#route(event, payload, deviceIds, { userIds: [...new Set(devices.map((device) => device.userId))], devices: deviceIds });
  }

  #route(event: ServerEventName, payload: unknown, localRooms: readonly string[], recipients: Recipients): void {
    let packet: string;
    try {
      packet = encode(this.#io, event, payload);
    } catch (error) {
      this.#log.warn({ err: error, event }, 'fan-out failed: the event could not be encoded');
      return;
    }
    // This node's own sockets need no lookup.
    this.#local.deliver(recipients.except ? { rooms: localRooms, except: recipients.except } : { rooms: localRooms }, packet);
    this.#onFrames('local', 1);
    this.#bus.publishToHolders(recipients, packet).then(
      (frames) => this.#onFrames('sent', frames),
      // The change is committed; a device elsewhere that misses this event gets it from sync:changes.
      (error: unknown) => this.#onPublishFailed(error),
    );
  }
}

/** The event as Socket.IO writes it to a socket (packet type EVENT on the main namespace). */
function encode(io: ChatServer, event: ServerEventName, payload: unknown): string {
  const [packet, ...rest] = io.encoder.encode({ type: 2, nsp: '/', data: [event, payload] }) as unknown[];
  if (typeof packet !== 'string' || rest.length > 0) throw new Error('binary payloads are not routed');
  return packet;
}
