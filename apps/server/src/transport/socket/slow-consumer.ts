import type { Socket as NetSocket } from 'node:net';
import type { ChatSocket } from './types.ts';

/** What the node held for a socket when it found it over SOCKET_MAX_BUFFERED_BYTES. */
export interface SlowConsumer {
  /** Engine.IO's transport at that moment: `websocket` or `polling`. */
  transport: string;
  /** Unsent data held for the socket before the packet that found it over the bound (see {@link boundOutboundBuffer}). */
  bufferedBytes: number;
  /** The size of that packet, counted the same way. */
  packetBytes: number;
}

/**
 * How long a slow consumer's connection may still drain after it was told `session:ending`
 * before the node cuts it and drops what it still holds. A client that catches up within it reads
 * the reason; a stalled one cannot, and costs the node at most this long past the bound.
 */
export const SLOW_CONSUMER_CLOSE_GRACE_MS = 1000;

/**
 * Bounds what this node holds for a client that stops reading (SOCKET_MAX_BUFFERED_BYTES): once the
 * data written for `socket` and not yet taken by the kernel passes `maxBytes`, `onSlow` is called
 * once — to count it, log it and tell the client why while the socket still takes packets — and then
 * the connection is closed: no further packet is accepted for it (Engine.IO refuses writes to a
 * closing socket), it may drain for {@link SLOW_CONSUMER_CLOSE_GRACE_MS}, then its transport is cut
 * and whatever is still unsent is dropped. Without this a stalled consumer's outbound buffer grows
 * with every message for it until the node runs out of memory.
 *
 * What counts as unsent, per transport:
 * - Engine.IO's own `writeBuffer`: packets not handed to the transport yet. This is where a stalled
 *   consumer's backlog piles up on both transports: a WebSocket takes the next batch only after the
 *   kernel accepted the previous one, long-polling only when the client polls again. Counted in
 *   characters of the encoded packets, which is bytes for ASCII text; a JavaScript string holds each
 *   in one or two bytes, and UTF-8 on the wire takes up to three.
 * - `websocket`: the ws socket's `bufferedAmount`, bytes handed to its net.Socket that the kernel has
 *   not accepted (user space only: the kernel's socket buffers are bounded by the kernel). While
 *   it is 0 the kernel took everything so far, and what Engine.IO queued since was written in the
 *   current synchronous run (a fan-out batch, say) behind a write that completed: it leaves on the
 *   next tick whatever the client does, so it is not counted. It counts once the kernel refuses bytes.
 * - `polling`: the unsent bytes of the connection that carries the last poll response (written
 *   whole when the client polled; a client that then stops reading leaves it there), plus everything
 *   Engine.IO queued since: it waits for the client's next poll.
 *
 * When it is checked, and what that costs: on every packet Engine.IO creates for the socket
 * (`packetCreate`, before the packet is queued), in O(1) — a running total of the writeBuffer (added
 * on `packetCreate`, reset on `flush`, when Engine.IO hands the whole buffer to the transport) plus one
 * getter of the transport. The hot path writes pre-encoded packets (local-delivery.ts), so this is a
 * few property reads per packet and socket, never a walk over the buffer. Not on `drain` or `flush`
 * alone: a stalled socket never drains or flushes, while its backlog grows only through new packets.
 * Not a periodic sweep: that costs O(sockets) per tick and lets a fast stream pass the bound by all
 * that arrives between two sweeps.
 *
 * Guarantee: a packet is accepted while what is unsent before it is at most `maxBytes`; the first
 * packet that finds more ends the connection. So before the node acts it holds at most the bound plus
 * one packet for the socket (`SlowConsumer.bufferedBytes <= maxBytes + the largest packet`) — or, on
 * a WebSocket, one synchronous run of writes (a fan-out batch) where that alone is larger than the
 * bound, as such a run is counted from the next tick on. Then only the packet that found it and what
 * `onSlow` sends are added, and after the grace nothing is held. A single packet larger than the bound
 * (a full page of long messages) still goes to a socket that has caught up, and a healthy WebSocket is
 * never cut for what one fan-out batch writes to it at once.
 *
 * Closing the transport, not a Socket.IO disconnect, is a drop to the client: socket.io-client
 * reconnects by itself with its back-off, and the SDK resyncs what it missed.
 */
export function boundOutboundBuffer(socket: ChatSocket, maxBytes: number, onSlow: (slow: SlowConsumer) => void): void {
  const conn = socket.conn as unknown as EngineSocketInternals;
  /** Characters of the packets in Engine.IO's writeBuffer, i.e. created since its last flush. */
  let queued = 0;
  /** The connection of the last poll response while the transport is polling; null otherwise. */
  let pollConnection: NetSocket | null = null;
  let tripped = false;

  conn.on('flush', () => {
    queued = 0;
    const transport = conn.transport;
    // Flushed while a poll request is held: the response goes out on that request's connection.
    pollConnection = transport.name === 'polling' ? ((transport as PollingInternals).res?.socket ?? null) : null;
  });
  conn.on('packetCreate', (packet: { data?: unknown }) => {
    if (tripped) return;
    const packetBytes = sizeOf(packet.data);
    const transport = conn.transport;
    let bufferedBytes: number;
    if (transport.name === 'websocket') {
      const unsent = (transport as WebSocketInternals).socket.bufferedAmount;
      // Nothing the kernel refused: what Engine.IO queued meanwhile was written in this synchronous
      // run, behind a write that already reached the kernel, and goes out right after it.
      bufferedBytes = unsent > 0 ? unsent + queued : 0;
    } else {
      bufferedBytes = queued + (pollConnection?.writableLength ?? 0);
    }
    queued += packetBytes;
    if (bufferedBytes <= maxBytes) return;
    tripped = true;
    onSlow({ transport: transport.name, bufferedBytes, packetBytes });
    // Orderly first: a client that catches up within the grace reads what onSlow sent, then the close.
    conn.close();
    setTimeout(() => {
      const current = conn.transport;
      // Closes the engine socket at once and drops its writeBuffer; a no-op if it closed meanwhile.
      conn.close(true);
      // ws' own close handshake would wait 30 s for a peer that does not read: cut the connection.
      if (current.name === 'websocket') (current as WebSocketInternals).socket.terminate();
      if (pollConnection && pollConnection.writableLength > 0) pollConnection.destroy();
    }, SLOW_CONSUMER_CLOSE_GRACE_MS).unref();
  });
}

function sizeOf(data: unknown): number {
  if (typeof data === 'string') return data.length;
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return data.byteLength;
  return 1;
}

/**
 * The Engine.IO internals read here (engine.io 6.6 / ws 8, pinned): its socket's events and close,
 * the WebSocket transport's ws socket, and the polling transport's held response. Private in their
 * type declarations only.
 */
interface EngineSocketInternals {
  transport: { name: string };
  on(event: 'flush', listener: () => void): void;
  on(event: 'packetCreate', listener: (packet: { data?: unknown }) => void): void;
  close(discard?: boolean): void;
}

interface WebSocketInternals {
  name: 'websocket';
  socket: { bufferedAmount: number; terminate(): void };
}

interface PollingInternals {
  name: 'polling';
  res: { socket: NetSocket | null } | null;
}
