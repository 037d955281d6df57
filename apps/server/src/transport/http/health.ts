import type { FastifyInstance } from 'fastify';

/** Probes for orchestrators and Prometheus. None of them needs a token. */
export async function healthRoutes(app: FastifyInstance): Promise<void> {
  // Liveness: the process and its event loop answer. Never depends on PostgreSQL or Redis, so an
  // outage of a dependency does not get every node restarted.
  app.get('/healthz', async () => ({ ok: true, node: app.nodeId }));

  // Readiness: this node should get traffic. False while draining or while a dependency is down.
  app.get('/readyz', async (_request, reply) => {
    const dependencies = await app.lifecycle.checkDependencies(1000);
    const ready = !app.lifecycle.draining && Object.values(dependencies).every((state) => state === 'up');
    reply.code(ready ? 200 : 503);
    return { ok: ready, node: app.nodeId, draining: app.lifecycle.draining, dependencies };
  });

  app.get('/metrics', async (_request, reply) => {
    reply.type(app.metrics.registry.contentType);
    return app.metrics.registry.metrics();
  });
}
