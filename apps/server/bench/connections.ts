import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { io, type Socket } from 'socket.io-client';
import { rssBytes, sum } from './process-stats.ts';

export interface IdleResult {
  target: number;
  connected: number;
  failed: number;
  /** Server-side resident memory added per connected socket (all server processes, nginx excluded). */
  bytesPerSocket: number;
  serverRssBeforeMb: number;
  serverRssAfterMb: number;
  connectSeconds: number;
  /** Why connecting stopped before the target, if it did. */
  stoppedBy: string | null;
}

/**
 * Opens `target` idle WebSocket connections (authenticated when `token` mints real tokens), `batch`
 * at a time, stopping early when more than 1% fail, then measures how much resident memory the
 * server processes gained per socket. The sockets stay open until `release()`.
 */
export async function holdIdleSockets(url: string, target: number, serverPids: () => number[], token: (i: number) => string, batch = 250): Promise<IdleResult & { release(): void }> {
  const sockets: Socket[] = [];
  const pidsBefore = serverPids();
  await sleep(1000);
  const before = sum(pidsBefore, rssBytes);
  let failed = 0;
  let stoppedBy: string | null = null;
  let lastError = '';
  const started = performance.now();
  for (let i = 0; i < target && stoppedBy === null; i += batch) {
    const results = await Promise.all(
      Array.from({ length: Math.min(batch, target - i) }, (_, j) =>
        new Promise<boolean>((resolve) => {
          const socket = io(url, { transports: ['websocket'], reconnection: false, forceNew: true, query: { sticky: randomUUID() }, auth: { token: token(i + j) }, timeout: 20_000 });
          socket.once('connect', () => (sockets.push(socket), resolve(true)));
          socket.once('connect_error', (error) => {
            socket.close();
            lastError = `connect_error: ${error.message}`;
            resolve(false);
          });
        }),
      ),
    );
    failed += results.filter((ok) => !ok).length;
    if (failed > target / 100) stoppedBy = lastError;
  }
  const connectSeconds = (performance.now() - started) / 1000;
  await sleep(3000); // let allocations settle
  const after = sum(serverPids(), rssBytes);
  return {
    target,
    connected: sockets.length,
    failed,
    bytesPerSocket: sockets.length === 0 ? NaN : (after - before) / sockets.length,
    serverRssBeforeMb: before / 2 ** 20,
    serverRssAfterMb: after / 2 ** 20,
    connectSeconds,
    stoppedBy,
    release: () => {
      for (const socket of sockets) socket.close();
    },
  };
}
