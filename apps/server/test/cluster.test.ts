// `npm run cluster`'s library (@chat/testkit, packages/testkit/src/cluster.ts) end to end: two real node processes behind a
// real nginx, against this run's database and Redis, exercised only through nginx's URL; and the
// command itself (cli.ts) passing the environment through to its nodes.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort, startCluster, type Cluster, processAlive } from '@chat/testkit/cluster';
import { connectClient, NGINX, NO_NGINX, type Client } from '@chat/testkit/cluster-client';
import { eventually } from '@chat/testkit/eventually';
import { testEnv, type ClientSocket } from '@chat/testkit/nodes';
import { TEST_JWT_SECRET } from '@chat/testkit/tokens';
import { uniqueUser } from '@chat/testkit/users';

const clients: ClientSocket[] = [];

/** A socket through nginx with its own sticky id, as the SDK connects. */
function connect(url: string, userId: string, options: { transports?: string[]; reconnection?: boolean } = {}): Promise<Client> {
  return connectClient(
    url,
    userId,
    { query: { sticky: randomUUID() }, transports: options.transports ?? ['websocket'], reconnection: options.reconnection ?? false, reconnectionDelay: 100, reconnectionDelayMax: 500 },
    clients,
  );
}

const nodeOf = async (client: Client): Promise<string> => (await client.ok('session:info', {})).nodeId;

describe.skipIf(!NGINX)(`a local cluster: 2 nodes behind nginx${NGINX ? '' : NO_NGINX}`, () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({ nodes: 2, env: testEnv({ LOG_LEVEL: 'warn', SHUTDOWN_TIMEOUT_MS: '3000' }) });
  });

  afterAll(async () => {
    for (const socket of clients) socket.close();
    await cluster?.stop();
  });

  it('exchanges messages both ways between a WebSocket and a long-polling client on different nodes', async () => {
    const alice = await connect(cluster.url, uniqueUser('ws-alice'));
    // A sticky id is a node: try fresh ones until bob lands on the other node, so the fan-out crosses Redis.
    let bob: Client | undefined;
    for (let attempt = 0; attempt < 20 && !bob; attempt++) {
      const candidate = await connect(cluster.url, uniqueUser('poll-bob'), { transports: ['polling'] });
      if ((await nodeOf(candidate)) !== (await nodeOf(alice))) bob = candidate;
      else candidate.socket.close();
    }
    if (!bob) throw new Error('20 sticky ids all landed on one node');
    expect(bob.socket.io.engine.transport.name).toBe('polling');

    const { conversation } = await alice.ok('conversation:open-direct', { userId: bob.userId });
    const received = (client: Client, body: string) => new Promise<void>((resolve) => client.socket.on('message:new', (message) => message.body === body && resolve()));

    const toBob = received(bob, 'hello over websocket');
    await alice.ok('message:send', { conversationId: conversation.id, clientMsgId: randomUUID(), body: 'hello over websocket' });
    await toBob;
    const toAlice = received(alice, 'hello over polling');
    await bob.ok('message:send', { conversationId: conversation.id, clientMsgId: randomUUID(), body: 'hello over polling' });
    await toAlice;
  });

  it('spreads 20 clients from one address over both nodes by their sticky ids', async () => {
    const many = await Promise.all(Array.from({ length: 20 }, (_, i) => connect(cluster.url, uniqueUser(`spread-${i}`))));
    const nodeIds = await Promise.all(many.map(nodeOf));
    expect(new Set(nodeIds)).toEqual(new Set(cluster.nodes.map((node) => node.id)));
    for (const client of many) client.socket.close();
  });

  it('reconnects a client through nginx to the surviving node when its node is SIGKILLed, and restarts it', async () => {
    const carol = await connect(cluster.url, uniqueUser('carol'), { reconnection: true });
    const dave = await connect(cluster.url, uniqueUser('dave'));
    const { conversation } = await carol.ok('conversation:open-direct', { userId: dave.userId });
    const before = await nodeOf(carol);
    const victim = cluster.nodes.findIndex((node) => node.id === before);
    const oldPid = cluster.nodes[victim]!.pid;

    const reconnected = new Promise<void>((resolve) => carol.socket.io.once('reconnect', () => resolve()));
    expect(await cluster.killNode(victim)).toEqual({ code: null, signal: 'SIGKILL' });
    expect(processAlive(oldPid)).toBe(false);
    const startedAt = Date.now();
    await reconnected;
    expect(Date.now() - startedAt).toBeLessThan(5000);
    expect(await nodeOf(carol)).not.toBe(before);
    const { message } = await carol.ok('message:send', { conversationId: conversation.id, clientMsgId: randomUUID(), body: 'still here' });
    expect(message.body).toBe('still here');

    await cluster.restartNode(victim);
    const node = cluster.nodes[victim]!;
    expect(node.id).toBe(before);
    expect(node.pid).not.toBe(oldPid);
    expect((await fetch(`${node.url}/readyz`)).status).toBe(200);
  });

  it('leaves no process and no run folder behind on stop()', async () => {
    const nginxWorkers = (() => {
      const path = `/proc/${cluster.nginxPid}/task/${cluster.nginxPid}/children`;
      return existsSync(path) ? readFileSync(path, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number) : [];
    })();
    const pids = [...cluster.nodes.map((node) => node.pid), cluster.nginxPid, ...nginxWorkers];
    expect(pids.every(processAlive)).toBe(true);

    await cluster.stop();
    await eventually(() => expect(pids.filter(processAlive)).toEqual([]), { timeoutMs: 2000 });
    expect(existsSync(cluster.dir)).toBe(false);
  });
});

describe.skipIf(!NGINX)(`npm run cluster${NGINX ? '' : NO_NGINX}`, () => {
  it('passes every configuration variable of its environment to the nodes (MESSAGE_MAX_LENGTH=7 refuses 8 characters)', async () => {
    const [port, basePort] = [await freePort(), await freePort()];
    const cli = spawn(process.execPath, ['--conditions=@chat/source', '--import', 'tsx', 'packages/testkit/src/cli.ts', '--nodes', '1', '--port', String(port), '--base-port', String(basePort)], {
      cwd: fileURLToPath(new URL('../../../', import.meta.url)),
      // Only what a shell would export: none of these is a flag or a default of the CLI's.
      env: {
        PATH: process.env['PATH'],
        NODE_ENV: 'test',
        DATABASE_URL: inject('databaseUrl'),
        REDIS_URL: inject('redisUrl'),
        REDIS_KEY_PREFIX: inject('redisPrefix'),
        JWT_SECRET: TEST_JWT_SECRET,
        LOG_LEVEL: 'warn',
        RATE_LIMITS: 'false',
        MESSAGE_MAX_LENGTH: '7',
        NOT_A_SETTING: 'ignored',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output: string[] = [];
    const exited = new Promise<number | null>((resolve) => cli.once('exit', (code) => resolve(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        for (const stream of [cli.stdout, cli.stderr]) {
          createInterface({ input: stream }).on('line', (line) => {
            output.push(line);
            const match = /^chat cluster: (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
            if (match) resolve(match[1]!);
          });
        }
        void exited.then((code) => reject(new Error(`the CLI exited (${code}) before the cluster was up:\n${output.join('\n')}`)));
      });
      const alice = await connect(url, uniqueUser('cli-alice'));
      const bob = await connect(url, uniqueUser('cli-bob'));
      const { conversation } = await alice.ok('conversation:open-direct', { userId: bob.userId });
      const send = (body: string) =>
        (alice.socket as unknown as { timeout(ms: number): { emitWithAck(e: string, p: unknown): Promise<unknown> } })
          .timeout(10_000)
          .emitWithAck('message:send', { conversationId: conversation.id, clientMsgId: randomUUID(), body });
      expect(await send('8 chars!')).toMatchObject({ ok: false, error: { code: 'validation', message: 'body: at most 7 characters' } });
      expect(await send('7 chars')).toMatchObject({ ok: true, message: { body: '7 chars' } });
    } finally {
      cli.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(output).toContain('stopped');
    // Three processes started one after the other (the CLI migrating, a node, nginx) and drained.
  }, 60_000);
});
