import fastifyCors from '@fastify/cors';
import fastifyHelmet from '@fastify/helmet';
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { errorCatalog, wireError } from '@chat/protocol';
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from './config.ts';
import { AppError, toAppError } from './errors.ts';
import apiKeys from './plugins/api-keys.ts';
import auth from './plugins/auth.ts';
import calls from './plugins/calls.ts';
import control from './plugins/control.ts';
import database from './plugins/database.ts';
import docs from './plugins/docs.ts';
import lifecycle from './plugins/lifecycle.ts';
import metrics from './plugins/metrics.ts';
import nodeAdmin from './plugins/node-admin.ts';
import presence from './plugins/presence.ts';
import realtime from './plugins/realtime.ts';
import redis from './plugins/redis.ts';
import revocations from './plugins/revocations.ts';
import services from './plugins/services.ts';
import scheduler from './plugins/scheduler.ts';
import uploads from './plugins/uploads.ts';
import userSessions from './plugins/user-sessions.ts';
import state from './plugins/state.ts';
import { drainAndClose } from './shutdown.ts';
import { devTokenRoutes } from './transport/http/dev-token.ts';
import { healthRoutes } from './transport/http/health.ts';
import { keyApiRoutes } from './transport/http/key-apis.ts';
import { meRoutes } from './transport/http/me.ts';
import { restAddressLimit } from './transport/http/address-limit.ts';
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
 * Node's HTTP parser refused a request (Fastify's default, with catalogued bodies): headers too large,
 * a request not received within HTTP_HEADERS_TIMEOUT_MS / HTTP_REQUEST_TIMEOUT_MS, or bytes that are
 * not HTTP. The connection is closed after the answer.
 */
function answerClientError(error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const wire =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? wireError('request_timeout', 'The request did not arrive in time')
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? wireError('payload_too_large', 'The request headers are too large')
        : wireError('validation', 'Malformed HTTP request');
  const { status } = errorCatalog[wire.code];
  const body = JSON.stringify({ ok: false, error: wire });
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
}

/** What a request id may look like when it comes in a header: a UUID, nginx's 32 hex digits, a ULID. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The request's id, in every log line of the request (`reqId`) and echoed as `X-Request-Id`: the
 * `X-Request-Id` header when it is one (nginx sets it, from the client's own when that is valid, else
 * its `$request_id`), otherwise a fresh UUID. Anything else in the header (too long, odd characters)
 * is ignored rather than logged.
 */
export function requestId(request: IncomingMessage): string {
  const header = request.headers['x-request-id'];
  return typeof header === 'string' && REQUEST_ID.test(header) ? header : randomUUID();
}

/**
 * Builds one node: infrastructure plugins, domain services, HTTP routes and the socket transport.
 * It does not listen or handle signals; `main.ts` does that, and tests build as many nodes as they need.
 */
export async function buildApp(config: Config, logger: Logger): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: logger,
    // One log line per request, written in onResponse below, instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    // The id comes from X-Request-Id through genReqId, which checks it first (Fastify's own
    // requestIdHeader would take the header as it is).
    requestIdHeader: false,
    genReqId: requestId,
    bodyLimit: config.limits.bodyBytes,
    forceCloseConnections: 'idle',
    // Fastify gives each plugin 10 s to start by default; the embedded PGlite database (WebAssembly,
    // migrations on first start) can need longer on a busy machine, and a plugin past its timeout
    // stops the node.
    pluginTimeout: 60_000,
    return503OnClosing: true,
    // Behind nginx every request comes from the proxy: without this, per-address limits would count
    // all clients as one. Only proxies on the configured networks are believed.
    trustProxy: config.trustProxy,
    // Slow or half-open clients: a request whose headers (or whole body) have not arrived in time is
    // answered 408 and its connection closed; an idle keep-alive connection is closed after
    // keepAliveTimeout (above nginx's upstream keepalive_timeout of 60 s, so nginx closes first and
    // never reuses a connection the node is closing). Node checks these every
    // connectionsCheckingInterval (30 s by default, far longer than the bounds): at most 1 s here.
    http: {
      headersTimeout: config.http.headersTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, config.http.headersTimeoutMs),
    },
    requestTimeout: config.http.requestTimeoutMs,
    keepAliveTimeout: config.http.keepAliveTimeoutMs,
    // Errors before a route is found (a URL that does not decode, a path parameter over the length
    // limit) and before a request is parsed at all: the same catalogued body as every other error.
    frameworkErrors: (error, _request, reply) => {
      void (reply as FastifyReply).code(400).send({ ok: false, error: wireError('validation', error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'A path parameter is too long' : 'The URL is malformed') });
    },
    clientErrorHandler: answerClientError,
  }) as unknown as FastifyInstance;

  app.decorate('nodeId', config.nodeId);
  app.decorate('config', config);

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  app.addHook('onResponse', async (request, reply) => {
    request.log.info(
      {
        method: request.method,
        url: request.url,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
        userId: request.principal?.userId,
        keyId: request.apiCaller?.keyId,
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
    // The path is echoed back, within reason: a fuzzer's 10 KB path gets its first 200 characters.
    reply.code(404).send({ ok: false, error: new AppError('not_found', `No route ${request.method} ${request.url.split('?')[0]!.slice(0, 200)}`).toWire() });
  });

  await app.register(lifecycle);
  await app.register(metrics, { nodeId: config.nodeId });
  await app.register(database, { config });
  await app.register(redis, { config });
  await app.register(state, { config });
  await app.register(control, { config });
  await app.register(revocations, { config });
  await app.register(auth, { config });
  await app.register(apiKeys, { config });
  await app.register(realtime, { config });
  await app.register(uploads, { config });
  await app.register(services, { config });
  await app.register(presence, { config });
  await app.register(calls, { config });
  await app.register(scheduler, { config });
  await app.register(userSessions);
  await app.register(nodeAdmin, { config });
  // A drain requested through the admin API; main.ts replaces this with its SIGTERM path.
  app.lifecycle.onDrainRequested(() => {
    drainAndClose(app).catch((error: unknown) => app.log.error({ err: error }, 'drain failed'));
  });

  // Security headers on every response. The CSP is helmet's default, which /docs (Swagger UI: external
  // scripts, inline styles) works under, minus upgrade-insecure-requests, which would break /docs on
  // plain-HTTP set-ups such as `npm start`.
  await app.register(fastifyHelmet, {
    contentSecurityPolicy: { directives: { upgradeInsecureRequests: null } },
  });
  // Browsers on other origins only where CORS_ORIGINS lists them (credentials allowed, so never a
  // wildcard: config.ts refuses one); unset means same-origin only, and no CORS headers at all.
  // Socket.IO's handshake has the same policy (plugins/realtime.ts).
  await app.register(fastifyCors, {
    origin: config.corsOrigins ?? false,
    credentials: true,
    methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: ['authorization', 'content-type'],
    maxAge: 600,
  });

  await app.register(docs);
  await app.register(restAddressLimit);
  await app.register(healthRoutes);
  await app.register(meRoutes);
  await app.register(restRoutes);
  await app.register(keyApiRoutes);
  if (config.devTokens.enabled) await app.register(devTokenRoutes, { defaultTtlSeconds: config.devTokens.ttlSeconds });
  await app.register(webRoutes);

  return app;
}
