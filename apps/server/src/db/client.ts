import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.ts';
import { PrismaClient } from '../generated/prisma/client.ts';
import { applyMigrations } from './migrations.ts';

export type Db = PrismaClient;

/** Longest wait for a new PostgreSQL connection. */
const CONNECT_TIMEOUT_MS = 3000;

export interface Database {
  prisma: PrismaClient;
  /** Resolves when the database answers a trivial query. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Opens the configured database. PostgreSQL is migrated by its own step (`npm run db:migrate`), never
 * by every replica at boot. The embedded PGlite database belongs to this one process, so it is
 * migrated here, before the first query.
 */
export async function openDatabase(config: Config['database'], log: FastifyBaseLogger): Promise<Database> {
  if (config.kind === 'postgres') {
    const prisma = new PrismaClient({
      // A server that accepts TCP but does not answer must not leave requests waiting for the
      // client's ack timeout (10 s in the SDK): the request fails with `unavailable` first.
      adapter: new PrismaPg({ connectionString: config.url, max: config.poolSize, connectionTimeoutMillis: CONNECT_TIMEOUT_MS }),
    });
    return {
      prisma,
      ping: async () => void (await prisma.$queryRawUnsafe('SELECT 1')),
      close: () => prisma.$disconnect(),
    };
  }
  const dir = join(config.dataDir, 'pglite');
  mkdirSync(dir, { recursive: true });
  const pglite = await PGlite.create(dir);
  const applied = await applyMigrations({ kind: 'pglite', pglite });
  if (applied.length > 0) log.info({ applied }, 'embedded database migrated');
  const prisma = new PrismaClient({
    // The adapter's types name its own (older) copy of PGlite; the runtime API it calls is the same.
    adapter: new PrismaPGlite(pglite as unknown as ConstructorParameters<typeof PrismaPGlite>[0]),
  });
  return {
    prisma,
    ping: async () => void (await prisma.$queryRawUnsafe('SELECT 1')),
    close: async () => {
      await prisma.$disconnect();
      await pglite.close();
    },
  };
}
