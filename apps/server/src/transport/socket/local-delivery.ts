import type { ChatServer, ChatSocket } from './types.ts';

/** Room names with no socket excepted, or one (the sender's device, which has its ack). */
export interface Target {
  rooms: readonly string[];
  except?: string | undefined;
}

/**
 * Writes pre-encoded Socket.IO packets to this node's sockets, by room: the one place the routed
 * fan-out touches sockets. A packet is encoded once on the node that fans it out and written here
 * as it arrived (no decode, no second encode), through the same `writeToEngine` Socket.IO's own
 * adapter broadcasts use (socket.io 4.8, pinned).
 *
 * Connecting sockets: a socket is held from before its presence registration is sent until its
 * `connection` handler ran (see {@link hold}). Packets for its user room that arrive meanwhile are
 * kept and written right after the CONNECT packet, so no packet routed here because of that
 * registration is lost, whatever order the node reads Redis' replies and publishes in.
 */
export class LocalDelivery {
  readonly #io: ChatServer;
  /** user room → sockets held in it, with what arrived for them. */
  readonly #held = new Map<string, Map<string, string[]>>();

  constructor(io: ChatServer) {
    this.#io = io;
  }

  deliver(target: Target, packet: string): void {
    const adapter = this.#io.of('/').adapter as unknown as AdapterInternals;
    const options = { rooms: new Set(target.rooms), except: new Set(target.except ? [target.except] : []), flags: {} };
    adapter.apply(options, (socket) => write(socket, [packet]));
    if (this.#held.size === 0) return;
    for (const room of target.rooms) {
      for (const [socketId, buffer] of this.#held.get(room) ?? []) if (socketId !== target.except) buffer.push(packet);
    }
  }

  /**
   * Starts keeping what arrives for `room` for the connecting socket `socketId`. Call it before the
   * socket's presence registration is sent, and {@link release} it in the `connection` handler (or
   * {@link drop} it when the handshake fails).
   */
  hold(room: string, socketId: string): void {
    let sockets = this.#held.get(room);
    if (!sockets) {
      sockets = new Map();
      this.#held.set(room, sockets);
    }
    sockets.set(socketId, []);
  }

  /** Writes what arrived while the socket was held (after its CONNECT), in arrival order. */
  release(room: string, socket: ChatSocket): void {
    const buffer = this.#take(room, socket.id);
    if (buffer && buffer.length > 0) write(socket, buffer);
  }

  drop(room: string, socketId: string): void {
    this.#take(room, socketId);
  }

  #take(room: string, socketId: string): string[] | undefined {
    const sockets = this.#held.get(room);
    const buffer = sockets?.get(socketId);
    sockets?.delete(socketId);
    if (sockets?.size === 0) this.#held.delete(room);
    return buffer;
  }
}

/**
 * The two Socket.IO internals the fan-out uses, exactly as socket.io-adapter's own broadcast uses
 * them (socket.io 4.8 / socket.io-adapter 2.5, pinned): private in their type declarations only.
 */
interface AdapterInternals {
  apply(options: { rooms: Set<string>; except: Set<string>; flags: object }, callback: (socket: ChatSocket) => void): void;
}

function write(socket: ChatSocket, packets: string[]): void {
  (socket.client as unknown as { writeToEngine(packets: string[], options: { preEncoded: boolean }): void }).writeToEngine(packets, { preEncoded: true });
}
