import fp from 'fastify-plugin';
import type { Config } from '../config.ts';
import { openDatabase, type Db } from '../db/client.ts';

declare module 'fastify' {
  interface FastifyInstance {
    db: Db;
  }
}

export default fp<{ config: Config }>(
  async (app, { config }) => {
    const database = await openDatabase(config.database, app.log);
    app.decorate('db', database.prisma);
    app.lifecycle.addCheck('database', database.ping);
    app.addHook('onClose', async () => {
      await database.close();
    });
  },
  { name: 'database', dependencies: ['lifecycle'] },
);
