import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { userIdSchema } from '@chat/protocol';
import { createSigner } from 'fast-jwt';
import { exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectError, connectSocket, startNode, type TestNode } from '@chat/testkit/nodes';
import { eventually } from '@chat/testkit/eventually';
import { signToken, TEST_JWT_SECRET, unsignedToken } from '@chat/testkit/tokens';

const now = () => Math.floor(Date.now() / 1000);
const DAY = 24 * 3600;

async function restError(node: TestNode, authorization: string | undefined) {
  const response = await node.app.inject({ method: 'GET', url: '/v1/me', headers: authorization === undefined ? {} : { authorization } });
  return { status: response.statusCode, body: response.json() as { ok: boolean; error: { code: string; retryable: boolean } } };
}

describe('authentication (HS256)', () => {
  let node: TestNode;
  beforeAll(async () => {
    node = await startNode({ JWT_ISSUER: 'https://id.example', JWT_AUDIENCE: 'chat' });
  });
  afterAll(() => node.close());

  const good = (claims: Record<string, unknown> = {}) => signToken({ sub: 'alice', name: 'Alice', iss: 'https://id.example', aud: 'chat', ...claims });

  const failures: Array<[string, () => string | undefined, string]> = [
    ['missing', () => undefined, 'token_missing'],
    ['malformed', () => 'not.a.jwt', 'token_malformed'],
    ['garbage', () => '%%%', 'token_malformed'],
    ['oversized', () => 'a'.repeat(9000), 'token_malformed'],
    ['bad signature', () => signToken({ sub: 'alice', iss: 'https://id.example', aud: 'chat' }, { secret: 'another-secret-that-is-32-characters-long!' }), 'token_invalid'],
    ['alg none', () => unsignedToken({ sub: 'alice', iss: 'https://id.example', aud: 'chat', exp: now() + 60 }), 'token_invalid'],
    ['expired', () => good({ exp: now() - 120 }), 'token_expired'],
    ['not yet valid', () => good({ nbf: now() + 600 }), 'token_inactive'],
    ['wrong issuer', () => good({ iss: 'https://evil.example' }), 'token_claims'],
    ['wrong audience', () => good({ aud: 'other' }), 'token_claims'],
    ['no subject', () => signToken({ name: 'x', iss: 'https://id.example', aud: 'chat' }), 'token_claims'],
    ['no exp', () => signToken({ sub: 'alice', iss: 'https://id.example', aud: 'chat' }, { expiresInSeconds: null }), 'token_claims'],
    ['longer-lived than JWT_MAX_LIFETIME_SECONDS', () => good({ iat: now(), exp: now() + DAY + 60 }), 'token_claims'],
    [
      'no iat and exp further than JWT_MAX_LIFETIME_SECONDS',
      () => createSigner({ key: TEST_JWT_SECRET, noTimestamp: true })({ sub: 'alice', iss: 'https://id.example', aud: 'chat', exp: now() + DAY + 60 }),
      'token_claims',
    ],
    ['lifetime hidden by an iat in the future', () => good({ iat: now() + 10 * DAY, exp: now() + 10 * DAY + 60 }), 'token_claims'],
  ];

  it.each(failures)('refuses a %s token on REST with its own code', async (_name, token, code) => {
    const value = token();
    const { status, body } = await restError(node, value === undefined ? undefined : `Bearer ${value}`);
    expect(status).toBe(401);
    expect(body).toMatchObject({ ok: false, error: { code } });
  });

  it.each(failures)('refuses a %s token in the socket handshake with its own code', async (_name, token, code) => {
    const error = await connectError(node.url, token());
    expect(error).toMatchObject({ code, message: expect.any(String), retryable: expect.any(Boolean) });
  });

  it('refuses an Authorization header that is not a bearer token', async () => {
    const { status, body } = await restError(node, `Basic ${Buffer.from('a:b').toString('base64')}`);
    expect(status).toBe(401);
    expect(body.error.code).toBe('token_malformed');
  });

  it('accepts a good token on REST and creates the user from its claims', async () => {
    const response = await node.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${good({ sub: 'rest-user', name: 'Rest User' })}` } });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ ok: true, user: { id: 'rest-user', displayName: 'Rest User' } });
  });

  it('accepts a token living exactly JWT_MAX_LIFETIME_SECONDS (24 h by default), on REST and a socket', async () => {
    const token = good({ sub: 'day-long', iat: now(), exp: now() + DAY });
    const response = await node.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${token}` } });
    expect(response.statusCode).toBe(200);
    const socket = await connectSocket(node.url, token);
    expect(await socket.emitWithAck('session:info', {})).toMatchObject({ ok: true, user: { id: 'day-long' } });
    socket.close();
  });

  it('accepts a good token on a socket, creates or updates the user, and answers session:info', async () => {
    const userId = `socket-user-${Date.now()}`;
    const first = await connectSocket(node.url, good({ sub: userId, name: 'First Name' }));
    const info = await first.emitWithAck('session:info', {});
    expect(info).toMatchObject({ ok: true, user: { id: userId, displayName: 'First Name' }, nodeId: node.app.nodeId, socketId: first.id });
    first.close();
    expect(await node.app.db.user.findUnique({ where: { id: userId } })).toMatchObject({ displayName: 'First Name' });

    const second = await connectSocket(node.url, good({ sub: userId, name: 'Renamed' }));
    second.close();
    expect(await node.app.db.user.findUnique({ where: { id: userId } })).toMatchObject({ displayName: 'Renamed' });
  });

  it('ends a socket whose token expires with token_expired, and the client does not reconnect by itself', async () => {
    const socket = await connectSocket(node.url, good({ sub: 'short-lived', exp: now() + 2 }));
    const ending = new Promise((resolve) => socket.once('session:ending', resolve));
    const disconnected = new Promise((resolve) => socket.once('disconnect', resolve));
    expect(await ending).toEqual({ reason: 'token_expired', message: expect.any(String) });
    expect(await disconnected).toBe('io server disconnect');
  });
});

describe('authentication (HS256 secret rotation with JWT_SECRET_PREVIOUS)', () => {
  const NEW_SECRET = 'the-new-secret-that-is-at-least-32-characters';
  let rotating: TestNode;
  beforeAll(async () => {
    rotating = await startNode({ JWT_SECRET: NEW_SECRET, JWT_SECRET_PREVIOUS: TEST_JWT_SECRET });
  });
  afterAll(() => rotating?.close());

  it('accepts tokens of the new and the retired secret, on REST and sockets, and no other secret', async () => {
    for (const secret of [NEW_SECRET, TEST_JWT_SECRET]) {
      const token = signToken({ sub: 'rotated-user' }, { secret });
      expect((await restError(rotating, `Bearer ${token}`)).status, secret).toBe(200);
      const socket = await connectSocket(rotating.url, token);
      expect(await socket.emitWithAck('session:info', {})).toMatchObject({ ok: true, user: { id: 'rotated-user' } });
      socket.close();
    }
    const foreign = signToken({ sub: 'rotated-user' }, { secret: 'a-third-secret-that-is-at-least-32-characters' });
    expect((await restError(rotating, `Bearer ${foreign}`)).body.error.code).toBe('token_invalid');
    expect((await connectError(rotating.url, foreign)).code).toBe('token_invalid');
  });

  it("checks the retired secret's tokens as strictly: expiry, required exp, and the lifetime cap", async () => {
    const expired = signToken({ sub: 'rotated-user', exp: now() - 10 }, { secret: TEST_JWT_SECRET });
    expect((await restError(rotating, `Bearer ${expired}`)).body.error.code).toBe('token_expired');
    const noExp = signToken({ sub: 'rotated-user' }, { secret: TEST_JWT_SECRET, expiresInSeconds: null });
    expect((await restError(rotating, `Bearer ${noExp}`)).body.error.code).toBe('token_claims');
    const tooLong = signToken({ sub: 'rotated-user', iat: now(), exp: now() + 2 * DAY }, { secret: TEST_JWT_SECRET });
    expect((await restError(rotating, `Bearer ${tooLong}`)).body.error.code).toBe('token_claims');
  });
});

describe('authentication (RS256 with an external identity provider key)', () => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  let node: TestNode;
  beforeAll(async () => {
    node = await startNode({ JWT_ALGORITHM: 'RS256', JWT_PUBLIC_KEY: publicPem });
  });
  afterAll(() => node.close());

  it('accepts a token signed with the private key', async () => {
    const token = createSigner({ key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), algorithm: 'RS256', expiresIn: 60_000 })({ sub: 'rs-user' });
    const socket = await connectSocket(node.url, token);
    expect(await socket.emitWithAck('session:info', {})).toMatchObject({ ok: true, user: { id: 'rs-user' } });
    socket.close();
  });

  it('refuses an HS256 token signed with the public key as secret (key confusion)', async () => {
    const forged = createSigner({ key: publicPem, algorithm: 'HS256', expiresIn: 60_000 })({ sub: 'mallory' });
    expect(await connectError(node.url, forged)).toMatchObject({ code: 'token_invalid' });
    const { status, body } = await restError(node, `Bearer ${forged}`);
    expect([status, body.error.code]).toEqual([401, 'token_invalid']);
  });
});

describe('dev token endpoint', () => {
  it('does not exist unless DEV_TOKENS is on', async () => {
    const node = await startNode();
    try {
      for (const url of ['/v1/dev/token', '/v1/dev/tokens']) {
        const response = await node.app.inject({ method: 'POST', url, payload: url.endsWith('s') ? { users: [{}] } : {} });
        expect(response.statusCode).toBe(404);
        expect(response.json()).toMatchObject({ ok: false, error: { code: 'not_found' } });
      }
    } finally {
      await node.close();
    }
  });

  it('mints a working token when DEV_TOKENS is on, and validates its body', async () => {
    const node = await startNode({ DEV_TOKENS: 'true' });
    try {
      for (const payload of [{ userId: 'has spaces' }, { userId: 'system' }, { userId: 'too-long', ttlSeconds: DAY + 1 }]) {
        const bad = await node.app.inject({ method: 'POST', url: '/v1/dev/token', payload });
        expect(bad.statusCode).toBe(400);
        expect(bad.json()).toMatchObject({ ok: false, error: { code: 'validation', retryable: false } });
      }

      const minted = await node.app.inject({ method: 'POST', url: '/v1/dev/token', payload: { userId: 'dev-1', displayName: 'Dev One' } });
      expect(minted.statusCode).toBe(200);
      const { token } = minted.json() as { token: string };
      const socket = await connectSocket(node.url, token);
      expect(await socket.emitWithAck('session:info', {})).toMatchObject({ ok: true, user: { id: 'dev-1', displayName: 'Dev One' } });
      socket.close();
      // The token lives DEV_TOKEN_TTL_SECONDS (3600 by default), as `expiresAt` says; it once lived
      // 1000 times longer (a TTL in seconds passed where @fastify/jwt expected seconds, times 1000).
      const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { iat: number; exp: number };
      expect(claims.exp - claims.iat).toBe(3600);
      const short = (await node.app.inject({ method: 'POST', url: '/v1/dev/token', payload: { ttlSeconds: 90 } })).json() as { token: string; expiresAt: string };
      const shortClaims = JSON.parse(Buffer.from(short.token.split('.')[1]!, 'base64url').toString()) as { exp: number };
      expect(Math.abs(shortClaims.exp * 1000 - Date.parse(short.expiresAt))).toBeLessThan(2000);
    } finally {
      await node.close();
    }
  });

  it('mints a batch of working tokens in one request, and answers every malformed batch with a validation error', async () => {
    const node = await startNode({ DEV_TOKENS: 'true' });
    try {
      const users = Array.from({ length: 1000 }, (_, i) => ({ userId: `batch-${i}`, displayName: `Batch ${i}` }));
      const minted = await node.app.inject({ method: 'POST', url: '/v1/dev/tokens', payload: { users, ttlSeconds: 600 } });
      expect(minted.statusCode).toBe(200);
      const { tokens } = minted.json() as { tokens: Array<{ userId: string; token: string }> };
      expect(tokens.map((t) => t.userId)).toEqual(users.map((u) => u.userId));
      const socket = await connectSocket(node.url, tokens[999]!.token);
      expect(await socket.emitWithAck('session:info', {})).toMatchObject({ ok: true, user: { id: 'batch-999', displayName: 'Batch 999' } });
      socket.close();
      // Random ids are minted for users without one.
      const anonymous = (await node.app.inject({ method: 'POST', url: '/v1/dev/tokens', payload: { users: [{}, {}] } })).json() as { tokens: Array<{ userId: string }> };
      expect(new Set(anonymous.tokens.map((t) => t.userId)).size).toBe(2);

      const malformed = [
        {},
        { users: [] },
        { users: [...users, { userId: 'one-too-many' }] },
        { users: [{ userId: 'has spaces' }] },
        { users: [{ userId: 'x', extra: 1 }] },
        { users: 'alice' },
        { users: [{}], ttlSeconds: 0 },
        // Longer than JWT_MAX_LIFETIME_SECONDS (24 h by default): the nodes would refuse the token.
        { users: [{}], ttlSeconds: DAY + 1 },
        { users: [{}], other: true },
        ...fc
          .sample(fc.record({ users: fc.array(fc.record({ userId: fc.string(), displayName: fc.anything() }), { maxLength: 5 }) }), 20)
          .filter((body) => body.users.length === 0 || body.users.some((u) => !userIdSchema.safeParse(u.userId).success || typeof u.displayName !== 'string' || u.displayName.trim() === '')),
      ];
      for (const payload of malformed) {
        const response = await node.app.inject({ method: 'POST', url: '/v1/dev/tokens', payload: payload as object });
        expect(response.statusCode, JSON.stringify(payload)).toBe(400);
        expect(response.json()).toMatchObject({ ok: false, error: { code: 'validation', retryable: false } });
      }
    } finally {
      await node.close();
    }
  });
});

describe('socket event validation', () => {
  let node: TestNode;
  beforeAll(async () => {
    node = await startNode();
  });
  afterAll(() => node.close());

  it('answers malformed payloads and unknown events with validation errors and keeps serving', async () => {
    const socket = await connectSocket(node.url, signToken({ sub: 'fuzzy' }));
    const emit = (event: string, ...args: unknown[]) => (socket as unknown as { emitWithAck: (e: string, ...a: unknown[]) => Promise<unknown> }).emitWithAck(event, ...args);
    for (const payload of [null, 42, 'text', [], { extra: true }, JSON.parse('{"__proto__": {"polluted": true}}')]) {
      expect(await emit('session:info', payload)).toMatchObject({ ok: false, error: { code: 'validation', retryable: false } });
    }
    for (const event of ['no:such:event', 'constructor', '__proto__', 'toString']) {
      expect(await emit(event, {})).toMatchObject({ ok: false, error: { code: 'validation' } });
    }
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
    await eventually(async () => expect(await socket.emitWithAck('session:info', {})).toMatchObject({ ok: true }));
    socket.close();
  });
});

/** A real identity provider's key endpoint: node:http on a free loopback port, counting its requests. */
async function startJwksServer(keys: JWK[]) {
  const state = { keys, requests: 0 };
  const server = createServer((_request, response) => {
    state.requests += 1;
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: state.keys }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    state,
    /** The provider goes down: the port refuses connections from now on. */
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function signingKey(alg: 'RS256' | 'ES256', kid: string) {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  /** Ten minutes by default; `exp: null` leaves it out. */
  const sign = ({ exp, ...claims }: Omit<JWTPayload, 'exp'> & { exp?: number | null } = {}) => {
    const jwt = new SignJWT({ iss: 'https://id.example', aud: 'chat', ...claims }).setProtectedHeader({ alg, kid });
    if (claims.iat === undefined) jwt.setIssuedAt();
    if (exp !== null) jwt.setExpirationTime(exp ?? '10m');
    return jwt.sign(privateKey);
  };
  return { jwk, sign };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function restCall(node: TestNode, token: string) {
  const response = await node.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${token}` } });
  return response.statusCode === 200 ? { status: 200, code: null } : { status: response.statusCode, code: (response.json() as { error: { code: string } }).error.code };
}

async function socketUser(node: TestNode, token: string): Promise<string> {
  const socket = await connectSocket(node.url, token);
  try {
    const info = (await socket.emitWithAck('session:info', {})) as { ok: boolean; user: { id: string } };
    return info.user.id;
  } finally {
    socket.close();
  }
}

describe('authentication (JWKS: a remote key set with rotation)', () => {
  const COOLDOWN_MS = 1000;

  it('verifies RS256 and ES256 tokens on REST and sockets across a key rotation, refetches an unknown kid at most once per cooldown, and keeps cached keys while the endpoint is down', async () => {
    const a = await signingKey('RS256', 'key-a');
    const b = await signingKey('ES256', 'key-b');
    const c = await signingKey('RS256', 'key-c'); // never published
    const jwks = await startJwksServer([a.jwk]);
    const node = await startNode({
      JWT_ALGORITHM: 'JWKS',
      JWT_JWKS_URL: jwks.url,
      JWT_JWKS_COOLDOWN_MS: String(COOLDOWN_MS),
      JWT_JWKS_CACHE_MAX_AGE_MS: '600000',
      JWT_ISSUER: 'https://id.example',
      JWT_AUDIENCE: 'chat',
    });
    try {
      // Key A: the first token fetches the set, the next ones use the cache.
      expect(await restCall(node, await a.sign({ sub: 'jwks-a' }))).toEqual({ status: 200, code: null });
      expect(await socketUser(node, await a.sign({ sub: 'jwks-a' }))).toBe('jwks-a');
      expect(jwks.state.requests).toBe(1);

      // The claims are checked as in the other modes.
      expect(await restCall(node, await a.sign({ sub: 'jwks-a', aud: 'other' }))).toEqual({ status: 401, code: 'token_claims' });
      expect(await restCall(node, await a.sign({ sub: 'jwks-a', iss: 'https://evil.example' }))).toEqual({ status: 401, code: 'token_claims' });
      expect(await restCall(node, await a.sign({ sub: 'jwks-a', exp: Math.floor(Date.now() / 1000) - 120 }))).toEqual({ status: 401, code: 'token_expired' });
      expect(await restCall(node, await a.sign({ sub: 'jwks-a', iat: now(), exp: now() + DAY + 60 }))).toEqual({ status: 401, code: 'token_claims' });
      expect(await restCall(node, await a.sign({ sub: 'jwks-a', exp: null }))).toEqual({ status: 401, code: 'token_claims' });
      expect(await connectError(node.url, await a.sign({ sub: 'jwks-a', exp: null }))).toMatchObject({ code: 'token_claims' });
      // HS256 (the dev tokens' algorithm) and `none` are not accepted in JWKS mode.
      expect(await restCall(node, signToken({ sub: 'jwks-a', iss: 'https://id.example', aud: 'chat' }))).toEqual({ status: 401, code: 'token_invalid' });
      expect(await restCall(node, unsignedToken({ sub: 'jwks-a', iss: 'https://id.example', aud: 'chat', exp: now() + 60 }))).toEqual({ status: 401, code: 'token_invalid' });
      // Malformed tokens are told apart from bad signatures, as in the other modes, and fetch nothing.
      const header = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
      for (const garbage of [
        'not.a.jwt',
        '%%%',
        '..',
        `${Buffer.from('{').toString('base64url')}.${header({})}.x`,
        `${header({ alg: 'RS256', kid: 'key-a' })}.${Buffer.from('[').toString('base64url')}.x`,
      ]) {
        expect(await restCall(node, garbage), garbage).toEqual({ status: 401, code: 'token_malformed' });
        expect(await connectError(node.url, garbage), garbage).toMatchObject({ code: 'token_malformed' });
      }
      expect(jwks.state.requests).toBe(1);

      // The provider rotates to key B and removes A. Past the cooldown, the first token with kid B
      // refetches the set and verifies; from then on A is refused (the refetched set replaced it).
      jwks.state.keys = [b.jwk];
      await sleep(COOLDOWN_MS + 100);
      expect(await socketUser(node, await b.sign({ sub: 'jwks-b' }))).toBe('jwks-b');
      expect(jwks.state.requests).toBe(2);
      expect(await restCall(node, await b.sign({ sub: 'jwks-b' }))).toEqual({ status: 200, code: null });
      expect(await restCall(node, await a.sign({ sub: 'jwks-a' }))).toEqual({ status: 401, code: 'token_invalid' });
      expect(await connectError(node.url, await a.sign({ sub: 'jwks-a' }))).toMatchObject({ code: 'token_invalid' });
      // Within the cooldown an unknown kid causes no fetch.
      expect(jwks.state.requests).toBe(2);

      // An unknown kid past the cooldown: ten concurrent tokens, REST and sockets, share one refetch,
      // and the ones right after it cause none.
      await sleep(COOLDOWN_MS + 100);
      const unknown = await Promise.all(
        Array.from({ length: 10 }, async (_, i) => {
          const token = await c.sign({ sub: `jwks-c-${i}` });
          return i % 2 === 0 ? (await restCall(node, token)).code : (await connectError(node.url, token)).code;
        }),
      );
      expect(unknown).toEqual(Array(10).fill('token_invalid'));
      expect(jwks.state.requests).toBe(3);
      for (let i = 0; i < 5; i++) expect((await restCall(node, await c.sign({ sub: 'jwks-c' }))).code).toBe('token_invalid');
      expect(jwks.state.requests).toBe(3);

      // The provider goes down. Key B is cached: its tokens still verify. An unknown kid cannot be
      // looked up: `unavailable` (retryable), never `internal`, and the node stays up.
      await jwks.stop();
      await sleep(COOLDOWN_MS + 100);
      expect(await restCall(node, await b.sign({ sub: 'jwks-b' }))).toEqual({ status: 200, code: null });
      expect(await socketUser(node, await b.sign({ sub: 'jwks-b' }))).toBe('jwks-b');
      expect(await restCall(node, await c.sign({ sub: 'jwks-c' }))).toEqual({ status: 503, code: 'unavailable' });
      expect(await connectError(node.url, await c.sign({ sub: 'jwks-c' }))).toMatchObject({ code: 'unavailable', retryable: true });
      expect(await restCall(node, await b.sign({ sub: 'jwks-b' }))).toEqual({ status: 200, code: null });
    } finally {
      await node.close();
      await jwks.stop().catch(() => {});
    }
  });

  it('refetches the set once JWT_JWKS_CACHE_MAX_AGE_MS passes (a removed key is refused from then on), and keeps the old set when that refetch fails', async () => {
    const a = await signingKey('RS256', 'key-a');
    const b = await signingKey('ES256', 'key-b');
    const jwks = await startJwksServer([a.jwk, b.jwk]);
    const node = await startNode({ JWT_ALGORITHM: 'JWKS', JWT_JWKS_URL: jwks.url, JWT_JWKS_COOLDOWN_MS: '200', JWT_JWKS_CACHE_MAX_AGE_MS: '1000' });
    try {
      expect(await restCall(node, await a.sign({ sub: 'stale-a' }))).toEqual({ status: 200, code: null });
      expect(jwks.state.requests).toBe(1);
      // A is removed; until the cached set is a second old, A still verifies without a fetch.
      jwks.state.keys = [b.jwk];
      expect(await socketUser(node, await a.sign({ sub: 'stale-a' }))).toBe('stale-a');
      expect(jwks.state.requests).toBe(1);
      await sleep(1100);
      expect(await restCall(node, await a.sign({ sub: 'stale-a' }))).toEqual({ status: 401, code: 'token_invalid' });
      expect(jwks.state.requests).toBe(2);
      expect(await restCall(node, await b.sign({ sub: 'stale-b' }))).toEqual({ status: 200, code: null });

      // The provider goes down for longer than the cache's age: B, cached, keeps verifying.
      await jwks.stop();
      await sleep(1100);
      expect(await restCall(node, await b.sign({ sub: 'stale-b' }))).toEqual({ status: 200, code: null });
      expect(await socketUser(node, await b.sign({ sub: 'stale-b' }))).toBe('stale-b');
    } finally {
      await node.close();
      await jwks.stop().catch(() => {});
    }
  });
});
