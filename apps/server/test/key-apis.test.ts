import { randomUUID } from 'node:crypto';
import { errorCatalog } from '@chat/protocol';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyRoutes } from '../src/transport/http/key-apis.ts';
import type { KeyRoute } from '../src/transport/http/key-routes.ts';
import { ackProblem, describeValue, payloadsNear } from './helpers/hostile.ts';
import { connectError, startNode, type TestNode } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { connectDevice, uniqueUser, type Device } from '@chat/testkit/users';

/**
 * The admin and backend APIs as an attacker and a fuzzer see them: every route of `keyRoutes` is
 * refused without its own scope's key (no key, a user's token, the other scope's key, a wrong key,
 * a key sent some other way), and answers hostile input with a catalogued error at its status.
 */
const ADMIN_KEY = `admin-secret-${randomUUID()}`;
const OTHER_ADMIN_KEY = `admin-rotated-${randomUUID()}`;
const SERVER_KEY = `server-secret-${randomUUID()}`;
const RUNS = Math.max(20, Math.round(Number(process.env['FUZZ_RUNS'] ?? 500) / 10));
const SEED = Number(process.env['FUZZ_SEED'] ?? Math.floor(Math.random() * 2 ** 31));

/** What a harmless valid call of each route sends; the fuzz varies it. Ids come from the fixture. */
export interface KeyFixture {
  /** A user with a connected device, in a group with `memberId`. */
  userId: string;
  memberId: string;
  conversationId: string;
  /** A node id no node has: actions on it are refused as not_found, so fuzzing them drains nothing. */
  missingNodeId: string;
}
type Example = {
  params?: Record<string, unknown>;
  query?: Record<string, unknown>;
  body?: Record<string, unknown>;
  /** The catalogued refusal a harmless call of the route gets once authenticated (a drain of a node no one has). */
  refusal?: keyof typeof errorCatalog;
};
const examples: Record<string, (f: KeyFixture) => Example> = {
  'GET /v1/admin/nodes': () => ({}),
  'GET /v1/admin/nodes/history': () => ({}),
  'POST /v1/admin/nodes/:id/drain': (f) => ({ params: { id: f.missingNodeId }, refusal: 'not_found' }),
  'GET /v1/admin/users/:id': (f) => ({ params: { id: f.userId } }),
  // The member's device already left, and nothing is revoked: closing nothing changes nothing.
  'POST /v1/admin/users/:id/disconnect': (f) => ({ params: { id: f.memberId }, body: { revoke: false } }),
  'POST /v1/server/conversations/direct': (f) => ({ body: { userIds: [f.userId, f.memberId] } }),
  'POST /v1/server/conversations/groups': (f) => ({ body: { ownerId: f.userId, title: 'key api example', memberIds: [f.memberId] } }),
  // The suite walks the routes in order: the member removed here is added back by the next route.
  'DELETE /v1/server/conversations/:conversationId/members/:userId': (f) => ({ params: { conversationId: f.conversationId, userId: f.memberId }, query: { as: f.userId } }),
  'POST /v1/server/conversations/:conversationId/members': (f) => ({ params: { conversationId: f.conversationId }, body: { as: f.userId, userIds: [f.memberId] } }),
  'POST /v1/server/conversations/:conversationId/messages': (f) => ({
    params: { conversationId: f.conversationId },
    body: { as: f.userId, clientMsgId: 'key-api-example', body: 'hello from the backend' },
  }),
  'POST /v1/server/presence': (f) => ({ body: { userIds: [f.userId, f.memberId] } }),
};

const name = (route: KeyRoute) => `${route.method} ${route.url}`;
const keyFor = { admin: ADMIN_KEY, server: SERVER_KEY } as const;

let node: TestNode;
let device: Device;
let fixture: KeyFixture;

beforeAll(async () => {
  node = await startNode({ ADMIN_API_KEYS: `ops:${ADMIN_KEY},ops-next:${OTHER_ADMIN_KEY}`, SERVER_API_KEYS: `backend:${SERVER_KEY}` });
  device = await connectDevice(node.url, uniqueUser('keyapi'));
  const member = await connectDevice(node.url, uniqueUser('keyapi-member'));
  const { conversation } = await device.ok('conversation:create-group', { title: 'key api', memberIds: [member.userId] });
  await member.close();
  fixture = { userId: device.userId, memberId: member.userId, conversationId: conversation.id, missingNodeId: `missing-${randomUUID().slice(0, 8)}` };
});
afterAll(async () => {
  await device?.close();
  await node?.close();
});

/** A fuzzed value as it goes into a URL; String() throws on some (an object without a prototype). */
function asText(value: unknown): string {
  try {
    return String(value);
  } catch {
    try {
      return JSON.stringify(value);
    } catch {
      return '[unprintable]';
    }
  }
}

/**
 * A path segment: percent-encoded UTF-8, except that a lone surrogate (which encodeURIComponent
 * refuses) goes out as the invalid bytes %ED%A0%80, as a hostile client could send it.
 */
function pathSegment(value: unknown): string {
  return [...asText(value)]
    .map((char) => {
      try {
        return encodeURIComponent(char);
      } catch {
        return '%ED%A0%80';
      }
    })
    .join('');
}

function request(route: KeyRoute, example: Example, authorization: string | undefined, override?: { body?: string | undefined; path?: string }) {
  const path = override?.path ?? route.url.replace(/:(\w+)/g, (_m, key: string) => pathSegment(example.params?.[key] ?? ''));
  const query = new URLSearchParams(Object.entries(example.query ?? {}).map(([k, v]) => [k, asText(v)] as [string, string]));
  const hasBody = route.method !== 'GET' && route.method !== 'DELETE';
  const headers: Record<string, string> = {};
  if (authorization !== undefined) headers['authorization'] = authorization;
  let body: string | undefined;
  if (hasBody) {
    headers['content-type'] = 'application/json';
    body = override && 'body' in override ? override.body : JSON.stringify(example.body ?? {});
  }
  return fetch(`${node.url}${path}${query.size ? `?${query}` : ''}`, { method: route.method, headers, ...(body !== undefined && { body }) });
}

describe('key-authenticated APIs', () => {
  it("has a harmless example for every route, and every route is under its scope's prefix", () => {
    for (const route of keyRoutes) {
      expect(examples[name(route)], `no example for ${name(route)}`).toBeTypeOf('function');
      expect(route.url.startsWith(`/v1/${route.scope}/`), name(route)).toBe(true);
    }
  });

  it.each(keyRoutes.map((route) => [name(route), route] as const))("%s: refused without its scope's key, answered with it", async (_name, route) => {
    const example = examples[name(route)]!(fixture);
    const userToken = signToken({ sub: fixture.userId });
    const otherScope = route.scope === 'admin' ? SERVER_KEY : ADMIN_KEY;
    const refusals = [undefined, `Bearer ${userToken}`, `Bearer ${otherScope}`, `Bearer ${keyFor[route.scope]}x`, `Basic ${keyFor[route.scope]}`, keyFor[route.scope], 'Bearer'];
    for (const authorization of refusals) {
      const response = await request(route, example, authorization);
      expect([response.status, await response.json()], String(authorization).slice(0, 40)).toEqual([401, { ok: false, error: expect.objectContaining({ code: 'unauthorized' }) }]);
    }
    // Refused before the body is even parsed: an unauthenticated caller learns nothing of the schema.
    if (route.method !== 'GET' && route.method !== 'DELETE') {
      const response = await request(route, example, undefined, { body: '{' });
      expect(response.status).toBe(401);
    }
    const accepted = await request(route, example, `Bearer ${keyFor[route.scope]}`);
    const body = (await accepted.json()) as { ok: boolean; error?: { code: string } };
    const answered = (status: number) => (example.refusal ? status === errorCatalog[example.refusal].status : status < 300);
    expect(answered(accepted.status), `${accepted.status} ${JSON.stringify(body)}`).toBe(true);
    expect(body.ok).toBe(!example.refusal);
    if (example.refusal) expect(body.error?.code).toBe(example.refusal);
    if (route.scope === 'admin') {
      // Both keys of a rotation work at once.
      expect(answered((await request(route, example, `Bearer ${OTHER_ADMIN_KEY}`)).status)).toBe(true);
    }
  });

  it('accepts no key of either API as a user token, on sockets or REST', async () => {
    for (const key of [ADMIN_KEY, SERVER_KEY]) {
      expect((await connectError(node.url, key)).code).toBe('token_malformed');
      const response = await fetch(`${node.url}/v1/conversations`, { headers: { authorization: `Bearer ${key}` } });
      expect(response.status).toBe(401);
      expect(((await response.json()) as { error: { code: string } }).error.code).toMatch(/^token_/);
    }
  });

  it('counts every call by scope, route and status, and never puts a key in /metrics', async () => {
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    if (keyRoutes.length > 0) expect(metrics).toMatch(/chat_api_key_requests_total\{scope="(admin|server)",route="[^"]+",status="401"/);
    for (const key of [ADMIN_KEY, OTHER_ADMIN_KEY, SERVER_KEY]) expect(metrics).not.toContain(key);
  });

  it(`answers hostile input on every route with a catalogued error at its status, or a 2xx ok (FUZZ_SEED=${SEED})`, async () => {
    const problems: string[] = [];
    for (const [index, route] of keyRoutes.entries()) {
      const example = examples[name(route)]!(fixture);
      const flat = { ...example.params, ...example.query, ...example.body };
      const cases = fc.sample(fc.record({ payload: payloadsNear(flat), raw: fc.option(fc.constantFrom('{', 'null', '[]', '"x"', `{"a":"${'x'.repeat(70_000)}"}`), { freq: 5 }) }), {
        numRuns: RUNS,
        seed: SEED + index,
      });
      for (const { payload, raw } of cases) {
        const fields = typeof payload === 'object' && payload !== null && !Array.isArray(payload) ? (payload as Record<string, unknown>) : {};
        const pick = (shape: Record<string, unknown> | undefined) => Object.fromEntries(Object.keys(shape ?? {}).map((key) => [key, fields[key]]));
        const hostile: Example = {
          params: pick(example.params),
          query: pick(example.query),
          body: Object.fromEntries(Object.entries(fields).filter(([key]) => !(key in (example.params ?? {})) && !(key in (example.query ?? {})))),
        };
        // The node's own id never reaches a drain: the fuzz must not stop the node it is testing.
        if (Object.values(hostile.params ?? {}).includes(node.app.nodeId)) continue;
        const response = await request(route, hostile, `Bearer ${keyFor[route.scope]}`, raw === null ? undefined : { body: raw });
        const text = await response.text();
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = `non-JSON ${response.status}: ${text.slice(0, 100)}`;
        }
        let problem = ackProblem(json);
        if (!problem) {
          const { ok, error } = json as { ok: boolean; error?: { code: keyof typeof errorCatalog } };
          if (ok && response.status >= 300) problem = `ok with status ${response.status}`;
          if (!ok && response.status !== errorCatalog[error!.code].status) problem = `${error!.code} with status ${response.status}`;
          if (!ok && error!.code === 'internal') problem = 'internal error';
        }
        if (problem && problems.length < 20) problems.push(`${name(route)} ${describeValue(hostile)}: ${problem}`);
      }
    }
    expect(problems).toEqual([]);
    expect((await fetch(`${node.url}/healthz`)).status).toBe(200);
  }, 120_000);
});
