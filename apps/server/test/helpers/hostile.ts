import { errorCatalog, type ClientEventName, type ClientPayload } from '@chat/protocol';
import fc from 'fast-check';
import WebSocket from 'ws';

/**
 * Generators of hostile input for the fuzz and security suites (fast-check arbitraries), the check
 * every answer must pass, and a raw Engine.IO/Socket.IO client for frames socket.io-client never sends.
 */

/** Builds an own enumerable property even for `__proto__`, which plain assignment would turn into a prototype change. */
export function own(target: Record<string, unknown>, key: string, value: unknown): Record<string, unknown> {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  return target;
}

const nest = (depth: number, leaf: unknown, asObject: boolean): unknown => {
  let value = leaf;
  for (let i = 0; i < depth; i++) value = asObject ? { a: value } : [value];
  return value;
};

export const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 80 }), // any code point, lone surrogate halves included
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.constantFrom(
    '',
    ' ',
    '\u0000',
    '\uD800',
    '\uDFFF',
    '\uDC00\uD800',
    'a\uD83D',
    '\u202E\u2066evil',
    '\uFEFF\u200B\u200D',
    '👨‍👩‍👧‍👦'.repeat(50),
    'Z\u0351\u0360\u035E'.repeat(200),
    '__proto__',
    'constructor',
    'prototype',
    "' OR 1=1; DROP TABLE messages; --",
    '<script>alert(1)</script>',
    '../../../../etc/passwd',
    '%00%2e%2e%2f',
    '${7*7}{{7*7}}',
    'null',
    'undefined',
    'NaN',
    '0190a5f5-0000-7000-8000-00000000000g',
    '00000000-0000-0000-0000-000000000000',
  ),
  fc.uuid(), // well-formed ids of nothing
  fc.integer({ min: 1000, max: 20_000 }).map((length) => 'x'.repeat(length)),
  fc.integer({ min: 200, max: 4000 }).map((length) => '\uD83D\uDE00'.repeat(length)),
);

export const hostileNumber: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(0, -0, -1, 0.5, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 53), Number.MAX_SAFE_INTEGER + 2, Number.MAX_VALUE, -Number.MAX_VALUE, Number.MIN_VALUE, NaN, Infinity, -Infinity),
  fc.integer(),
  fc.double(),
);

export const prototypeBombs: fc.Arbitrary<unknown> = fc.constantFrom(
  JSON.parse('{"__proto__":{"polluted":true,"ok":true}}'),
  JSON.parse('{"constructor":{"prototype":{"polluted":true}}}'),
  JSON.parse('{"__proto__":[],"length":1e9}'),
  { toString: 'x', valueOf: 1, hasOwnProperty: 'x', toJSON: 'x' },
);

/** Any hostile value: wrong types, limits, deep nesting, huge arrays, binary, prototype keys, random JSON. */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: hostileString },
  { weight: 3, arbitrary: hostileNumber },
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 20, max: 2000 }), fc.boolean()).map(([depth, asObject]) => nest(depth, 'deep', asObject)) },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 10_001 }).map((length) => Array.from({ length }, (_, i) => (i % 3 === 0 ? 'x' : i % 3 === 1 ? i : null))) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 4096 }).map((bytes) => Buffer.from(bytes)) },
  { weight: 1, arbitrary: prototypeBombs },
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 4 }) },
  { weight: 1, arbitrary: fc.array(hostileString, { maxLength: 20 }) },
);

const extraKeys = fc.oneof(fc.constantFrom('__proto__', 'constructor', 'prototype', 'senderId', 'userId', 'ok', 'error', 'toString', 'hasOwnProperty'), fc.string({ maxLength: 20 }));

/**
 * Payloads near a valid one, so each field's checks and the operation behind them are reached: fields
 * dropped, replaced by hostile values, hostile extra keys added; sometimes the valid payload itself,
 * sometimes a wholly hostile value instead.
 */
export function payloadsNear(valid: Record<string, unknown>): fc.Arbitrary<unknown> {
  const keys = Object.keys(valid);
  const mutation = fc
    .record({
      drop: keys.length > 0 ? fc.subarray(keys, { maxLength: keys.length }) : fc.constant([] as string[]),
      replace: keys.length > 0 ? fc.dictionary(fc.constantFrom(...keys), hostileValue, { maxKeys: keys.length }) : fc.constant({}),
      extra: fc.dictionary(extraKeys, hostileValue, { maxKeys: 3 }),
    })
    .map(({ drop, replace, extra }) => {
      const out: Record<string, unknown> = {};
      for (const key of keys) if (!drop.includes(key)) own(out, key, valid[key]);
      for (const [key, value] of Object.entries(replace)) own(out, key, value);
      for (const [key, value] of Object.entries(extra)) own(out, key, value);
      return out;
    });
  return fc.oneof({ weight: 1, arbitrary: fc.constant(valid) }, { weight: 6, arbitrary: mutation }, { weight: 2, arbitrary: hostileValue });
}

/** A rough size of what goes on the wire, to keep ordinary fuzz payloads under the frame cap. */
export function wireSize(value: unknown): number {
  try {
    return Buffer.byteLength(JSON.stringify(value) ?? '');
  } catch {
    return Infinity;
  }
}

/** Fields a valid example needs, set up by the suite before fuzzing. */
export interface FuzzFixture {
  /** A user the fuzzing user shares a group with. */
  peerId: string;
  groupId: string;
  /** A group kept only for `conversation:leave`, so leaving does not shut the fuzzer out of `groupId`. */
  leaveGroupId: string;
  messageId: string;
}

/**
 * One valid payload per client event. A new event without an entry does not compile, and the fuzz
 * suite checks at run time that each example still passes its schema: every event is fuzzed.
 */
export const validExamples: { [E in ClientEventName]: (f: FuzzFixture) => ClientPayload<E> } = {
  'session:info': () => ({}),
  'conversation:open-direct': (f) => ({ userId: f.peerId }),
  'conversation:create-group': (f) => ({ title: 'fuzz group', memberIds: [f.peerId] }),
  'conversation:add-members': (f) => ({ conversationId: f.groupId, userIds: [f.peerId] }),
  'conversation:remove-member': (f) => ({ conversationId: f.groupId, userId: f.peerId }),
  'conversation:rename': (f) => ({ conversationId: f.groupId, title: 'renamed by fuzz' }),
  'conversation:leave': (f) => ({ conversationId: f.leaveGroupId }),
  'conversation:get': (f) => ({ conversationId: f.groupId }),
  'conversation:list': () => ({ limit: 10, archived: false }),
  'message:send': (f) => ({
    conversationId: f.groupId,
    clientMsgId: 'fuzz-msg-0001',
    body: 'hello',
    kind: 'text',
    attachments: [{ url: 'https://files.example/a.png', mime: 'image/png', size: 10, name: 'a.png' }],
    threadRootId: f.messageId,
  }),
  'message:edit': (f) => ({ messageId: f.messageId, body: 'edited by fuzz' }),
  'message:delete': (f) => ({ messageId: f.messageId, scope: 'me' }),
  'message:react': (f) => ({ messageId: f.messageId, emoji: '🔥', action: 'add' }),
  'typing:set': (f) => ({ conversationId: f.groupId, typing: true }),
  'typing:list': (f) => ({ conversationId: f.groupId }),
  'presence:set-status': () => ({ status: 'away' }),
  'presence:get': (f) => ({ userIds: [f.peerId] }),
  'receipt:mark': (f) => ({ conversationId: f.groupId, delivered: 1, read: 1 }),
  'history:fetch': (f) => ({ conversationId: f.groupId, after: 0, limit: 5 }),
  'sync:changes': (f) => ({ since: [{ conversationId: f.groupId, version: 0 }], limit: 5 }),
  'message:search': (f) => ({
    query: `"hello world" -edited or fuzz'; DROP TABLE messages; -- <b>&amp;`,
    conversationId: f.groupId,
    senderId: f.peerId,
    after: '2020-01-01T00:00:00Z',
    before: '2999-01-01T00:00:00.000+02:00',
    hasAttachment: false,
    limit: 5,
  }),
  'thread:fetch': (f) => ({ rootId: f.messageId, after: 0, limit: 5 }),
  'thread:list': (f) => ({ conversationId: f.groupId, cursor: 'MjAyNi0wMS0wMVQwMDowMDowMC4wMDBafDAxOTBkNmE4LTAwMDAtNzAwMC04MDAwLTAwMDAwMDAwMDAwMA', limit: 5 }),
  'thread:mark-read': (f) => ({ rootId: f.messageId, seq: 2_147_483_647 }),
  'notification:list': () => ({ limit: 10, unreadOnly: true }),
  'notification:mark-read': () => ({ all: true }),
  'notification:delete': () => ({ notificationId: UNKNOWN_ID }),
  'conversation:mute': (f) => ({ conversationId: f.groupId, muted: true }),
  'conversation:archive': (f) => ({ conversationId: f.groupId, archived: true }),
  'message:schedule': (f) => ({
    conversationId: f.groupId,
    clientMsgId: 'fuzz-sched-0001',
    body: 'later',
    attachments: [{ url: 'https://files.example/a.png', mime: 'image/png', size: 10, name: 'a.png' }],
    sendAt: new Date(Date.now() + 3600_000).toISOString(),
  }),
  'message:scheduled-list': (f) => ({ conversationId: f.groupId, limit: 5 }),
  'message:scheduled-edit': () => ({ scheduledId: UNKNOWN_ID, body: 'edited later', sendAt: new Date(Date.now() + 7200_000).toISOString() }),
  'message:scheduled-cancel': () => ({ scheduledId: UNKNOWN_ID }),
  'call:invite': (f) => ({ calleeId: f.peerId, media: 'video' }),
  'call:accept': () => ({ callId: UNKNOWN_ID }),
  'call:reject': () => ({ callId: UNKNOWN_ID }),
  'call:cancel': () => ({ callId: UNKNOWN_ID }),
  'call:end': () => ({ callId: UNKNOWN_ID }),
  'call:signal': () => ({ callId: UNKNOWN_ID, signal: { type: 'offer', sdp: 'v=0' } }),
  'call:get': () => ({ callId: UNKNOWN_ID }),
  'upload:create': (f) => ({ conversationId: f.groupId, name: '../../etc/passwd', mimeType: 'image/png; charset=binary', size: 1024 }),
  'upload:complete': () => ({ uploadId: UNKNOWN_ID }),
  'upload:url': () => ({ uploadId: UNKNOWN_ID }),
};

/** A well-formed id of nothing: notifications and calls are the fuzzing user's own only when it made them. */
const UNKNOWN_ID = '0190d6a8-0000-7000-8000-000000000000';

/**
 * What every answer must be: `{ ok: true, ... }`, or `{ ok: false, error }` with a catalogued code
 * (never `internal`: that is a server bug), a message, and the catalog's `retryable`. Returns the
 * problem, or null.
 */
export function ackProblem(ack: unknown): string | null {
  if (typeof ack !== 'object' || ack === null) return `not an object: ${String(ack)}`;
  const { ok, error } = ack as { ok?: unknown; error?: { code?: unknown; message?: unknown; retryable?: unknown } };
  if (ok === true) return null;
  if (ok !== false || typeof error !== 'object' || error === null) return `neither ok nor an error: ${JSON.stringify(ack).slice(0, 200)}`;
  const code = String(error.code);
  if (!Object.hasOwn(errorCatalog, code)) return `code not in the catalog: ${code}`;
  if (code === 'internal') return `internal error: ${String(error.message)}`;
  if (typeof error.message !== 'string' || error.message.length === 0) return `no message for ${code}`;
  if (error.retryable !== errorCatalog[code as keyof typeof errorCatalog].retryable) return `retryable ${String(error.retryable)} for ${code}`;
  if (/\bat .+\.(ts|js):\d+|node_modules|prisma\.|SELECT |INSERT /i.test(error.message)) return `internals leak into the message: ${error.message}`;
  return null;
}

export function describeValue(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 300 ? `${text.slice(0, 300)}… (${text.length} chars)` : text;
}

/**
 * A raw Engine.IO v4 WebSocket to a node, for frames socket.io-client would never send. Engine.IO
 * packet types: 0 open, 1 close, 2 ping, 3 pong, 4 message; a Socket.IO packet inside a message:
 * 0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR, 5 BINARY_EVENT, 6 BINARY_ACK.
 */
export interface RawSocket {
  ws: WebSocket;
  /** Text frames received, in order (the open packet included). */
  frames: string[];
  /** Resolves with the close code once the connection is closed, by either side. */
  closed: Promise<number>;
  isOpen(): boolean;
  send(frame: string | Buffer): void;
  /** Resolves with the first frame after the last one matched so far that matches, or rejects ('timeout', 'closed'). */
  next(match: (frame: string) => boolean, timeoutMs?: number): Promise<string>;
  close(): void;
}

export function openRaw(url: string, { answerPings = true } = {}): Promise<RawSocket> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`);
  const frames: string[] = [];
  const waiters = new Set<() => void>();
  let cursor = 0; // frames before it were matched by an earlier next()
  let open = false;
  const closed = new Promise<number>((resolve) =>
    ws.once('close', (code) => {
      open = false;
      resolve(code);
      for (const waiter of waiters) waiter();
    }),
  );
  ws.on('error', () => {}); // the close event reports it
  ws.on('message', (data, isBinary) => {
    const text = isBinary ? '<binary>' : data.toString();
    if (answerPings && text === '2') ws.send('3');
    frames.push(text);
    for (const waiter of waiters) waiter();
  });
  const raw: RawSocket = {
    ws,
    frames,
    closed,
    isOpen: () => open && ws.readyState === WebSocket.OPEN,
    send: (frame) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(frame);
    },
    next: (match, timeoutMs = 5000) => {
      return new Promise<string>((resolve, reject) => {
        const check = () => {
          for (; cursor < frames.length; cursor++) {
            if (match(frames[cursor]!)) {
              finish();
              return resolve(frames[cursor++]!);
            }
          }
          if (ws.readyState === WebSocket.CLOSED) {
            finish();
            reject(new Error('closed'));
          }
        };
        const timer = setTimeout(() => {
          finish();
          reject(new Error('timeout'));
        }, timeoutMs);
        const finish = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    close: () => ws.terminate(),
  };
  return new Promise((resolve, reject) => {
    ws.once('open', () => {
      open = true;
      resolve(raw);
    });
    ws.once('error', reject);
  });
}

/** Opens a raw socket and joins the main namespace with a token; resolves after the CONNECT answer. */
export async function connectRaw(url: string, token: string): Promise<RawSocket> {
  const raw = await openRaw(url);
  await raw.next((frame) => frame.startsWith('0{'));
  raw.send(`40${JSON.stringify({ token })}`);
  const answer = await raw.next((frame) => frame.startsWith('40') || frame.startsWith('44'));
  if (!answer.startsWith('40{')) throw new Error(`connect refused: ${answer}`);
  return raw;
}
