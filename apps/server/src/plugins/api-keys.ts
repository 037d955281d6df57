import type { FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.ts';
import { AppError } from '../errors.ts';
import { type ApiCaller, type ApiScope, KeyRing } from '../identity/api-caller.ts';

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
