import fp from 'fastify-plugin';
import type { Config } from '../config.ts';
import { openDatabase, type Db, type Sql } from '../db/client.ts';

declare module 'fastify' {
  interface FastifyInstance {
    db: Db;
    /** The hot paths' statements (named prepared statements unless behind PgBouncer), on the same connections as `db`. */
    sql: Sql;
  }
}

export default fp<{ config: Config }>(
  async (app, { config }) => {
    const database = await openDatabase(config.database, app.log);
    app.decorate('db', database.prisma);
    app.decorate('sql', database.sql);
    app.lifecycle.addCheck('database', database.ping);
    app.addHook('onClose', async () => {
      // Work still in flight (a socket event, a disconnect's presence update) finishes first: once
      // the pool has ended, its queries could only fail.
      await app.lifecycle.idle();
      await database.close();
    });
  },
  { name: 'database', dependencies: ['lifecycle'] },
);
