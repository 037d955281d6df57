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
  /** V8 heap reserved (used or not) added per socket: grows with the garbage connecting makes. */
  heapCommittedBytesPerSocket: number;
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
 * started with `gcProbe.args`), so the figures do not move with when V8 last collected. With `warm`,
 * that many sockets connect before the first measurement (one-time set-up is then not counted per
 * socket); they use `token(target)`, `token(target + 1)`, …. All sockets stay open until `release()`.
 */
export async function holdIdleSockets(
  url: string,
  target: number,
  serverPids: () => number[],
  token: (i: number) => string,
  options: { batch?: number; warm?: number } = {},
): Promise<IdleResult & { release(): void }> {
  const { batch = 250, warm = 0 } = options;
  const sockets: Socket[] = [];
  let lastError = '';
  /** Opens sockets `from` … `to - 1` at once; how many failed. */
  const open = async (from: number, to: number): Promise<number> => {
    const results = await Promise.all(
      Array.from(
        { length: to - from },
        (_, j) =>
          new Promise<boolean>((resolve) => {
            const socket = io(url, { transports: ['websocket'], reconnection: false, forceNew: true, query: { sticky: randomUUID() }, auth: { token: token(from + j) }, timeout: 20_000 });
            socket.once('connect', () => {
              sockets.push(socket);
              resolve(true);
            });
            socket.once('connect_error', (error) => {
              socket.close();
              lastError = `connect_error: ${error.message}`;
              resolve(false);
            });
          }),
      ),
    );
    return results.filter((ok) => !ok).length;
  };
  const release = () => {
    for (const socket of sockets) socket.close();
  };

  for (let i = 0; i < warm; i += batch) {
    if ((await open(target + i, target + Math.min(warm, i + batch))) > 0) {
      release();
      throw new Error(`a warm-up socket could not connect (${lastError})`);
    }
  }
  const warmed = sockets.length;
  await sleep(1000);
  const total = (usages: NodeJS.MemoryUsage[], key: 'rss' | 'heapUsed' | 'heapTotal') => usages.reduce((sum, usage) => sum + usage[key], 0);
  const before = await gcProbe.measure(serverPids());
  let failed = 0;
  let stoppedBy: string | null = null;
  const started = performance.now();
  for (let i = 0; i < target && stoppedBy === null; i += batch) {
    failed += await open(i, Math.min(target, i + batch));
    if (failed > target / 100) stoppedBy = lastError;
  }
  const connectSeconds = (performance.now() - started) / 1000;
  const connected = sockets.length - warmed;
  await sleep(3000); // let connection set-up work (presence, logs) finish
  const after = await gcProbe.measure(serverPids());
  const perSocket = (key: 'rss' | 'heapUsed' | 'heapTotal') => (connected === 0 ? NaN : (total(after, key) - total(before, key)) / connected);
  return {
    target,
    connected,
    failed,
    rssBytesPerSocket: perSocket('rss'),
    heapBytesPerSocket: perSocket('heapUsed'),
    heapCommittedBytesPerSocket: perSocket('heapTotal'),
    serverRssBeforeMb: total(before, 'rss') / 2 ** 20,
    serverRssAfterMb: total(after, 'rss') / 2 ** 20,
    connectSeconds,
    stoppedBy,
    release,
  };
}
