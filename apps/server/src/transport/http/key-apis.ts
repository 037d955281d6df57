import type { FastifyInstance } from 'fastify';
import { adminNodeRoutes } from './admin-nodes.ts';
import { adminUserRoutes } from './admin-users.ts';
import { registerKeyRoutes, type KeyRoute } from './key-routes.ts';

/**
 * Every route of the key-authenticated APIs, in one list: the fuzz and authorization suites walk it,
 * so a route added here is covered there.
 */
export const keyRoutes: readonly KeyRoute[] = [...adminNodeRoutes, ...adminUserRoutes];

export async function keyApiRoutes(app: FastifyInstance): Promise<void> {
  registerKeyRoutes(app, keyRoutes);
}
