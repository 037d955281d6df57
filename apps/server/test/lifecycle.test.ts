import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { WASM_ENGINE_TIMEOUT_MS } from '@chat/testkit/timeouts';
import { eventually } from '@chat/testkit/eventually';
import { connectError, connectSocket, spawnNode, startNode, testEnv } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';

describe('health, readiness and metrics', () => {
  it('reports alive, ready with its dependencies, and Prometheus metrics', async () => {
    const node = await startNode();
    onTestFinished(() => node.close());
    const socket = await connectSocket(node.url, signToken({ sub: 'metrics-user' }));
    onTestFinished(() => void socket.close());
    await socket.emitWithAck('session:info', {});

    const health = await node.app.inject({ url: '/healthz' });
    expect(health.statusCode).toBe(200);
    const ready = await node.app.inject({ url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toMatchObject({ ok: true, draining: false, dependencies: { database: 'up', redis: 'up' } });

    const metrics = (await node.app.inject({ url: '/metrics' })).body;
    expect(metrics).toMatch(/^chat_connected_sockets\{node="[^"]+"\} 1$/m);
    expect(metrics).toMatch(/^chat_socket_events_total\{event="session:info",outcome="ok",node="[^"]+"\} 1$/m);
    expect(metrics).toMatch(/^chat_ack_latency_seconds_bucket\{le="0.1",node="[^"]+",event="session:info"\} 1$/m);
    expect(metrics).toMatch(/^nodejs_eventloop_lag_seconds\{node="[^"]+"\} /m);
    expect(metrics).toMatch(/^process_resident_memory_bytes\{node="[^"]+"\} /m);
  });

  it('reports not ready when Redis is unreachable, and keeps serving sockets', async () => {
    const node = await startNode({ REDIS_URL: 'redis://127.0.0.1:1' });
    onTestFinished(() => node.close());
    const ready = await node.app.inject({ url: '/readyz' });
    expect(ready.statusCode).toBe(503);
    expect(ready.json()).toMatchObject({ ok: false, dependencies: { database: 'up', redis: 'down' } });
    expect((await node.app.inject({ url: '/healthz' })).statusCode).toBe(200);
  });
});

describe('the node process', () => {
  it('logs one JSON line per request and per socket connect/disconnect, tagged with node, user and socket ids', async () => {
    const node = await spawnNode(testEnv({ LOG_LEVEL: 'info', NODE_ID: 'log-node' }));
    onTestFinished(() => node.kill('SIGKILL'));
    const socket = await connectSocket(node.url, signToken({ sub: 'log-user' }));
    await socket.emitWithAck('session:info', {});
    socket.close();
    await fetch(`${node.url}/healthz`);

    await eventually(() => {
      const requests = node.logs.filter((line) => line['msg'] === 'request' && line['url'] === '/healthz');
      expect(requests).toHaveLength(1);
      expect(requests[0]).toMatchObject({ node: 'log-node', method: 'GET', status: 200, ms: expect.any(Number) });
      expect(node.logs.find((line) => line['msg'] === 'socket connected')).toMatchObject({ node: 'log-node', userId: 'log-user', socketId: socket.id ?? expect.any(String) });
      expect(node.logs.find((line) => line['msg'] === 'socket disconnected')).toMatchObject({ node: 'log-node', userId: 'log-user', reason: 'client namespace disconnect' });
    });
    expect(node.logs.filter((line) => line['msg'] === 'incoming request')).toHaveLength(0);
  });

  it('drains on SIGTERM: not ready at once, refuses new sockets, tells connected ones to reconnect, exits 0 in time', async () => {
    const node = await spawnNode(testEnv({ LOG_LEVEL: 'info', DRAIN_DELAY_MS: '1500', SHUTDOWN_TIMEOUT_MS: '8000' }));
    onTestFinished(() => node.kill('SIGKILL'));
    const socket = await connectSocket(node.url, signToken({ sub: 'drain-user' }));
    expect((await fetch(`${node.url}/readyz`)).status).toBe(200);
    const told = new Promise((resolve) => socket.once('session:ending', resolve));
    const disconnected = new Promise((resolve) => socket.once('disconnect', resolve));

    const signalledAt = Date.now();
    node.kill('SIGTERM');
    await eventually(async () => expect((await fetch(`${node.url}/readyz`)).status).toBe(503), { timeoutMs: 1000 });
    expect(await connectError(node.url, signToken({ sub: 'late-user' }))).toMatchObject({ code: 'unavailable', retryable: true });

    expect(await told).toEqual({ reason: 'server_draining', message: expect.any(String) });
    // A transport close, not a server disconnect: socket.io-client reconnects by itself.
    expect(await disconnected).toBe('transport close');
    const { code } = await node.exited;
    expect(code).toBe(0);
    expect(Date.now() - signalledAt).toBeLessThan(8000);
  });

  it('exits non-zero at SHUTDOWN_TIMEOUT_MS when the drain cannot finish', async () => {
    // The drain delay alone outlasts the deadline, so the deadline must cut it short.
    const node = await spawnNode(testEnv({ DRAIN_DELAY_MS: '60000', SHUTDOWN_TIMEOUT_MS: '1000' }));
    onTestFinished(() => node.kill('SIGKILL'));
    const socket = await connectSocket(node.url, signToken({ sub: 'stuck-user' }));
    onTestFinished(() => void socket.close());
    const signalledAt = Date.now();
    node.kill('SIGTERM');
    const { code } = await node.exited;
    expect(code).toBe(1);
    expect(Date.now() - signalledAt).toBeLessThan(4000);
  });

  it(
    'boots in embedded mode from an empty folder with no DATABASE_URL or REDIS_URL and serves an authenticated socket',
    async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'chat-embedded-'));
      onTestFinished(() => rmSync(dataDir, { recursive: true, force: true }));
      const node = await spawnNode(testEnv({ DATABASE_URL: undefined, REDIS_URL: undefined, DATA_DIR: dataDir, DEV_TOKENS: 'true', LOG_LEVEL: 'info' }), {
        timeoutMs: WASM_ENGINE_TIMEOUT_MS - 30_000,
      });
      onTestFinished(() => node.kill('SIGKILL'));
      expect(String(node.logs[0]?.['msg'])).toMatch(/^embedded mode: PGlite database in /);

      const mint = async (userId: string) => {
        const minted = await fetch(`${node.url}/v1/dev/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ userId, displayName: userId }),
        });
        return ((await minted.json()) as { token: string }).token;
      };
      const socket = await connectSocket(node.url, await mint('embedded-user'));
      const peer = await connectSocket(node.url, await mint('embedded-peer'));
      expect(await socket.emitWithAck('session:info', {})).toMatchObject({ ok: true, user: { id: 'embedded-user', displayName: 'embedded-user' } });
      // The hot path's batch statements (messages, receipts) on PGlite as well.
      const opened = await socket.emitWithAck('conversation:open-direct', { userId: 'embedded-peer' });
      const conversationId = (opened as { conversation: { id: string } }).conversation.id;
      const arrived = new Promise((resolve) => peer.once('message:new', resolve));
      expect(await socket.emitWithAck('message:send', { conversationId, clientMsgId: 'embedded-1', body: 'hello' })).toMatchObject({ ok: true, message: { seq: 1, body: 'hello' } });
      await expect(arrived).resolves.toMatchObject({ seq: 1, senderId: 'embedded-user' });
      expect(await peer.emitWithAck('receipt:mark', { conversationId, read: 1 })).toMatchObject({ ok: true, receipt: { userId: 'embedded-peer', lastDeliveredSeq: 1, lastReadSeq: 1 } });
      socket.close();
      peer.close();
      const ready = (await (await fetch(`${node.url}/readyz`)).json()) as Record<string, unknown>;
      expect(ready).toMatchObject({ ok: true, dependencies: { database: 'up' } });
      node.kill('SIGTERM');
      expect((await node.exited).code).toBe(0);
    },
    WASM_ENGINE_TIMEOUT_MS,
  );
});
