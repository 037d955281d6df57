import { io as ioClient, type ManagerOptions, type SocketOptions } from 'socket.io-client';
import type { Ack, ClientEventName, ClientEventResults, ClientPayload } from '@chat/protocol';
import { findNginx } from './cluster.ts';
import type { ClientSocket } from './nodes.ts';
import { signToken } from './tokens.ts';

/** nginx for the suites that run a real cluster behind it, and why they are skipped without it. */
export const NGINX = findNginx();
export const NO_NGINX = ' (skipped: no nginx binary on PATH or in /usr/sbin; `apt-get install -y nginx`)';

/** A connected user's socket, with a typed call that throws on a refusal. */
export interface Client {
  socket: ClientSocket;
  userId: string;
  ok<E extends ClientEventName>(event: E, payload: ClientPayload<E>): Promise<ClientEventResults[E]>;
}

/** Sends `event` and resolves with its ok-ack; a refusal or no ack within 10 s throws. */
export async function ok<E extends ClientEventName>(socket: ClientSocket, event: E, payload: ClientPayload<E>): Promise<ClientEventResults[E]> {
  const untyped = socket as unknown as { timeout(ms: number): { emitWithAck(event: string, payload: unknown): Promise<Ack<object>> } };
  const ack = await untyped.timeout(10_000).emitWithAck(event, payload);
  if (!ack.ok) throw new Error(`${event} failed: ${JSON.stringify(ack.error)}`);
  return ack as never;
}

/**
 * A socket.io-client socket of `userId` (a valid test token), resolved once connected; `opened`
 * collects it for the suite's teardown.
 */
export async function connectClient(url: string, userId: string, options: Partial<ManagerOptions & SocketOptions>, opened: ClientSocket[]): Promise<Client> {
  const socket: ClientSocket = ioClient(url, { auth: { token: signToken({ sub: userId, name: userId }) }, forceNew: true, ...options });
  opened.push(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  return { socket, userId, ok: (event, payload) => ok(socket, event, payload) };
}
