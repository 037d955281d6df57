import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { io, type Socket } from 'socket.io-client';
import { gcProbe } from './process-stats.ts';

export interface IdleResult {
  target: number;
  connected: number;
  failed: number;
  /** Server-side resident memory added per connected socket (all server processes, nginx excluded), each after a full GC. */
  rssBytesPerSocket: number;
  /** V8 heap in use added per connected socket after a full GC: what the sockets keep alive. */
  heapBytesPerSocket: number;
  serverRssBeforeMb: number;
  serverRssAfterMb: number;
  connectSeconds: number;
  /** Why connecting stopped before the target, if it did. */
  stoppedBy: string | null;
}

/**
 * Opens `target` idle WebSocket connections (authenticated when `token` mints real tokens), `batch`
 * at a time, stopping early when more than 1% fail, then measures how much memory the server
 * processes gained per socket. Before and after, every server process runs a full GC (they must be
 * started with `gcProbe.args`), so the figures do not move with when V8 last collected. The sockets
 * stay open until `release()`.
 */
export async function holdIdleSockets(url: string, target: number, serverPids: () => number[], token: (i: number) => string, batch = 250): Promise<IdleResult & { release(): void }> {
  const sockets: Socket[] = [];
  await sleep(1000);
  const total = (usages: NodeJS.MemoryUsage[], key: 'rss' | 'heapUsed') => usages.reduce((sum, usage) => sum + usage[key], 0);
  const before = await gcProbe.measure(serverPids());
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
  await sleep(3000); // let connection set-up work (presence, logs) finish
  const after = await gcProbe.measure(serverPids());
  const perSocket = (key: 'rss' | 'heapUsed') => (sockets.length === 0 ? NaN : (total(after, key) - total(before, key)) / sockets.length);
  return {
    target,
    connected: sockets.length,
    failed,
    rssBytesPerSocket: perSocket('rss'),
    heapBytesPerSocket: perSocket('heapUsed'),
    serverRssBeforeMb: total(before, 'rss') / 2 ** 20,
    serverRssAfterMb: total(after, 'rss') / 2 ** 20,
    connectSeconds,
    stoppedBy,
    release: () => {
      for (const socket of sockets) socket.close();
    },
  };
}
