import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import pg from 'pg';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.ts';
import { PrismaClient } from '../generated/prisma/client.ts';
import { applyMigrations } from './migrations.ts';

export type Db = PrismaClient;

/** Longest wait for a new PostgreSQL connection. */
const CONNECT_TIMEOUT_MS = 3000;

/**
 * A statement of a hot path (the message and receipt batches, the connect-time user upsert), written
 * once with `$1…` placeholders. On PostgreSQL it runs as a named prepared statement: each connection
 * parses and analyzes it once, where Prisma's raw queries are unnamed and parsed anew every time.
 * PostgreSQL still plans a prepared statement on every call unless it settles on a generic plan, which
 * it never does for the two batches (their custom plans see the arrays' real length and always look
 * cheaper), so their statements live in PL/pgSQL functions with one forced generic plan per connection
 * (migrations `message_insert_function`, `watermarks_function`), and the batches call those.
 * `name` is the statement's identity on each connection: one name, one text.
 *
 * Behind PgBouncer in transaction mode (`DATABASE_URL` with `pgbouncer=true`) it runs unnamed, with the
 * same text and values: `pg` remembers which of its connections prepared a name, but PgBouncer hands
 * each transaction whichever server connection is free, so a name prepared on one server connection
 * would be executed on another ("prepared statement … does not exist") or prepared twice on one
 * ("… already exists"). PgBouncer 1.18 does not track prepared statements (1.21 began to).
 */
export interface Statement {
  readonly name: string;
  readonly text: string;
}

/** Runs {@link Statement}s outside any transaction: each is its own, committed when it resolves. */
export interface Sql {
  query<T>(statement: Statement, values: readonly unknown[]): Promise<T[]>;
}

export interface Database {
  prisma: PrismaClient;
  sql: Sql;
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
    // One pool for Prisma and for the prepared statements, so together they never hold more than
    // DATABASE_POOL_SIZE connections. A server that accepts TCP but does not answer must not leave
    // requests waiting for the client's ack timeout (10 s in the SDK): they fail with `unavailable` first.
    // Prisma's adapter runs every query unnamed and keeps no session state outside a transaction, so it
    // needs no change behind PgBouncer.
    const pool = new pg.Pool({ connectionString: config.url, max: config.poolSize, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
    const nameOf = config.pgbouncer ? () => undefined : (statement: Statement) => statement.name;
    // An idle connection that breaks (PostgreSQL restarted) is dropped by the pool; unhandled, the
    // pool's 'error' event would end the process.
    pool.on('error', (error) => log.warn({ err: error }, 'idle database connection lost'));
    const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
    return {
      prisma,
      sql: {
        query: async <T>(statement: Statement, values: readonly unknown[]) => (await pool.query<T & pg.QueryResultRow>({ name: nameOf(statement), text: statement.text, values: [...values] })).rows,
      },
      ping: async () => void (await prisma.$queryRawUnsafe('SELECT 1')),
      close: async () => {
        await prisma.$disconnect();
        await pool.end();
      },
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
    // In process, one connection: the same text and values through Prisma.
    sql: { query: <T>(statement: Statement, values: readonly unknown[]) => prisma.$queryRawUnsafe<T[]>(statement.text, ...values) },
    ping: async () => void (await prisma.$queryRawUnsafe('SELECT 1')),
    close: async () => {
      await prisma.$disconnect();
      await pglite.close();
    },
  };
}
