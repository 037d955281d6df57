import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import fp from 'fastify-plugin';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';

/**
 * Route schemas are the protocol's zod schemas: Fastify validates with them, and the OpenAPI document
 * at /docs/json (UI at /docs) is generated from them, so docs and validation cannot drift apart.
 * Must be registered before the routes it describes.
 */
export default fp(
  async (app) => {
    app.setValidatorCompiler(validatorCompiler);
    app.setSerializerCompiler(serializerCompiler);
    await app.register(fastifySwagger, {
      openapi: {
        info: {
          title: 'chat-cluster REST API',
          version: '1',
          description:
            'The REST fallback of the Socket.IO protocol: same operations, same validation, same real-time events. ' +
            'Every error is `{ ok: false, error: { code, message, retryable } }` with a code from the catalog in packages/protocol/src/errors.ts.',
        },
        components: {
          securitySchemes: {
            bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
            adminKey: { type: 'http', scheme: 'bearer', description: 'A secret of ADMIN_API_KEYS (operators: /v1/admin/*)' },
            serverKey: { type: 'http', scheme: 'bearer', description: 'A secret of SERVER_API_KEYS (a customer backend: /v1/server/*)' },
          },
        },
      },
      transform: jsonSchemaTransform,
    });
    await app.register(fastifySwaggerUi, { routePrefix: '/docs' });
  },
  { name: 'docs' },
);
