import type { FastifyBaseLogger } from 'fastify';
import type { Fanout, ServerEventName, ServerEventPayload } from '../../domain/fanout.ts';
import type { PresenceStore } from '../../state/presence.ts';
import { userRoom } from './connection.ts';
import type { LocalDelivery, Target } from './local-delivery.ts';
import type { NodeBus } from './node-bus.ts';
import type { ChatServer } from './types.ts';

/**
 * The cluster's fan-out (REDIS_ADAPTER=routed): a change reaches only the nodes that hold a
 * recipient's socket, so the work per message does not grow with the node count.
 *
 * Per fan-out: the event is encoded once and written at once to the recipients' sockets on this node
 * (no lookup needed: Socket.IO's in-memory rooms know them); one presence lookup (one script call)
 * says where the recipients' other connections are, and one frame naming the rooms is published to
 * each other node holding one; that node writes the packet to those rooms' sockets without decoding
 * it. A recipient whose only connection is the excepted one (the sender's device, which has its ack)
 * costs nothing beyond the lookup. While Redis is unreachable this node's own sockets are still
 * served; the other nodes' recipients catch up through resync (the failure is counted).
 *
 * Live path guarantee: a socket's presence entry is registered before its handshake completes (see
 * connection.ts), so every fan-out whose lookup runs after a client saw `connect` finds the socket's
 * node; a change committed before that is in the resync the client runs on connect. LocalDelivery
 * keeps what arrives for a connecting socket until it is connected. What a lookup misses (presence
 * lost with a Redis restart, before the node registers its sockets again) is lost to the live path
 * and caught up by the SDK's gap fetch or resync.
 *
 * Order: deliveries and publishes happen in the order fan-outs were issued (lookups are issued at
 * once, their results applied through one chain), as SocketFanout's synchronous emits do.
 */
export class RoutedFanout implements Fanout {
  readonly #io: ChatServer;
  readonly #presence: PresenceStore;
  readonly #local: LocalDelivery;
  readonly #bus: NodeBus;
  readonly #nodeId: string;
  readonly #log: FastifyBaseLogger;
  readonly #onFrame: (direction: 'local' | 'sent') => void;
  readonly #onLookupFailed: (error: unknown) => void;
  #chain: Promise<void> = Promise.resolve();

  constructor(
    io: ChatServer,
    presence: PresenceStore,
    routing: { local: LocalDelivery; bus: NodeBus; nodeId: string },
    options: { log: FastifyBaseLogger; onFrame: (direction: 'local' | 'sent') => void; onLookupFailed: (error: unknown) => void },
  ) {
    this.#io = io;
    this.#presence = presence;
    this.#local = routing.local;
    this.#bus = routing.bus;
    this.#nodeId = routing.nodeId;
    this.#log = options.log;
    this.#onFrame = options.onFrame;
    this.#onLookupFailed = options.onLookupFailed;
  }

  toUsers<E extends ServerEventName>(userIds: readonly string[], event: E, payload: ServerEventPayload<E>, options?: { except?: string | undefined }): void {
    if (userIds.length === 0) return;
    const except = options?.except;
    this.#route(event, payload, userIds, except, (userId, connectionId) => (connectionId === except ? undefined : userRoom(userId)), userIds.map(userRoom));
  }

  toDevices<E extends ServerEventName>(devices: ReadonlyArray<{ userId: string; deviceId: string }>, event: E, payload: ServerEventPayload<E>): void {
    if (devices.length === 0) return;
    const wanted = new Set(devices.map((device) => device.deviceId));
    // A socket id is also the name of the room only that socket is in.
    this.#route(event, payload, [...new Set(devices.map((device) => device.userId))], undefined, (_userId, connectionId) => (wanted.has(connectionId) ? connectionId : undefined), [...wanted]);
  }

  /**
   * @param roomOf the room a connection of a recipient is reached through, or undefined to skip it.
   */
  #route(event: ServerEventName, payload: unknown, userIds: readonly string[], except: string | undefined, roomOf: (userId: string, connectionId: string) => string | undefined, localRooms: readonly string[]): void {
    let packet: string;
    try {
      packet = encode(this.#io, event, payload);
    } catch (error) {
      return this.#log.warn({ err: error, event }, 'fan-out failed: the event could not be encoded');
    }
    // This node's own sockets need no lookup: written now, in the order fan-outs are issued.
    this.#local.deliver(except ? { rooms: localRooms, except } : { rooms: localRooms }, packet);
    this.#onFrame('local');
    const lookup = this.#presence.locate(userIds);
    this.#chain = this.#chain
      .then(() => lookup)
      .then((located) => {
        const byNode = new Map<string, Set<string>>();
        located.forEach((connections, i) => {
          for (const [connectionId, nodeId] of connections) {
            if (nodeId === this.#nodeId) continue;
            const room = roomOf(userIds[i]!, connectionId);
            if (room === undefined) continue;
            let rooms = byNode.get(nodeId);
            if (!rooms) byNode.set(nodeId, (rooms = new Set()));
            rooms.add(room);
          }
        });
        for (const [nodeId, rooms] of byNode) {
          this.#bus.publish(nodeId, except ? { rooms: [...rooms], except } : { rooms: [...rooms] }, packet);
          this.#onFrame('sent');
        }
      })
      .catch((error: unknown) => {
        // The change is committed; a device elsewhere that misses this event gets it from sync:changes.
        this.#onLookupFailed(error);
      });
  }
}

/** The event as Socket.IO writes it to a socket (packet type EVENT on the main namespace). */
function encode(io: ChatServer, event: ServerEventName, payload: unknown): string {
  const [packet, ...rest] = io.encoder.encode({ type: 2, nsp: '/', data: [event, payload] }) as unknown[];
  if (typeof packet !== 'string' || rest.length > 0) throw new Error('binary payloads are not routed');
  return packet;
}
