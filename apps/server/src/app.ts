import Fastify, { LogController, type FastifyError, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from './config.ts';
import { AppError, toAppError } from './errors.ts';
import auth from './plugins/auth.ts';
import calls from './plugins/calls.ts';
import database from './plugins/database.ts';
import docs from './plugins/docs.ts';
import lifecycle from './plugins/lifecycle.ts';
import metrics from './plugins/metrics.ts';
import presence from './plugins/presence.ts';
import realtime from './plugins/realtime.ts';
import redis from './plugins/redis.ts';
import services from './plugins/services.ts';
import state from './plugins/state.ts';
import { devTokenRoutes } from './transport/http/dev-token.ts';
import { healthRoutes } from './transport/http/health.ts';
import { meRoutes } from './transport/http/me.ts';
import { restRateLimit } from './transport/http/rate-limit.ts';
import { restRoutes } from './transport/http/rest.ts';
import { webRoutes } from './transport/http/web.ts';

declare module 'fastify' {
  interface FastifyInstance {
    nodeId: string;
    config: Config;
  }
}

// Fastify's own request errors, mapped onto the catalog so every REST error has the same shape.
const fastifyErrorCodes: Record<string, AppError['code']> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_JSON_BODY: 'validation',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'validation',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'validation',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'validation',
  FST_ERR_VALIDATION: 'validation',
};

/**
 * Builds one node: infrastructure plugins, domain services, HTTP routes and the socket transport.
 * It does not listen or handle signals; `main.ts` does that, and tests build as many nodes as they need.
 */
export async function buildApp(config: Config, logger: Logger): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: logger,
    // One log line per request, written in onResponse below, instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.limits.bodyBytes,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    // Behind nginx every request comes from the proxy: without this, per-address limits would count
    // all clients as one. Only proxies on the configured networks are believed.
    trustProxy: config.trustProxy,
    // avvio's 10 s default per plugin is too tight for the embedded database: creating a PGlite
    // cluster takes ~7 s on an idle 2-core machine and more under load, which failed start-up.
    pluginTimeout: 60_000,
  }) as unknown as FastifyInstance;

  app.decorate('nodeId', config.nodeId);
  app.decorate('config', config);

  app.addHook('onResponse', async (request, reply) => {
    request.log.info(
      {
        method: request.method,
        url: request.url,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
        userId: request.principal?.userId,
      },
      'request',
    );
  });

  app.setErrorHandler((thrown: FastifyError | Error, request, reply) => {
    const mapped = 'code' in thrown && typeof thrown.code === 'string' ? fastifyErrorCodes[thrown.code] : undefined;
    const error = mapped ? new AppError(mapped, thrown.message) : toAppError(thrown);
    if (error.status >= 500) request.log.error({ err: thrown }, 'request failed');
    if (error.retryAfterMs !== undefined) reply.header('retry-after', Math.ceil(error.retryAfterMs / 1000));
    reply.code(error.status).send({ ok: false, error: error.toWire() });
  });
  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send({ ok: false, error: new AppError('not_found', `No route ${request.method} ${request.url.split('?')[0]}`).toWire() });
  });

  await app.register(lifecycle);
  await app.register(metrics, { nodeId: config.nodeId });
  await app.register(database, { config });
  await app.register(redis, { config });
  await app.register(state, { config });
  await app.register(auth, { config });
  await app.register(realtime, { config });
  await app.register(services, { config });
  await app.register(presence, { config });
  await app.register(calls, { config });

  await app.register(docs);
  await app.register(restRateLimit);
  await app.register(healthRoutes);
  await app.register(meRoutes);
  await app.register(restRoutes);
  if (config.devTokens.enabled) await app.register(devTokenRoutes, { defaultTtlSeconds: config.devTokens.ttlSeconds });
  await app.register(webRoutes);

  return app;
}
