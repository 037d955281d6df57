import type { Ack, ClientEventName, ClientEventResults, ClientPayload, ServerToClientEvents } from '@chat/protocol';
import { onTestFinished } from 'vitest';
import { connectSocket, type ClientSocket } from './nodes.ts';
import { signToken } from './tokens.ts';

type ServerEvent = keyof ServerToClientEvents;

/** A raw socket.io-client device that records every server push, for asserting exactly-once delivery. */
export interface Device {
  socket: ClientSocket;
  userId: string;
  /** Every push received, in arrival order. */
  received: Array<{ event: ServerEvent; payload: unknown }>;
  /** Pushes of one kind. */
  of<E extends ServerEvent>(event: E): Array<Parameters<ServerToClientEvents[E]>[0]>;
  /** Emits an event and resolves with its ack (ok or not). */
  call<E extends ClientEventName>(event: E, payload: ClientPayload<E>): Promise<Ack<ClientEventResults[E]>>;
  /** Like call, but throws unless the ack is ok. */
  ok<E extends ClientEventName>(event: E, payload: ClientPayload<E>): Promise<ClientEventResults[E]>;
  close(): void;
}

let counter = 0;
/** A user id no other test (or earlier run) uses. */
export function uniqueUser(name: string): string {
  counter += 1;
  return `${name}-${Date.now().toString(36)}-${counter}`;
}

export async function connectDevice(url: string, userId: string, options: { transports?: string[] } = {}): Promise<Device> {
  const socket = await connectSocket(url, signToken({ sub: userId, name: userId }), options);
  const received: Device['received'] = [];
  socket.onAny((event: ServerEvent, payload: unknown) => received.push({ event, payload }));
  const call = (event: string, payload: unknown) =>
    (socket as unknown as { timeout(ms: number): { emitWithAck(e: string, p: unknown): Promise<unknown> } }).timeout(10_000).emitWithAck(event, payload);
  return {
    socket,
    userId,
    received,
    of: (event) => received.filter((entry) => entry.event === event).map((entry) => entry.payload) as never,
    call: call as Device['call'],
    ok: async (event, payload) => {
      const ack = (await call(event, payload)) as Ack<object>;
      if (!ack.ok) throw new Error(`${event} failed: ${JSON.stringify(ack.error)}`);
      const { ok: _ok, ...result } = ack;
      return result as never;
    },
    close: () => void socket.close(),
  };
}

/** {@link connectDevice}, closed when the current test finishes. */
export async function testDevice(url: string, userId: string): Promise<Device> {
  const connected = await connectDevice(url, userId);
  onTestFinished(() => connected.close());
  return connected;
}
