import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { z } from 'zod';
import type { ApiCaller, ApiScope } from '../../identity/api-caller.ts';
import { routeSchema } from './route-schema.ts';

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
type Shape = z.ZodObject | undefined;
type Parsed<S extends Shape> = S extends z.ZodObject ? z.output<S> : Record<string, never>;

export interface KeyRouteInput<P extends Shape, Q extends Shape, B extends Shape> {
  params: Parsed<P>;
  query: Parsed<Q>;
  body: Parsed<B>;
  caller: ApiCaller;
}

/**
 * A route of the key-authenticated APIs (`/v1/admin/*` for operators, `/v1/server/*` for a customer's
 * backend). Its zod schemas validate the request (and document it at /docs); its handler answers the
 * body after `ok: true`. `action` names it in the audit log line and the metrics.
 */
export interface KeyRoute<P extends Shape = Shape, Q extends Shape = Shape, B extends Shape = Shape> {
  scope: ApiScope;
  method: Method;
  url: string;
  action: string;
  summary: string;
  params?: P;
  querystring?: Q;
  body?: B;
  /** `audit` adds to the audit line what the URL does not name, e.g. the user a backend acted as. */
  handler: (app: FastifyInstance, input: KeyRouteInput<P, Q, B>) => Promise<{ status?: number; result: Record<string, unknown>; audit?: Record<string, unknown> }>;
}

/** Keeps each route's handler typed by its own schemas while the route lists stay plain arrays. */
export function keyRoute<P extends Shape = undefined, Q extends Shape = undefined, B extends Shape = undefined>(route: KeyRoute<P, Q, B>): KeyRoute {
  return route as unknown as KeyRoute;
}

/**
 * Registers key routes. Every request is authenticated by its scope's key ring before validation (an
 * unauthenticated caller learns nothing about the schema), and every action that passed
 * authentication leaves one audit line naming the key id, never the key.
 */
export function registerKeyRoutes(app: FastifyInstance, routes: readonly KeyRoute[]): void {
  const typed = app.withTypeProvider<ZodTypeProvider>();
  for (const route of routes) {
    typed.route({
      method: route.method,
      url: route.url,
      schema: routeSchema({ ...route, tag: route.scope, security: `${route.scope}Key` }),
      // onRequest, not preHandler: authentication comes before body parsing and schema validation.
      onRequest: route.scope === 'admin' ? app.authenticateAdmin : app.authenticateServer,
      handler: async (request, reply) => {
        const caller = request.apiCaller!;
        const input = { params: request.params ?? {}, query: request.query ?? {}, body: request.body ?? {}, caller } as KeyRouteInput<Shape, Shape, Shape>;
        const { status, result, audit } = await route.handler(app, input);
        request.log.info({ scope: caller.scope, keyId: caller.keyId, action: route.action, params: request.params, ...audit }, `${caller.scope} action`);
        reply.code(status ?? 200);
        return { ok: true, ...result };
      },
    });
  }
}
