import fastifyJwt from '@fastify/jwt';
import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.ts';
import { AppError } from '../errors.ts';
import type { Principal } from '../identity/principal.ts';
import { createTokenService, jwtPluginOptions, type TokenService } from '../identity/tokens.ts';

declare module 'fastify' {
  interface FastifyInstance {
    tokens: TokenService;
    /** preHandler for REST routes: sets `request.principal` or answers 401 with a `token_*` code. */
    authenticate: (request: FastifyRequest) => Promise<void>;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/**
 * The token service (identity/tokens.ts) over @fastify/jwt as `app.tokens`, and the
 * `Authorization: Bearer` preHandler of REST routes.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    await app.register(fastifyJwt, jwtPluginOptions(config.jwt));
    const codec = {
      verify: (token: string) => app.jwt.verify<Record<string, unknown>>(token),
      // @fastify/jwt reads a numeric expiresIn as seconds (and converts it for fast-jwt).
      sign: (claims: Record<string, unknown>, ttlSeconds: number) => app.jwt.sign(claims, { expiresIn: ttlSeconds }),
    };
    const tokens = createTokenService(config.jwt, codec, app.revocations, app.log);
    app.decorate('tokens', tokens);
    app.decorateRequest('principal', null);
    app.decorate('authenticate', async (request: FastifyRequest) => {
      const header = request.headers.authorization;
      if (!header) throw new AppError('token_missing', 'Send Authorization: Bearer <token>');
      const match = /^Bearer +(\S+)$/i.exec(header);
      if (!match) throw new AppError('token_malformed', 'The Authorization header must be "Bearer <token>"');
      request.principal = await tokens.verify(match[1]);
    });
  },
  { name: 'auth', dependencies: ['revocations'] },
);
