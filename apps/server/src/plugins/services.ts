import fp from 'fastify-plugin';
import { UserService } from '../domain/users.ts';

/** The transport-free domain services; REST routes and socket handlers both call these. */
export interface Services {
  users: UserService;
}

declare module 'fastify' {
  interface FastifyInstance {
    services: Services;
  }
}

export default fp(
  async (app) => {
    app.decorate('services', { users: new UserService(app.db) });
  },
  { name: 'services', dependencies: ['database'] },
);
