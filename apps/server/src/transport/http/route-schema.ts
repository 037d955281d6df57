import type { FastifySchema } from 'fastify';
import type { z } from 'zod';

/**
 * A route's schema for Fastify and the OpenAPI document: what it is, who may call it (the security
 * scheme of plugins/docs.ts), and the zod schemas its URL, query and body are validated with.
 */
export function routeSchema(route: {
  summary: string;
  tag: string;
  security: string;
  params?: z.ZodObject | undefined;
  querystring?: z.ZodObject | undefined;
  body?: z.ZodObject | undefined;
}): FastifySchema {
  return {
    summary: route.summary,
    tags: [route.tag],
    security: [{ [route.security]: [] }],
    ...(route.params && { params: route.params }),
    ...(route.querystring && { querystring: route.querystring }),
    ...(route.body && { body: route.body }),
  };
}
