import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { io as ioClient, type Socket } from 'socket.io-client';
import { inject, onTestFinished } from 'vitest';
import type { ClientToServerEvents, ServerToClientEvents, WireError } from '@chat/protocol';
import { buildApp } from '@chat/server/app';
import { loadConfig } from '@chat/server/config';
import { parseDatabaseUrl } from '@chat/server/db/url';
import { TEST_JWT_SECRET } from './tokens.ts';

export type ClientSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const serverMain = fileURLToPath(new URL('../../../apps/server/src/main.ts', import.meta.url));

/**
 * Each test file's nodes keep their Redis state apart from other files' (presence registry, rate
 * limits): files run concurrently and configure nodes differently (a presence TTL of 2 s on one side
 * would reap the nodes of a file running the default 20 s). Under this run's prefix, so the run's
 * clean-up removes it.
 */
const FILE_SCOPE = randomUUID().slice(0, 8);

/** The environment of a cluster node in tests: this run's database and Redis, a test secret. */
export function testEnv(overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    NODE_ENV: 'test',
    HOST: '127.0.0.1',
    PORT: '0',
    DATABASE_URL: inject('databaseUrl'),
    REDIS_URL: inject('redisUrl'),
    REDIS_KEY_PREFIX: `${inject('redisPrefix')}${FILE_SCOPE}:`,
    JWT_SECRET: TEST_JWT_SECRET,
    LOG_LEVEL: process.env['TEST_LOG_LEVEL'] ?? 'silent',
    // Functional tests send faster than a person: budgets are switched on where rate limits are the subject.
    RATE_LIMITS: 'false',
    REST_RATE_LIMIT_PER_MINUTE: '1000000',
    ...overrides,
  };
}

/** True in the `pgbouncer` project (vitest.config.ts): this run's nodes reach PostgreSQL through PgBouncer. */
export function viaPgBouncer(): boolean {
  return parseDatabaseUrl(inject('databaseUrl')).pgbouncer;
}

export interface TestNode {
  app: FastifyInstance;
  url: string;
  close(): Promise<void>;
}

/** Builds and starts a real node in this process on a free port. Close it in the test's teardown. */
export async function startNode(overrides: Record<string, string | undefined> = {}): Promise<TestNode> {
  const config = loadConfig(testEnv(overrides));
  const app = await buildApp(config, pino({ level: config.logLevel, base: { node: config.nodeId } }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('node did not bind a TCP port');
  return { app, url: `http://127.0.0.1:${address.port}`, close: () => app.close() };
}

/** {@link startNode}, closed when the current test finishes. */
export async function testNode(overrides: Record<string, string | undefined> = {}): Promise<TestNode> {
  const started = await startNode(overrides);
  onTestFinished(() => started.close());
  return started;
}

export interface SpawnedNode {
  child: ChildProcess;
  url: string;
  /** Every JSON log line the process wrote so far. */
  logs: Array<Record<string, unknown>>;
  stderr: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Starts `src/main.ts` as its own process on Node 24 — the real entry point, signals and exit codes —
 * and resolves once it logs that it listens.
 */
export async function spawnNode(env: Record<string, string | undefined>, { timeoutMs = 20_000 } = {}): Promise<SpawnedNode> {
  // The listening line is how we learn the port: a spawned node logs at least at info.
  if (env['LOG_LEVEL'] === 'silent' || env['LOG_LEVEL'] === undefined) env = { ...env, LOG_LEVEL: 'info' };
  const child = spawn(process.execPath, ['--conditions=@chat/source', '--import', 'tsx', serverMain], {
    cwd: repoRoot,
    env: Object.fromEntries(Object.entries({ PATH: process.env['PATH'], ...env }).filter(([, value]) => value !== undefined)),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  const stderr: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
  const listening = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL'); // never leave a process behind that no test will clean up
      reject(new Error(`node did not listen within ${timeoutMs} ms; stderr: ${stderr.join('\n')}`));
    }, timeoutMs);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      logs.push(entry);
      const match = typeof entry['msg'] === 'string' ? /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(entry['msg']) : null;
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`node exited with ${code} before listening; stderr: ${stderr.join('\n')}`));
    });
  });
  const url = await listening;
  return { child, url, logs, stderr, exited, kill: (signal = 'SIGTERM') => void child.kill(signal) };
}

/** Connects a real socket.io-client socket; resolves when connected, rejects with the server's refusal. */
export function connectSocket(url: string, token: string | undefined, options: { transports?: string[]; reconnection?: boolean } = {}): Promise<ClientSocket> {
  const socket: ClientSocket = ioClient(url, {
    auth: token === undefined ? {} : { token },
    transports: options.transports ?? ['websocket'],
    reconnection: options.reconnection ?? false,
    forceNew: true,
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (error) => {
      socket.close();
      reject(error);
    });
  });
}

/** The catalogued error a refused connection carries. */
export async function connectError(url: string, token: string | undefined): Promise<WireError> {
  try {
    const socket = await connectSocket(url, token);
    socket.close();
  } catch (error) {
    return (error as { data: WireError }).data;
  }
  throw new Error('the connection was accepted');
}
