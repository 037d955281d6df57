import fastifyRateLimit from '@fastify/rate-limit';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../../errors.ts';

/**
 * A coarse per-address guard for the REST API (REST_RATE_LIMIT_PER_MINUTE), counted in the same
 * Redis as everything else so all nodes share one budget per address. It applies to every route of
 * the app (hence fastify-plugin: not encapsulated); probes and metrics are exempt. The per-user,
 * per-class budgets that sockets have (transport/budgets.ts) apply to REST too: both transports go
 * through `runOperation`.
 */
export const restAddressLimit = fp(
  async (app: FastifyInstance): Promise<void> => {
    await app.register(fastifyRateLimit, {
      max: app.config.rateLimits.restPerMinute,
      timeWindow: 60_000,
      ...(app.redis && { redis: app.redis, nameSpace: `${app.config.redis?.keyPrefix ?? 'chat:'}rest-rl:` }),
      // Without Redis the limit is per node; with it, a Redis outage must not take REST down.
      skipOnError: true,
      // The browser pages' files (index.html, hashed assets) are static and cached: loading a page
      // must not spend the API's budget.
      allowList: (request) =>
        ['/healthz', '/readyz', '/metrics'].includes(request.url) ||
        request.url.startsWith('/docs') ||
        request.url.startsWith('/assets/') ||
        request.url.startsWith('/admin/assets/') ||
        ['/', '/admin', '/admin/'].includes(request.url.split('?')[0]!),
      errorResponseBuilder: (_request, context) => new AppError('rate_limited', `Too many requests from this address; retry in ${Math.ceil(context.ttl / 1000)} s`, { retryAfterMs: context.ttl }),
    });
  },
  { name: 'rest-rate-limit', dependencies: ['redis'] },
);
