import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { ApiKey, Config } from '../config.ts';
import { AppError } from '../errors.ts';

/** The two key-authenticated APIs: operators' (`/v1/admin/*`) and a customer backend's (`/v1/server/*`). */
export type ApiScope = 'admin' | 'server';

/** The key a request was authenticated with: its id, never its secret. */
export interface ApiCaller {
  scope: ApiScope;
  keyId: string;
}

/**
 * One scope's keys. A presented key is hashed and compared with every configured key's hash in
 * constant time, all of them every time, so neither the answer's timing nor an early exit tells a
 * caller how much of a key it got right, or which key it matched.
 */
export class KeyRing {
  readonly #keys: Array<{ id: string; digest: Buffer }>;

  constructor(keys: readonly ApiKey[]) {
    this.#keys = keys.map((key) => ({ id: key.id, digest: sha256(key.secret) }));
  }

  get empty(): boolean {
    return this.#keys.length === 0;
  }

  /** The id of the key `presented` is, or null. */
  match(presented: string): string | null {
    const digest = sha256(presented);
    let found: string | null = null;
    for (const key of this.#keys) {
      if (timingSafeEqual(key.digest, digest) && found === null) found = key.id;
    }
    return found;
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

declare module 'fastify' {
  interface FastifyInstance {
    /** preHandler for `/v1/admin/*`: sets `request.apiCaller` or answers 401 `unauthorized`. */
    authenticateAdmin: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
    /** preHandler for `/v1/server/*`: the same with SERVER_API_KEYS. */
    authenticateServer: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
  }
  interface FastifyRequest {
    apiCaller: ApiCaller | null;
  }
}

const ENV_NAME: Record<ApiScope, string> = { admin: 'ADMIN_API_KEYS', server: 'SERVER_API_KEYS' };

/**
 * Key authentication for the admin and backend APIs (`Authorization: Bearer <key>`). A user's JWT is
 * never accepted here, and these keys are never accepted as user tokens (they are not JWTs). Each
 * request's log line names the key's id (app.ts), and each answer is counted by scope, route and
 * outcome (`chat_api_key_requests_total`).
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    app.decorateRequest('apiCaller', null);

    function authenticator(scope: ApiScope) {
      const ring = new KeyRing(config.apiKeys[scope]);
      return async (request: FastifyRequest) => {
        if (ring.empty) throw new AppError('unauthorized', `The ${scope} API is disabled: no ${ENV_NAME[scope]} are configured`);
        const header = request.headers.authorization;
        const match = header ? /^Bearer +(\S+)$/i.exec(header) : null;
        if (!match) throw new AppError('unauthorized', `Send Authorization: Bearer <key>, a key from ${ENV_NAME[scope]}`);
        const keyId = ring.match(match[1]!);
        if (!keyId) throw new AppError('unauthorized', `The key is not one of ${ENV_NAME[scope]}`);
        request.apiCaller = { scope, keyId };
      };
    }
    app.decorate('authenticateAdmin', authenticator('admin'));
    app.decorate('authenticateServer', authenticator('server'));

    app.addHook('onResponse', async (request, reply) => {
      const scope = request.apiCaller?.scope ?? (request.url.startsWith('/v1/admin/') ? 'admin' : request.url.startsWith('/v1/server/') ? 'server' : null);
      if (!scope) return;
      app.metrics.apiKeyRequests.inc({ scope, route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) });
    });
  },
  { name: 'api-keys', dependencies: ['metrics'] },
);
