import { clientEventSchemas, errorCatalog, type ClientEventName } from '@chat/protocol';
import fc from 'fast-check';
import { io as ioClient } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { routes } from '../src/transport/http/rest.ts';
import { eventually } from '@chat/testkit/eventually';
import { ackProblem, connectRaw, describeValue, hostileValue, payloadsNear, validExamples, wireSize, type FuzzFixture } from './helpers/hostile.ts';
import { spawnNode, testEnv, type SpawnedNode } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import WebSocket from 'ws';
import { connectDevice, uniqueUser, type Device } from '@chat/testkit/users';

/*
 * Fuzzing one real node process (src/main.ts, spawned): a crash ends the process, an unhandled
 * rejection is an error log line, both of which the last test checks, together with the heap and a
 * legitimate conversation that keeps going on the same node throughout.
 *
 * FUZZ_RUNS cases per client event and per REST route (default 500: 10,000 socket cases and 9,000
 * REST cases, plus raw frames and storms, about 20 s; `npm run fuzz` runs 5,000 of each), FUZZ_SEED
 * to replay a run (printed at the start).
 */
const RUNS = Number(process.env['FUZZ_RUNS'] ?? 500);
/** Per fuzzing test: generous for long runs on a busy machine (about 8 s per 500 runs on an idle one). */
const FUZZ_TIMEOUT_MS = 60_000 + RUNS * 200;
const SEED = Number(process.env['FUZZ_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
const CONCURRENCY = 16;
const PAYLOAD_CAP = 64 * 1024;
/** How much the node's heap (after a full GC) may grow over the whole suite: it keeps nothing per finished request. */
const HEAP_GROWTH_BOUND = 16 * 1024 * 1024;

const events = Object.keys(clientEventSchemas) as ClientEventName[];
const routeName = (route: { method: string; url: string }) => `${route.method} ${route.url}`;
const coverage = new Map<string, number>();
const count = (name: string) => coverage.set(name, (coverage.get(name) ?? 0) + 1);

let node: SpawnedNode;
let fixture: FuzzFixture;
let fuzzer: Device;
let fuzzerToken: string;
const devices: Device[] = [];
let heapBefore = 0;

/** A legitimate conversation on the same node: alice sends every 25 ms, bob must get every acked message. */
const legit = { running: true, acked: [] as string[], failures: [] as string[], loop: Promise.resolve() };
let bob: Device;

/**
 * The node's used heap after a full garbage collection, which it runs when asked through the
 * inspector protocol (the node is spawned with --inspect on a free loopback port): without it, a
 * measurement sees whatever garbage V8 has not collected yet, not what the node holds on to.
 */
async function heapUsed(): Promise<number> {
  const inspector = node.stderr.map((line) => /Debugger listening on (ws:\/\/\S+)/.exec(line)?.[1]).find(Boolean);
  if (!inspector) throw new Error(`no inspector URL in the node's stderr: ${node.stderr.join('\n')}`);
  const ws = new WebSocket(inspector);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  await new Promise((resolve) => {
    ws.once('message', resolve);
    ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' }));
  });
  ws.close();
  const text = await (await fetch(`${node.url}/metrics`)).text();
  return Number(/^nodejs_heap_size_used_bytes(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1]);
}

/** Runs `work` over `items` with at most CONCURRENCY in flight. */
async function pool<T>(items: T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

beforeAll(async () => {
  console.info(`fuzz: FUZZ_RUNS=${RUNS} FUZZ_SEED=${SEED}`);
  node = await spawnNode(testEnv({ NODE_ID: 'fuzz-node', SOCKET_MAX_PAYLOAD_BYTES: String(PAYLOAD_CAP), NODE_OPTIONS: '--inspect=127.0.0.1:0' }));

  const alice = await connectDevice(node.url, uniqueUser('legit-alice'));
  bob = await connectDevice(node.url, uniqueUser('legit-bob'));
  const fuzzerId = uniqueUser('fuzzer');
  fuzzer = await connectDevice(node.url, fuzzerId);
  fuzzerToken = signToken({ sub: fuzzerId });
  const peer = await connectDevice(node.url, uniqueUser('peer'));
  devices.push(alice, bob, fuzzer, peer);

  const groupId = (await fuzzer.ok('conversation:create-group', { title: 'fuzz', memberIds: [peer.userId] })).conversation.id;
  const leaveGroupId = (await fuzzer.ok('conversation:create-group', { title: 'fuzz leave', memberIds: [peer.userId] })).conversation.id;
  const messageId = (await fuzzer.ok('message:send', { conversationId: groupId, clientMsgId: 'fuzz-fixture-1', body: 'fixture' })).message.id;
  fixture = { peerId: peer.userId, groupId, leaveGroupId, messageId };

  const conversationId = (await alice.ok('conversation:open-direct', { userId: bob.userId })).conversation.id;
  legit.loop = (async () => {
    for (let i = 0; legit.running; i++) {
      const ack = await alice
        .call('message:send', { conversationId, clientMsgId: `legit-${Date.now().toString(36)}-${i}`, body: `legit ${i}` })
        .catch((error: unknown) => ({ ok: false as const, error: { code: String(error) } }));
      if (ack.ok) legit.acked.push(ack.message.id);
      else legit.failures.push(JSON.stringify(ack.error));
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  })();

  heapBefore = await heapUsed();
});

afterAll(async () => {
  legit.running = false;
  await legit.loop;
  for (const device of devices) device.close();
  if (node && node.child.exitCode === null) {
    node.kill('SIGTERM');
    await node.exited;
  }
});

describe(`fuzz (FUZZ_RUNS=${RUNS})`, () => {
  it('has a valid example for every client event, each still accepted by its schema', () => {
    expect(Object.keys(validExamples).sort()).toEqual([...events].sort());
    for (const event of events) expect(clientEventSchemas[event].safeParse(validExamples[event](fixture)).success, event).toBe(true);
  });

  it(
    'answers hostile payloads on every client event with a catalogued error or a valid ok',
    async () => {
      const problems: string[] = [];
      const emit = fuzzer.socket.timeout(10_000) as unknown as { emitWithAck(event: string, ...args: unknown[]): Promise<unknown> };
      for (const [index, event] of events.entries()) {
        const cases = fc.sample(
          fc
            .record({ payload: payloadsNear(validExamples[event](fixture)), shape: fc.constantFrom('payload', 'payload', 'payload', 'none', 'extra', 'no-ack') })
            .filter(({ payload }) => wireSize(payload) < PAYLOAD_CAP - 4096),
          { numRuns: RUNS, seed: SEED + index },
        );
        await pool(cases, async ({ payload, shape }) => {
          count(event);
          if (shape === 'no-ack') {
            (fuzzer.socket as unknown as { emit(event: string, payload: unknown): void }).emit(event, payload);
            return;
          }
          const args = shape === 'none' ? [] : shape === 'extra' ? [payload, 'extra', 42] : [payload];
          let ack: unknown;
          try {
            ack = await emit.emitWithAck(event, ...args);
          } catch (error) {
            ack = `no ack: ${String(error)}`;
          }
          const problem = ackProblem(ack);
          if (problem && problems.length < 20) problems.push(`${event} ${describeValue(payload)} (${shape}): ${problem}`);
        });
        expect(fuzzer.socket.connected, `the fuzz socket was dropped during ${event}`).toBe(true);
      }
      expect(problems, `seed ${SEED}`).toEqual([]);
      expect(await fuzzer.ok('session:info', {})).toMatchObject({ user: { id: fuzzer.userId } });
    },
    FUZZ_TIMEOUT_MS,
  );

  it(
    'answers hostile requests on every REST route with a catalogued error at its status, or a 2xx ok',
    async () => {
      const problems: string[] = [];
      const rawBodies = fc.constantFrom(
        '{',
        '{"a":',
        'null',
        '[]',
        '"text"',
        '\u0000\uD800',
        '{"__proto__":{"polluted":true}}',
        '{"constructor":{"prototype":{"polluted":true}}}',
        `${'['.repeat(5000)}${']'.repeat(5000)}`,
        `{"body":"${'x'.repeat(70 * 1024)}"}`, // over BODY_LIMIT_BYTES: 413
      );
      const contentTypes = fc.constantFrom(
        'application/json',
        'application/json',
        'application/json; charset=utf-8',
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/json; charset=utf-16',
        undefined,
      );
      const auths = fc.oneof(
        { weight: 8, arbitrary: fc.constant(`Bearer ${fuzzerToken}`) },
        { weight: 1, arbitrary: fc.constantFrom(undefined, 'Bearer', 'Bearer x.y.z', `Basic ${'a'.repeat(10_000)}`, 'Bearer \u00ff') },
      );

      for (const [index, route] of routes.entries()) {
        const name = routeName(route);
        const paramKeys = Object.keys(route.params?.shape ?? {});
        const hasBody = route.method !== 'GET' && route.method !== 'DELETE';
        const example = Object.fromEntries(Object.entries(validExamples[route.event](fixture) as Record<string, unknown>).filter(([key]) => !(route.fixed && key in route.fixed)));
        if (route.url.includes(':emoji')) example['emoji'] = '🔥';
        const cases = fc.sample(
          fc
            .record({
              payload: payloadsNear(example),
              raw: fc.option(rawBodies, { freq: 6 }),
              type: contentTypes,
              auth: auths,
              badPath: fc.option(fc.constantFrom('%', '%E0%A4%A', '%00', '..%2f..%2f', '%F0%9F', 'x'.repeat(3000)), { freq: 10 }),
            })
            .filter(({ payload }) => wireSize(payload) < PAYLOAD_CAP),
          { numRuns: RUNS, seed: SEED + 1000 + index },
        );
        await pool(cases, async ({ payload, raw, type, auth, badPath }) => {
          count(name);
          const fields = typeof payload === 'object' && payload !== null && !Array.isArray(payload) && !Buffer.isBuffer(payload) ? { ...(payload as Record<string, unknown>) } : {};
          const path = route.url.replace(/:(\w+)/g, (_match, key: string) => {
            if (badPath !== null) return badPath;
            const value = key in fields ? fields[key] : example[key];
            delete fields[key];
            return encodePathValue(value);
          });
          for (const key of paramKeys) delete fields[key];
          const query = new URLSearchParams();
          if (!hasBody) for (const [key, value] of Object.entries(fields)) query.append(key, typeof value === 'string' ? toWellFormed(value) : describeValue(value));
          const headers: Record<string, string> = {};
          if (auth !== undefined) headers['authorization'] = auth;
          let body: string | Buffer | undefined;
          if (hasBody) {
            const isRecord = typeof payload === 'object' && payload !== null && !Array.isArray(payload) && !Buffer.isBuffer(payload);
            body = raw ?? (Buffer.isBuffer(payload) ? payload : (JSON.stringify(isRecord ? fields : payload) ?? 'null'));
            if (type !== undefined) headers['content-type'] = type;
          }
          const target = `${node.url}${path}${query.size > 0 ? `?${query}` : ''}`;
          let problem: string | null;
          try {
            const response = await fetch(target, { method: route.method, headers, ...(body !== undefined && { body }) });
            const text = await response.text();
            let json: unknown;
            try {
              json = JSON.parse(text);
            } catch {
              json = `non-JSON body ${response.status}: ${text.slice(0, 120)}`;
            }
            problem = ackProblem(json);
            if (!problem) {
              const { ok, error } = json as { ok: boolean; error?: { code: keyof typeof errorCatalog } };
              if (ok && (response.status < 200 || response.status > 299)) problem = `ok with status ${response.status}`;
              if (!ok && response.status !== errorCatalog[error!.code].status) problem = `${error!.code} with status ${response.status}`;
            }
          } catch (error) {
            problem = `request failed: ${String(error)}`;
          }
          if (problem && problems.length < 20) problems.push(`${route.method} ${target.slice(0, 200)} ${headers['content-type'] ?? ''} ${describeValue(body)}: ${problem}`);
        });
      }
      expect(problems, `seed ${SEED}`).toEqual([]);
    },
    FUZZ_TIMEOUT_MS,
  );

  it('survives malformed Socket.IO and Engine.IO frames: each is refused or the connection closed, never a crash', async () => {
    const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
    const frames: Array<string | Buffer> = [
      '4',
      '42',
      '42[',
      '42{}',
      '42[]',
      '42[1]',
      '42[null,{}]',
      '42[{},{}]',
      '42["session:info"',
      '42["session:info",{}]x',
      '42"session:info"',
      '4299999999999999999999["session:info",{}]',
      '42-1["session:info",{}]',
      '421.5["session:info",{}]',
      '42/nope,["session:info",{}]',
      '40/nope,',
      '40/nope,{"token":1}',
      '40',
      '40{"token":{"$gt":""}}',
      '41',
      '41/nope,',
      '43["x"]',
      '431[{}]',
      '4399[{"ok":true}]',
      '44{}',
      '44/nope,{}',
      '45',
      '451-["session:info",{"_placeholder":true,"num":0}]',
      '451-["session:info",{"_placeholder":true,"num":7}]',
      '45999999999-["x"]',
      '45a-["x"]',
      '452-[{"_placeholder":true,"num":-1}]',
      '461-[{}]',
      '47',
      '48',
      '4\u0000',
      '4\uD800',
      '42["\uD800",{}]',
      '42["__proto__",{}]',
      '42["constructor"]',
      '42["hasOwnProperty",{}]',
      '42["session:info",{"__proto__":{"polluted":true}}]',
      `42["session:info",${deep}]`,
      `421["message:send",${deep}]`,
      '0',
      '1',
      '2',
      '3',
      '5',
      '6',
      '9',
      '',
      '\uFFFF',
      'x'.repeat(1000),
      Buffer.from([0x04, 0x01, 0x02]),
      Buffer.alloc(0),
      Buffer.alloc(32 * 1024, 0xff),
    ];
    const results: string[] = [];
    for (const frame of frames) {
      count('raw frames');
      const raw = await connectRaw(node.url, fuzzerToken);
      raw.send(frame);
      // A DISCONNECT leaves the namespace (the engine connection stays): join it again to probe.
      if (typeof frame === 'string' && frame.startsWith('41')) raw.send(`40${JSON.stringify({ token: fuzzerToken })}`);
      // The node answers a probe on the same connection, or has closed it: either way, it lives on.
      raw.send('4277["session:info",{}]');
      const answer = await raw.next((f) => f.startsWith('4377'), 3000).catch((error: Error) => error.message);
      results.push(answer.startsWith('4377[{"ok":true') || answer === 'closed' ? 'ok' : `${describeValue(String(frame))}: ${answer}`);
      raw.close();
    }
    expect(results.filter((r) => r !== 'ok')).toEqual([]);
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();

    // A frame over SOCKET_MAX_PAYLOAD_BYTES closes that connection (1009: message too big) and nothing else.
    const big = await connectRaw(node.url, fuzzerToken);
    big.send(`42["session:info","${'x'.repeat(PAYLOAD_CAP + 1024)}"]`);
    expect(await big.closed).toBe(1009);

    // Engine.IO over HTTP long-polling: bad versions, transports, sessions and packets are 400s.
    const polling = `${node.url}/socket.io/?EIO=4&transport=polling`;
    const handshake = await (await fetch(polling)).text();
    const sid = /"sid":"([^"]+)"/.exec(handshake)?.[1];
    expect(sid).toBeDefined();
    for (const [target, init] of [
      [`${node.url}/socket.io/?EIO=3&transport=polling`, {}],
      [`${node.url}/socket.io/?EIO=999&transport=polling`, {}],
      [`${node.url}/socket.io/?EIO=4&transport=bogus`, {}],
      [`${polling}&sid=nope`, {}],
      [`${polling}&sid=${sid}`, { method: 'POST', body: '\u001e\u001e4\u0000' }],
      [`${polling}&sid=${sid}`, { method: 'POST', body: `b${'!'.repeat(100)}` }],
      [`${polling}&sid=${sid}`, { method: 'PUT', body: 'x' }],
    ] as Array<[string, RequestInit]>) {
      count('raw polling');
      const response = await fetch(target, init);
      await response.arrayBuffer();
      expect(response.status, target).toBeLessThan(500);
    }
  });

  it('keeps serving during event storms: thousands of frames at once on raw and real sockets', async () => {
    // One raw connection fires 3,000 acked events and 3,000 unknown ones without waiting.
    const raw = await connectRaw(node.url, fuzzerToken);
    const burst: string[] = [];
    for (let i = 0; i < 3000; i++) burst.push(`42${i}["session:info",{}]`, `42["no:such:event:${i}",{"x":${i}}]`);
    for (const frame of burst) raw.send(frame);
    await eventually(() => expect(raw.frames.filter((f) => /^43\d+\[\{"ok":true/.test(f)).length).toBe(3000), { timeoutMs: 30_000 });
    count('storm');
    raw.close();

    // 20 real clients, 100 events each, all at once, all over the catalog.
    const clients = await Promise.all(
      Array.from({ length: 20 }, (_, i) => {
        const socket = ioClient(node.url, { auth: { token: signToken({ sub: uniqueUser(`storm${i}`) }) }, transports: ['websocket'], reconnection: false, forceNew: true });
        return new Promise<typeof socket>((resolve, reject) => {
          socket.once('connect', () => resolve(socket));
          socket.once('connect_error', reject);
        });
      }),
    );
    const acks = await Promise.all(
      clients.flatMap((socket) =>
        fc
          .sample(
            fc.tuple(fc.constantFrom(...events), hostileValue).filter(([, value]) => wireSize(value) < PAYLOAD_CAP - 4096),
            { numRuns: 100, seed: SEED + 5000 },
          )
          .map(([event, payload]) =>
            (socket.timeout(20_000) as unknown as { emitWithAck(e: string, p: unknown): Promise<unknown> }).emitWithAck(event, payload).catch((error: unknown) => `no ack: ${String(error)}`),
          ),
      ),
    );
    for (const socket of clients) socket.close();
    count('storm');
    expect(acks.map(ackProblem).filter(Boolean)).toEqual([]);
  });

  it('ends with the node alive, no error logged, heap within bound, and every legitimate message delivered', async () => {
    for (const event of events) expect(coverage.get(event) ?? 0, `fuzz cases for ${event}`).toBeGreaterThanOrEqual(RUNS);
    for (const route of routes) expect(coverage.get(routeName(route)) ?? 0, `fuzz cases for ${routeName(route)}`).toBeGreaterThanOrEqual(RUNS);

    legit.running = false;
    await legit.loop;
    expect(legit.failures).toEqual([]);
    expect(legit.acked.length).toBeGreaterThan(20);
    await eventually(() => expect(new Set(bob.of('message:new').map((m) => m.id))).toEqual(new Set(legit.acked)), { timeoutMs: 10_000 });

    expect(node.child.exitCode).toBeNull();
    expect((await fetch(`${node.url}/healthz`)).status).toBe(200);
    const errors = node.logs.filter((line) => Number(line['level']) >= 50);
    expect(errors.map((line) => `${String(line['msg'])} ${describeValue(line['err'])}`)).toEqual([]);
    expect(node.stderr.filter((line) => /unhandled|uncaught|Error/i.test(line) && !/Debugger|inspector/.test(line))).toEqual([]);

    // Sockets closed a moment ago may still be referenced until their close handlers have run.
    const after = await eventually(
      async () => {
        const used = await heapUsed();
        expect(used - heapBefore).toBeLessThan(HEAP_GROWTH_BOUND);
        return used;
      },
      { timeoutMs: 10_000, intervalMs: 1000 },
    );
    console.info(
      `fuzz: ${[...coverage.values()].reduce((a, b) => a + b, 0)} cases; heap ${(heapBefore / 2 ** 20).toFixed(1)} MB before, ${(after / 2 ** 20).toFixed(1)} MB after; ${legit.acked.length} legitimate messages delivered`,
    );
  });
});

/** A URL path segment for any value: strings percent-encoded as UTF-8 (lone surrogates as U+FFFD, which encodeURIComponent refuses). */
function encodePathValue(value: unknown): string {
  const text = typeof value === 'string' ? value : describeValue(value);
  return [...Buffer.from(toWellFormed(text), 'utf8')]
    .map((byte) => (/[A-Za-z0-9\-_.~]/.test(String.fromCharCode(byte)) ? String.fromCharCode(byte) : `%${byte.toString(16).padStart(2, '0').toUpperCase()}`))
    .join('');
}

function toWellFormed(text: string): string {
  return (text as string & { toWellFormed(): string }).toWellFormed();
}
